#pragma once
// The decoder layers of dense models (llama, qwen2): GQA attention over the paged KV cache
// and a SwiGLU MLP. Everything shared with other architectures is in causal_lm.
#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/engine/causal_lm.h"

namespace dsrt::engine {

class dense_model final : public causal_lm {
 public:
  // Errors: as create_causal_lm.
  static result<std::unique_ptr<causal_lm>> create(std::unique_ptr<model::model_files> files,
                                                   kernels::backend& backend,
                                                   const model_options& options = {});

  std::int64_t last_step_weight_bytes() const override;
  std::int64_t weight_elements_per_token() const override;

 private:
  using causal_lm::causal_lm;
  status allocate();
  status forward_layers(std::int64_t n, float* x) override;

  kernels::rope_table rope_;
  std::vector<kernels::kv_layer> cache_;
  float *q_ = nullptr, *k_ = nullptr, *v_ = nullptr, *attn_ = nullptr, *gate_ = nullptr,
        *up_ = nullptr;
  // Weights as the backend sees them.
  struct layer_refs {
    kernels::weight_ref input_norm, q, k, v, q_bias, k_bias, v_bias, o, post_norm, gate, up, down;
  };
  std::vector<layer_refs> layers_;
};

}  // namespace dsrt::engine
