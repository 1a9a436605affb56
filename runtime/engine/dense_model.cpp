#include "runtime/engine/dense_model.h"

#include <algorithm>
#include <cmath>

#include "runtime/engine/rope.h"

namespace dsrt::engine {
namespace {

// Activation buffers, each step_tokens_max rows of the width given in allocate().
enum buffer_id : std::size_t { x_buf, h_buf, q_buf, k_buf, v_buf, attn_buf, gate_buf, up_buf, buffer_count };

kernels::weight_ref ref_of(const model::tensor_info* t) {
  if (t == nullptr) return {};
  const std::int64_t rows = t->shape.size() == 2 ? t->shape[0] : 1;
  const std::int64_t cols = t->shape.back();
  return kernels::weight_ref{t->data, t->type, rows, cols};
}

std::int64_t bytes_of(const model::tensor_info* t) { return t ? std::int64_t(t->size_bytes) : 0; }

// Sum of f over every matrix (and norm / bias vector) a decode step reads.
template <class F>
std::int64_t sum_over_step_tensors(const model::dense_weights& w, F f) {
  std::int64_t total = f(w.final_norm) + f(w.lm_head);
  for (const auto& l : w.layers)
    total += f(l.input_norm) + f(l.q) + f(l.k) + f(l.v) + f(l.q_bias) + f(l.k_bias) + f(l.v_bias) +
             f(l.o) + f(l.post_norm) + f(l.gate) + f(l.up) + f(l.down);
  return total;
}

}  // namespace

dense_model::dense_model(std::unique_ptr<model::model_files> files, kernels::backend& backend,
                         const model_options& options)
    : files_(std::move(files)), backend_(backend), options_(options) {}

dense_model::~dense_model() {
  for (void* p : cache_memory_) backend_.free(p);
  for (float* p : buffers_) backend_.free(p);
}

result<std::unique_ptr<dense_model>> dense_model::create(std::unique_ptr<model::model_files> files,
                                                         kernels::backend& backend,
                                                         const model_options& options) {
  if (options.kv_block_tokens <= 0 || options.kv_block_tokens > kv_block_tokens_max ||
      options.step_tokens_max <= 0 || options.step_tokens_max > step_tokens_max_limit ||
      options.kv_cache_bytes_max <= 0)
    return make_error(error_code::invalid_argument,
                      "kv_block_tokens ({}) must be in [1, {}], step_tokens_max ({}) in [1, {}], "
                      "kv_cache_bytes_max ({}) positive",
                      options.kv_block_tokens, kv_block_tokens_max, options.step_tokens_max,
                      step_tokens_max_limit, options.kv_cache_bytes_max);
  std::unique_ptr<dense_model> m(new dense_model(std::move(files), backend, options));
  DSRT_TRY(m->allocate());
  return m;
}

std::int64_t dense_model::kv_bytes_per_token() const {
  const auto& c = config();
  return std::int64_t(c.num_hidden_layers) * 2 * c.num_key_value_heads * c.head_dim *
         std::int64_t(sizeof(std::uint16_t));
}

std::int64_t dense_model::weight_bytes_per_step() const {
  return sum_over_step_tensors(files_->weights, bytes_of);
}

std::int64_t dense_model::weight_elements_per_step() const {
  return sum_over_step_tensors(files_->weights,
                               [](const model::tensor_info* t) { return t ? t->elements() : 0; });
}

status dense_model::allocate() {
  const auto& c = config();
  const auto& caps = backend_.caps();
  auto upload = [&](const model::tensor_info* t) -> result<kernels::weight_ref> {
    if (t == nullptr) return kernels::weight_ref{};
    if (std::find(caps.weight_dtypes.begin(), caps.weight_dtypes.end(), t->type) ==
        caps.weight_dtypes.end())
      return make_error(error_code::unsupported, "{}: backend {} cannot use {} weights ({})",
                        t->file.string(), caps.name, dtype_name(t->type), t->name);
    return backend_.upload_weight(ref_of(t));
  };
  const auto& w = files_->weights;
  auto assign = [&](kernels::weight_ref& dst, const model::tensor_info* t) -> status {
    auto r = upload(t);
    if (!r) return r.err();
    dst = *r;
    return ok_status();
  };
  DSRT_TRY(assign(embed_, w.embed));
  DSRT_TRY(assign(final_norm_, w.final_norm));
  DSRT_TRY(assign(lm_head_, w.lm_head));
  for (const auto& l : w.layers) {
    layer_refs r;
    for (auto [dst, src] : {std::pair{&r.input_norm, l.input_norm}, {&r.q, l.q}, {&r.k, l.k},
                            {&r.v, l.v}, {&r.q_bias, l.q_bias}, {&r.k_bias, l.k_bias},
                            {&r.v_bias, l.v_bias}, {&r.o, l.o}, {&r.post_norm, l.post_norm},
                            {&r.gate, l.gate}, {&r.up, l.up}, {&r.down, l.down}})
      DSRT_TRY(assign(*dst, src));
    layers_.push_back(r);
  }
  rope_ = make_rope_table(c);

  const std::int64_t block_bytes_per_layer =
      std::int64_t(options_.kv_block_tokens) * c.num_key_value_heads * c.head_dim * 2;
  const std::int64_t block_bytes = block_bytes_per_layer * 2 * c.num_hidden_layers;
  kv_blocks_ = std::int32_t(std::min<std::int64_t>(options_.kv_cache_bytes_max / block_bytes,
                                                   std::int64_t(1) << 30));
  if (kv_blocks_ < 1)
    return make_error(error_code::invalid_argument,
                      "kv_cache_bytes_max ({} bytes) is below one block of {} bytes",
                      options_.kv_cache_bytes_max, block_bytes);
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) {
    const std::size_t bytes = std::size_t(block_bytes_per_layer) * std::size_t(kv_blocks_);
    void* keys = backend_.alloc(bytes);
    if (keys) cache_memory_.push_back(keys);
    void* values = backend_.alloc(bytes);
    if (values) cache_memory_.push_back(values);
    if (!keys || !values)
      return make_error(error_code::internal, "cannot allocate the KV cache ({} bytes per layer)",
                        2 * bytes);
    cache_.push_back(kernels::kv_layer{static_cast<std::uint16_t*>(keys),
                                       static_cast<std::uint16_t*>(values),
                                       options_.kv_block_tokens, c.num_key_value_heads, c.head_dim});
  }

  const std::int64_t q_width = std::int64_t(c.num_attention_heads) * c.head_dim;
  const std::int64_t kv_width = std::int64_t(c.num_key_value_heads) * c.head_dim;
  const std::int64_t widths[buffer_count] = {
      c.hidden_size, std::max<std::int64_t>(c.hidden_size, q_width), q_width, kv_width, kv_width,
      q_width,
      // gate doubles as the logits scratch of forward(): it holds at least one vocab row.
      std::max<std::int64_t>(c.intermediate_size,
                             (c.vocab_size + options_.step_tokens_max - 1) / options_.step_tokens_max),
      c.intermediate_size};
  for (std::int64_t width : widths) {
    void* p = backend_.alloc(std::size_t(options_.step_tokens_max * width) * sizeof(float));
    if (!p) return make_error(error_code::internal, "cannot allocate activation buffers");
    buffers_.push_back(static_cast<float*>(p));
  }
  return ok_status();
}

status dense_model::validate(std::span<const step_sequence> seqs, std::int64_t& tokens) const {
  const auto& c = config();
  tokens = 0;
  for (std::size_t s = 0; s < seqs.size(); ++s) {
    const auto& seq = seqs[s];
    if (seq.tokens.empty())
      return make_error(error_code::invalid_argument, "sequence {} of the step has no tokens", s);
    const std::int64_t end = seq.first_position + std::int64_t(seq.tokens.size());
    if (seq.first_position < 0 || end > c.max_position_embeddings)
      return make_error(error_code::invalid_argument,
                        "sequence {} reaches position {}, past max_position_embeddings {}", s,
                        end, c.max_position_embeddings);
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

status dense_model::forward(std::span<const step_sequence> seqs, std::vector<float>& logits) {
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
      for (std::int64_t i = 0; i < rows; ++i) logit_rows_.push_back(row_begin + i);
    } else {
      logit_rows_.push_back(row_begin + rows - 1);
    }
  }

  auto& b = backend_;
  float* x = buffer(x_buf);
  float* h = buffer(h_buf);
  float* q = buffer(q_buf);
  float* k = buffer(k_buf);
  float* v = buffer(v_buf);
  float* attn = buffer(attn_buf);
  float* gate = buffer(gate_buf);
  float* up = buffer(up_buf);
  const float eps = float(c.rms_norm_eps);
  const float scale = 1.0f / std::sqrt(float(c.head_dim));

  b.embed(embed_, ids_, x);
  for (std::size_t layer = 0; layer < layers_.size(); ++layer) {
    const auto& l = layers_[layer];
    b.rms_norm(x, n, l.input_norm, eps, h);
    const kernels::matmul_part qkv[] = {{l.q, l.q_bias, q}, {l.k, l.k_bias, k}, {l.v, l.v_bias, v}};
    b.matmul_group(h, n, qkv);
    b.rope(q, n, c.num_attention_heads, c.head_dim, positions_, rope_);
    b.rope(k, n, c.num_key_value_heads, c.head_dim, positions_, rope_);
    b.kv_write(cache_[layer], attention_, k, v);
    b.paged_attention(q, c.num_attention_heads, cache_[layer], attention_, scale, attn);
    b.matmul(attn, n, l.o, {}, h);
    b.add(x, h, n * c.hidden_size);
    b.rms_norm(x, n, l.post_norm, eps, h);
    const kernels::matmul_part gate_up[] = {{l.gate, {}, gate}, {l.up, {}, up}};
    b.matmul_group(h, n, gate_up);
    b.swiglu(gate, up, n * c.intermediate_size, gate);
    b.matmul(gate, n, l.down, {}, h);
    b.add(x, h, n * c.hidden_size);
  }

  // Final norm and the head only for the rows whose logits are wanted.
  const std::int64_t out_rows = std::int64_t(logit_rows_.size());
  const std::size_t row_bytes = std::size_t(c.hidden_size) * sizeof(float);
  for (std::int64_t r = 0; r < out_rows; ++r)
    b.copy_device(h + r * c.hidden_size, x + logit_rows_[r] * c.hidden_size, row_bytes);
  b.rms_norm(h, out_rows, final_norm_, eps, h);
  // Logit rows can outnumber the scratch of one buffer when vocab > its width: go in chunks
  // that fit the gate buffer (step_tokens_max x intermediate floats).
  logits.resize(std::size_t(out_rows) * std::size_t(c.vocab_size));
  const std::int64_t gate_width = std::max<std::int64_t>(
      c.intermediate_size, (c.vocab_size + options_.step_tokens_max - 1) / options_.step_tokens_max);
  const std::int64_t chunk_rows =
      std::max<std::int64_t>(1, options_.step_tokens_max * gate_width / c.vocab_size);
  for (std::int64_t r0 = 0; r0 < out_rows; r0 += chunk_rows) {
    const std::int64_t rows = std::min(chunk_rows, out_rows - r0);
    b.matmul(h + r0 * c.hidden_size, rows, lm_head_, {}, gate);
    b.copy_to_host(logits.data() + r0 * c.vocab_size, gate,
                   std::size_t(rows * c.vocab_size) * sizeof(float));
  }
  b.synchronize();
  return ok_status();
}

void dense_model::copy_blocks(std::span<const block_copy> copies) {
  const auto& c = config();
  const std::size_t block_elems =
      std::size_t(options_.kv_block_tokens) * c.num_key_value_heads * c.head_dim;
  for (const auto& copy : copies) {
    DSRT_ASSERT(copy.from >= 0 && copy.from < kv_blocks_ && copy.to >= 0 && copy.to < kv_blocks_,
                "copy {} -> {} of {}", copy.from, copy.to, kv_blocks_);
    for (const auto& layer : cache_) {
      backend_.copy_device(layer.keys + copy.to * block_elems, layer.keys + copy.from * block_elems,
                           block_elems * sizeof(std::uint16_t));
      backend_.copy_device(layer.values + copy.to * block_elems,
                           layer.values + copy.from * block_elems, block_elems * sizeof(std::uint16_t));
    }
  }
}

}  // namespace dsrt::engine
