#pragma once
// RoPE frequencies from a model config, following Hugging Face's rope_scaling types:
// none (default), linear, llama3 and yarn (_compute_*_parameters in transformers'
// modeling_rope_utils.py).
#include "kernels/backend.h"
#include "runtime/model/config.h"

namespace dsrt::engine {

// DeepSeek models (MLA) rotate interleaved pairs: their table has interleaved = true.
kernels::rope_table make_rope_table(const model::model_config& config);

// YaRN's attention-scale term: 1 for scale <= 1, else 0.1 * mscale * ln(scale) + 1.
double yarn_get_mscale(double scale, double mscale);

}  // namespace dsrt::engine
