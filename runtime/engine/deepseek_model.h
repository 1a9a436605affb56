#pragma once
// The decoder layers of DeepSeek-V2/V3: multi-head latent attention (MLA) and DeepSeekMoE.
//
// MLA. The KV cache holds per token and layer only the normalised latent (kv_lora_rank
// values) and the RoPE key (qk_rope_head_dim values). Every step — prefill and decode —
// runs the absorbed form: W_UK (the key half of kv_b_proj) is folded into the query
// (q_latent = W_UK^T q_nope per head), attention runs over the latents directly, and W_UV
// (the value half) is applied to the attended latent afterwards. kv_b_proj is therefore
// kept as two bf16 matrices laid out for those products (W_UK^T per head, and W_UV),
// dequantised once at load when the checkpoint is fp8.
//
// MoE. The router (f32, as transformers computes it) scores the experts; moe_router picks
// them; the tokens routed to each expert are gathered into one block and go through that
// expert's SwiGLU MLP together, so an expert's weights are read once per step however
// many tokens it serves. The weighted expert outputs are added to the shared experts'
// output per token in ascending expert order (batch-invariant).
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "runtime/engine/causal_lm.h"
#include "runtime/engine/moe_router.h"

namespace dsrt::engine {

class deepseek_model final : public causal_lm {
 public:
  // Errors: as create_causal_lm. REQUIRES: files->config.deepseek is set.
  static result<std::unique_ptr<causal_lm>> create(std::unique_ptr<model::model_files> files,
                                                   kernels::backend& backend,
                                                   const model_options& options = {});

  std::int64_t last_step_weight_bytes() const override { return last_step_bytes_; }
  std::int64_t weight_elements_per_token() const override;
  // Distinct routed experts the last forward() ran, summed over layers.
  std::int64_t last_step_experts() const { return last_step_experts_; }

 private:
  struct mlp_refs {
    kernels::weight_ref gate, up, down;
    std::int64_t bytes = 0;      // of the three projections (and their scales)
    std::int64_t elements = 0;
  };
  struct layer_refs {
    kernels::weight_ref input_norm, q_a, q_a_norm, q_b, q, kv_a_latent, kv_a_rope, kv_a_norm,
        w_uk_t, w_uv, o, post_norm;
    bool moe = false;
    mlp_refs dense, shared;
    kernels::weight_ref router;  // f32 [experts, hidden]
    std::vector<float> router_bias;
    std::vector<mlp_refs> experts;
  };

  using causal_lm::causal_lm;
  status allocate();
  status bind_layer(const model::deepseek_layer_weights& w, layer_refs& r);
  result<mlp_refs> bind_mlp(const model::mlp_weights& w);
  // Copies a host array the backend will read (converted weights) and keeps it alive.
  kernels::weight_ref own_weight(std::vector<std::uint16_t> bf16, std::int64_t rows, std::int64_t cols);
  kernels::weight_ref own_weight(std::vector<float> f32, std::int64_t rows, std::int64_t cols);
  status forward_layers(std::int64_t n, float* x) override;
  // MLA of layer for the n rows of h (normed); the output projection goes to out (may be h).
  void mla(std::size_t layer, std::int64_t n, const float* h, float* out);
  void mlp(const mlp_refs& m, std::int64_t n, std::int64_t width, const float* in, float* gate,
           float* up, float* out);
  // Routed + shared experts of h (n rows) into moe_out_; returns the weight bytes read.
  std::int64_t moe(const layer_refs& l, std::int64_t n, const float* h);

  kernels::rope_table rope_;
  float attention_scale_ = 1.0f;
  std::optional<moe_router> router_;
  std::vector<kernels::latent_kv_layer> cache_;
  std::vector<layer_refs> layers_;
  std::vector<std::vector<std::uint16_t>> owned_bf16_;
  std::vector<std::vector<float>> owned_f32_;
  std::int64_t static_bytes_ = 0;      // read every step whatever the routing
  std::int64_t static_elements_ = 0;   // per token, likewise
  std::int64_t last_step_bytes_ = 0;
  std::int64_t last_step_experts_ = 0;
  // Activation scratch, step_tokens_max rows each.
  float *qa_ = nullptr, *q_ = nullptr, *ckv_ = nullptr, *kpe_ = nullptr, *q_latent_ = nullptr,
        *o_latent_ = nullptr, *o_v_ = nullptr, *gate_ = nullptr, *up_ = nullptr,
        *router_logits_ = nullptr, *expert_in_ = nullptr, *expert_gate_ = nullptr,
        *expert_up_ = nullptr, *expert_out_ = nullptr, *moe_out_ = nullptr;
  // Host-side routing of one step.
  std::vector<float> router_logits_host_, route_weights_;
  std::vector<std::int32_t> route_experts_;
  std::vector<std::int32_t> expert_rows_;     // token rows grouped by expert
  std::vector<float> expert_row_weights_;
  std::vector<std::int64_t> expert_offsets_;  // experts + 1 offsets into expert_rows_
  std::vector<std::int64_t> expert_cursor_;
  std::vector<float> zeros_;
  std::vector<kernels::matmul_task> gate_up_tasks_, down_tasks_;
};

}  // namespace dsrt::engine
