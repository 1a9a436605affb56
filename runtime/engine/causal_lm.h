#pragma once
// A decoder-only language model over a ragged batch: each sequence in a step brings any
// number of new tokens (a prefill chunk or one decode token), so continuous batching can mix
// them in one step. This base class does what every architecture shares — options, step
// validation, the per-step metadata, the token embedding, the final norm and the LM head,
// the paged KV cache memory — and the subclasses run their decoder layers:
// dense_model (llama, qwen2) and deepseek_model (MLA + MoE). Written against
// kernels::backend only.
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
// Rows of logits computed per LM-head product (bounds the logits scratch memory).
inline constexpr std::int64_t logits_chunk_rows = 64;

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

class causal_lm {
 public:
  virtual ~causal_lm();
  causal_lm(const causal_lm&) = delete;
  causal_lm& operator=(const causal_lm&) = delete;

  const model::model_config& config() const { return files_->config; }
  const model::model_files& files() const { return *files_; }
  kernels::backend& backend() const { return backend_; }
  int kv_block_tokens() const { return options_.kv_block_tokens; }
  std::int64_t step_tokens_max() const { return options_.step_tokens_max; }
  std::int32_t kv_blocks() const { return kv_blocks_; }
  // KV cache memory of one block over all layers, as allocated.
  std::int64_t kv_block_bytes() const { return kv_block_bytes_; }
  // Bytes the cache holds per token, over all layers.
  std::int64_t kv_bytes_per_token() const { return kv_block_bytes_ / options_.kv_block_tokens; }
  // Bytes of weights the last forward() read: every matrix and norm it used (for MoE only
  // the experts routed to), not the embedding gather. Before any forward(): what a step
  // with one token reads, where that does not depend on routing.
  virtual std::int64_t last_step_weight_bytes() const = 0;
  // Multiply-adds per token of the matrices one token goes through (MoE: top-k experts).
  virtual std::int64_t weight_elements_per_token() const = 0;

  // Runs one step. logits receives one row of vocab_size floats per requested position:
  // for each sequence in order, every new token when all_logits, else its last one.
  // Errors: invalid_argument for a token id outside the vocabulary, a position past
  // max_position_embeddings, a block table too short or naming a block outside the cache,
  // an empty sequence, or more than step_tokens_max tokens.
  status forward(std::span<const step_sequence> seqs, std::vector<float>& logits);
  // The same step, but ids receives, instead of each requested row of logits, its greedy
  // token (the lowest id of the largest logit, as engine::sampler picks greedily), computed
  // by the backend where the logits are: a GPU sends back one id per row, not vocab_size
  // floats. Errors: as forward().
  status forward_greedy(std::span<const step_sequence> seqs, std::vector<std::int32_t>& ids);

  // Applies copy-on-write copies from the block manager to every layer's cache.
  void copy_blocks(std::span<const block_copy> copies);

 protected:
  causal_lm(std::unique_ptr<model::model_files> files, kernels::backend& backend,
            const model_options& options);
  static status check_options(const model_options& options);

  // Uploads a weight (nullptr: an empty ref). Errors: unsupported when the backend cannot
  // use its dtype.
  result<kernels::weight_ref> upload(const model::tensor_info* t);
  // A projection with its fp8 block scales, when it has them.
  result<kernels::weight_ref> upload(const model::linear_weights& w);
  // Binds the embedding, final norm and LM head, and allocates the residual stream.
  status allocate_common(const model::tensor_info* embed, const model::tensor_info* final_norm,
                         const model::tensor_info* lm_head);
  // Sizes the KV cache from kv_cache_bytes_max: `arrays` arrays (per layer: keys and values,
  // or one latent array) of `bytes_per_block` each per block. Fills cache_arrays().
  status allocate_cache(std::int64_t bytes_per_block, int arrays);
  // [step_tokens_max, width] floats of activation scratch, freed with the model.
  result<float*> allocate_buffer(std::int64_t width);

  // Runs the decoder layers on the n rows of x (embeddings in, hidden states out), using
  // the step's metadata (positions(), attention()).
  virtual status forward_layers(std::int64_t n, float* x) = 0;

  const std::vector<void*>& cache_arrays() const { return cache_arrays_; }
  std::span<const std::int32_t> positions() const { return positions_; }
  std::span<const kernels::attention_sequence> attention() const { return attention_; }
  float* norm_buffer() const { return h_; }   // [step_tokens_max, hidden] scratch
  const model_options& options() const { return options_; }

 private:
  status validate(std::span<const step_sequence> seqs, std::int64_t& tokens) const;
  // Everything up to the LM head: the layers, then the final norm of the rows whose logits
  // are wanted, in h_ (logit_rows_ lists them).
  status run_to_head(std::span<const step_sequence> seqs);

  std::unique_ptr<model::model_files> files_;
  kernels::backend& backend_;
  model_options options_;
  std::int32_t kv_blocks_ = 0;
  std::int64_t kv_block_bytes_ = 0;
  std::int64_t cache_array_block_bytes_ = 0;
  std::vector<void*> cache_arrays_;
  std::vector<void*> allocations_;   // every alloc() of this model, freed in the destructor
  kernels::weight_ref embed_, final_norm_, lm_head_;
  float* x_ = nullptr;               // residual stream
  float* h_ = nullptr;               // norm output
  float* logits_ = nullptr;          // [logits_chunk_rows, vocab]
  // Host-side per-step metadata, kept to avoid allocating every step.
  std::vector<std::int32_t> ids_, positions_;
  std::vector<kernels::attention_sequence> attention_;
  std::vector<std::int32_t> logit_rows_;   // rows of the step whose logits are wanted
};

// The model for files->config.arch. Errors: invalid_argument when the options cannot hold
// even one block per layer; unsupported when the backend cannot run the weights' dtype;
// internal when the KV cache or scratch memory cannot be allocated.
result<std::unique_ptr<causal_lm>> create_causal_lm(std::unique_ptr<model::model_files> files,
                                                    kernels::backend& backend,
                                                    const model_options& options = {});

}  // namespace dsrt::engine
