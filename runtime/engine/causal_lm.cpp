#include "runtime/engine/causal_lm.h"

#include <algorithm>

#include "runtime/engine/deepseek_model.h"
#include "runtime/engine/dense_model.h"

namespace dsrt::engine {
namespace {

kernels::weight_ref ref_of(const model::tensor_info* t) {
  if (t == nullptr) return {};
  const std::int64_t rows = t->shape.size() == 2 ? t->shape[0] : 1;
  const std::int64_t cols = t->shape.back();
  return kernels::weight_ref{t->data, t->type, rows, cols};
}

}  // namespace

causal_lm::causal_lm(std::unique_ptr<model::model_files> files, kernels::backend& backend,
                     const model_options& options)
    : files_(std::move(files)), backend_(backend), options_(options) {}

causal_lm::~causal_lm() {
  for (void* p : allocations_) backend_.free(p);
}

status causal_lm::check_options(const model_options& options) {
  if (options.kv_block_tokens <= 0 || options.kv_block_tokens > kv_block_tokens_max ||
      options.step_tokens_max <= 0 || options.step_tokens_max > step_tokens_max_limit ||
      options.kv_cache_bytes_max <= 0)
    return make_error(error_code::invalid_argument,
                      "kv_block_tokens ({}) must be in [1, {}], step_tokens_max ({}) in [1, {}], "
                      "kv_cache_bytes_max ({}) positive",
                      options.kv_block_tokens, kv_block_tokens_max, options.step_tokens_max,
                      step_tokens_max_limit, options.kv_cache_bytes_max);
  return ok_status();
}

result<kernels::weight_ref> causal_lm::upload(const model::tensor_info* t) {
  if (t == nullptr) return kernels::weight_ref{};
  const auto& caps = backend_.caps();
  if (std::find(caps.weight_dtypes.begin(), caps.weight_dtypes.end(), t->type) ==
      caps.weight_dtypes.end())
    return make_error(error_code::unsupported, "{}: backend {} cannot use {} weights ({})",
                      t->file.string(), caps.name, dtype_name(t->type), t->name);
  return backend_.upload_weight(ref_of(t));
}

result<kernels::weight_ref> causal_lm::upload(const model::linear_weights& w) {
  auto ref = upload(w.weight);
  if (!ref || w.scale == nullptr) return ref;
  auto scales = upload(w.scale);
  if (!scales) return scales.err();
  const auto& q = *config().deepseek->quantization;
  ref->scales = static_cast<const float*>(scales->data);
  ref->scale_cols = scales->cols;
  ref->block_rows = q.block_rows;
  ref->block_cols = q.block_cols;
  return ref;
}

status causal_lm::allocate_common(const model::tensor_info* embed,
                                  const model::tensor_info* final_norm,
                                  const model::tensor_info* lm_head) {
  for (auto [dst, src] : {std::pair{&embed_, embed}, {&final_norm_, final_norm}, {&lm_head_, lm_head}}) {
    auto r = upload(src);
    if (!r) return r.err();
    *dst = *r;
  }
  const auto& c = config();
  auto x = allocate_buffer(c.hidden_size);
  if (!x) return x.err();
  x_ = *x;
  auto h = allocate_buffer(c.hidden_size);
  if (!h) return h.err();
  h_ = *h;
  void* logits = backend_.alloc(std::size_t(logits_chunk_rows * c.vocab_size) * sizeof(float));
  if (!logits) return make_error(error_code::internal, "cannot allocate the logits scratch");
  allocations_.push_back(logits);
  logits_ = static_cast<float*>(logits);
  return ok_status();
}

status causal_lm::allocate_cache(std::int64_t bytes_per_block, int arrays) {
  const std::int64_t block_bytes = bytes_per_block * arrays;
  kv_blocks_ = std::int32_t(std::min<std::int64_t>(options_.kv_cache_bytes_max / block_bytes,
                                                   std::int64_t(1) << 30));
  if (kv_blocks_ < 1)
    return make_error(error_code::invalid_argument,
                      "kv_cache_bytes_max ({} bytes) is below one block of {} bytes",
                      options_.kv_cache_bytes_max, block_bytes);
  const std::size_t bytes = std::size_t(bytes_per_block) * std::size_t(kv_blocks_);
  for (int i = 0; i < arrays; ++i) {
    void* p = backend_.alloc(bytes);
    if (!p)
      return make_error(error_code::internal, "cannot allocate the KV cache ({} arrays of {} bytes)",
                        arrays, bytes);
    allocations_.push_back(p);
    cache_arrays_.push_back(p);
    kv_block_bytes_ += bytes_per_block;
  }
  cache_array_block_bytes_ = bytes_per_block;
  return ok_status();
}

result<float*> causal_lm::allocate_buffer(std::int64_t width) {
  void* p = backend_.alloc(std::size_t(options_.step_tokens_max * width) * sizeof(float));
  if (!p) return make_error(error_code::internal, "cannot allocate activation buffers");
  allocations_.push_back(p);
  return static_cast<float*>(p);
}

status causal_lm::validate(std::span<const step_sequence> seqs, std::int64_t& tokens) const {
  const auto& c = config();
  tokens = 0;
  for (std::size_t s = 0; s < seqs.size(); ++s) {
    const auto& seq = seqs[s];
    if (seq.tokens.empty())
      return make_error(error_code::invalid_argument, "sequence {} of the step has no tokens", s);
    // Compared before adding: a first_position near 2^63 must not wrap the end negative.
    if (seq.first_position < 0 ||
        seq.first_position > std::int64_t(c.max_position_embeddings) - std::int64_t(seq.tokens.size()))
      return make_error(error_code::invalid_argument,
                        "sequence {} starts at position {} with {} tokens, past max_position_embeddings {}", s,
                        seq.first_position, seq.tokens.size(), c.max_position_embeddings);
    const std::int64_t end = seq.first_position + std::int64_t(seq.tokens.size());
    const std::int64_t blocks_needed = (end + kv_block_tokens() - 1) / kv_block_tokens();
    if (std::int64_t(seq.block_table.size()) < blocks_needed)
      return make_error(error_code::invalid_argument,
                        "sequence {} needs {} KV blocks, its table has {}", s, blocks_needed,
                        seq.block_table.size());
    for (std::int32_t b : seq.block_table)
      if (b < 0 || b >= kv_blocks_)
        return make_error(error_code::invalid_argument, "sequence {} names KV block {} of {}", s,
                          b, kv_blocks_);
    for (std::int32_t id : seq.tokens)
      if (id < 0 || id >= c.vocab_size)
        return make_error(error_code::invalid_argument,
                          "token id {} is outside the vocabulary (size {})", id, c.vocab_size);
    tokens += std::int64_t(seq.tokens.size());
  }
  if (tokens > options_.step_tokens_max)
    return make_error(error_code::invalid_argument, "step of {} tokens exceeds step_tokens_max {}",
                      tokens, options_.step_tokens_max);
  return ok_status();
}

status causal_lm::run_to_head(std::span<const step_sequence> seqs) {
  std::int64_t n = 0;
  DSRT_TRY(validate(seqs, n));
  const auto& c = config();
  ids_.clear();
  positions_.clear();
  attention_.clear();
  logit_rows_.clear();
  for (const auto& seq : seqs) {
    const std::int64_t row_begin = std::int64_t(ids_.size());
    const std::int64_t rows = std::int64_t(seq.tokens.size());
    ids_.insert(ids_.end(), seq.tokens.begin(), seq.tokens.end());
    for (std::int64_t i = 0; i < rows; ++i) positions_.push_back(std::int32_t(seq.first_position + i));
    attention_.push_back({row_begin, rows, seq.first_position, seq.block_table.data(),
                          std::int64_t(seq.block_table.size())});
    if (seq.all_logits) {
      for (std::int64_t i = 0; i < rows; ++i) logit_rows_.push_back(std::int32_t(row_begin + i));
    } else {
      logit_rows_.push_back(std::int32_t(row_begin + rows - 1));
    }
  }

  auto& b = backend_;
  b.embed(embed_, ids_, x_);
  DSRT_TRY(forward_layers(n, x_));

  // Final norm only for the rows whose logits are wanted (one gather, not a copy per row).
  b.gather_rows(x_, c.hidden_size, logit_rows_, h_);
  b.rms_norm(h_, std::int64_t(logit_rows_.size()), final_norm_, float(c.rms_norm_eps), h_);
  return ok_status();
}

status causal_lm::forward(std::span<const step_sequence> seqs, std::vector<float>& logits) {
  DSRT_TRY(run_to_head(seqs));
  const auto& c = config();
  auto& b = backend_;
  const std::int64_t out_rows = std::int64_t(logit_rows_.size());
  logits.resize(std::size_t(out_rows) * std::size_t(c.vocab_size));
  for (std::int64_t r0 = 0; r0 < out_rows; r0 += logits_chunk_rows) {
    const std::int64_t rows = std::min(logits_chunk_rows, out_rows - r0);
    b.matmul(h_ + r0 * c.hidden_size, rows, lm_head_, {}, logits_);
    b.copy_to_host(logits.data() + r0 * c.vocab_size, logits_,
                   std::size_t(rows * c.vocab_size) * sizeof(float));
  }
  b.synchronize();
  return ok_status();
}

status causal_lm::forward_greedy(std::span<const step_sequence> seqs, std::vector<std::int32_t>& ids) {
  DSRT_TRY(run_to_head(seqs));
  const auto& c = config();
  auto& b = backend_;
  const std::int64_t out_rows = std::int64_t(logit_rows_.size());
  ids.resize(std::size_t(out_rows));
  for (std::int64_t r0 = 0; r0 < out_rows; r0 += logits_chunk_rows) {
    const std::int64_t rows = std::min(logits_chunk_rows, out_rows - r0);
    b.matmul(h_ + r0 * c.hidden_size, rows, lm_head_, {}, logits_);
    b.argmax_rows(logits_, rows, c.vocab_size, ids.data() + r0);
  }
  b.synchronize();
  return ok_status();
}

void causal_lm::copy_blocks(std::span<const block_copy> copies) {
  const std::size_t block_bytes = std::size_t(cache_array_block_bytes_);
  for (const auto& copy : copies) {
    DSRT_ASSERT(copy.from >= 0 && copy.from < kv_blocks_ && copy.to >= 0 && copy.to < kv_blocks_,
                "copy {} -> {} of {}", copy.from, copy.to, kv_blocks_);
    for (void* array : cache_arrays_) {
      auto* base = static_cast<std::uint8_t*>(array);
      backend_.copy_device(base + std::size_t(copy.to) * block_bytes,
                           base + std::size_t(copy.from) * block_bytes, block_bytes);
    }
  }
}

result<std::unique_ptr<causal_lm>> create_causal_lm(std::unique_ptr<model::model_files> files,
                                                    kernels::backend& backend,
                                                    const model_options& options) {
  if (files->config.arch == model::architecture::deepseek_v3)
    return deepseek_model::create(std::move(files), backend, options);
  return dense_model::create(std::move(files), backend, options);
}

}  // namespace dsrt::engine
