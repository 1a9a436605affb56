#pragma once
// The forward pass of dense decoder models (llama, qwen2) over a ragged batch: each
// sequence in a step brings any number of new tokens (a prefill chunk or one decode token),
// so continuous batching can mix them in one step. Written against kernels::backend only.
//
// Ownership: holds the model files (weights stay memory-mapped) and the KV cache memory;
// uses, but does not own, the backend. Thread safety: one caller at a time.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "kernels/backend.h"
#include "runtime/engine/block_manager.h"
#include "runtime/error.h"
#include "runtime/model/weights.h"

namespace dsrt::engine {

// Upper bounds of model_options (they also keep every buffer size far from overflow).
inline constexpr int kv_block_tokens_max = 1024;
inline constexpr std::int64_t step_tokens_max_limit = 1 << 20;

struct model_options {
  int kv_block_tokens = 16;
  std::int64_t kv_cache_bytes_max = 512ll << 20;   // KV cache memory for all layers
  std::int64_t step_tokens_max = 8192;             // tokens one forward() may carry
};

// One sequence's part of a step.
struct step_sequence {
  std::span<const std::int32_t> tokens;       // new tokens, at positions first_position...
  std::int64_t first_position = 0;
  std::span<const std::int32_t> block_table;  // covers first_position + tokens.size()
  bool all_logits = false;                    // logits for every new token, not only the last
};

class dense_model {
 public:
  // Errors: invalid_argument when the options cannot hold even one block per layer;
  // unsupported when the backend cannot run the weights' dtype; internal when the KV cache
  // or scratch memory cannot be allocated.
  static result<std::unique_ptr<dense_model>> create(std::unique_ptr<model::model_files> files,
                                                     kernels::backend& backend,
                                                     const model_options& options = {});
  ~dense_model();
  dense_model(const dense_model&) = delete;
  dense_model& operator=(const dense_model&) = delete;

  const model::model_config& config() const { return files_->config; }
  const model::model_files& files() const { return *files_; }
  kernels::backend& backend() const { return backend_; }
  int kv_block_tokens() const { return options_.kv_block_tokens; }
  std::int64_t step_tokens_max() const { return options_.step_tokens_max; }
  std::int32_t kv_blocks() const { return kv_blocks_; }
  // Bytes the cache holds per token, over all layers (keys and values).
  std::int64_t kv_bytes_per_token() const;
  // Bytes of weights one decode step reads (every matrix; not the embedding gather).
  std::int64_t weight_bytes_per_step() const;
  // Multiply-adds per token of the same matrices (their element count).
  std::int64_t weight_elements_per_step() const;

  // Runs one step. logits receives one row of vocab_size floats per requested position:
  // for each sequence in order, every new token when all_logits, else its last one.
  // Errors: invalid_argument for a token id outside the vocabulary, a position past
  // max_position_embeddings, a block table too short or naming a block outside the cache,
  // an empty sequence, or more than step_tokens_max tokens.
  status forward(std::span<const step_sequence> seqs, std::vector<float>& logits);

  // Applies copy-on-write copies from the block manager to every layer's cache.
  void copy_blocks(std::span<const block_copy> copies);

 private:
  dense_model(std::unique_ptr<model::model_files> files, kernels::backend& backend,
              const model_options& options);
  status allocate();
  status validate(std::span<const step_sequence> seqs, std::int64_t& tokens) const;
  float* buffer(std::size_t index) const { return buffers_[index]; }

  std::unique_ptr<model::model_files> files_;
  kernels::backend& backend_;
  model_options options_;
  std::int32_t kv_blocks_ = 0;
  kernels::rope_table rope_;
  std::vector<kernels::kv_layer> cache_;
  std::vector<void*> cache_memory_;
  std::vector<float*> buffers_;      // activation scratch, step_tokens_max rows each
  // Weights as the backend sees them.
  struct layer_refs {
    kernels::weight_ref input_norm, q, k, v, q_bias, k_bias, v_bias, o, post_norm, gate, up, down;
  };
  std::vector<layer_refs> layers_;
  kernels::weight_ref embed_, final_norm_, lm_head_;
  // Host-side per-step metadata, kept to avoid allocating every step.
  std::vector<std::int32_t> ids_, positions_;
  std::vector<kernels::attention_sequence> attention_;
  std::vector<std::int64_t> logit_rows_;
};

}  // namespace dsrt::engine
