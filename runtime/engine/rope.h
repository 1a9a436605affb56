#pragma once
// RoPE frequencies from a model config, following Hugging Face's rope_scaling types:
// none (default), linear, llama3 and yarn (_compute_*_parameters in transformers'
// modeling_rope_utils.py).
#include "kernels/backend.h"
#include "runtime/model/config.h"

namespace dsrt::engine {

kernels::rope_table make_rope_table(const model::model_config& config);

}  // namespace dsrt::engine
