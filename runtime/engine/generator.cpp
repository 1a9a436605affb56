#include "runtime/engine/generator.h"

#include "runtime/engine/text_output.h"

#include <algorithm>
#include <optional>

namespace dsrt::engine {
namespace {

enum class phase { waiting, prefill, decode, done };

struct active_request {
  const generation_request* request = nullptr;
  phase state = phase::waiting;
  sequence_blocks blocks;
  std::int64_t prefilled = 0;              // prompt tokens already in the cache
  std::int32_t last_token = -1;            // sampled, not yet fed back
  std::optional<sampler> sampling;
  std::optional<text_output> text;
  generation_output output;
};

}  // namespace

generator::generator(causal_lm& model, const tokenizer::tokenizer& tok,
                     const generator_options& options)
    : model_(model), tokenizer_(tok), options_(options) {}

status generator::validate(std::span<const generation_request> requests) const {
  if (options_.prefill_chunk_tokens < 1 || options_.step_tokens_max < 1 || options_.sequences_max < 1 ||
      options_.stop_strings_max < 0 || options_.stop_string_bytes_max < 1)
    return make_error(error_code::invalid_argument,
                      "generator options: prefill_chunk_tokens ({}), step_tokens_max ({}), "
                      "sequences_max ({}) and stop_string_bytes_max ({}) must be positive",
                      options_.prefill_chunk_tokens, options_.step_tokens_max, options_.sequences_max,
                      options_.stop_string_bytes_max);
  const auto& c = model_.config();
  const std::int64_t block_tokens = model_.kv_block_tokens();
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const auto& r = requests[i];
    if (r.prompt.empty())
      return make_error(error_code::invalid_argument, "request {}: the prompt is empty", i);
    for (std::int32_t id : r.prompt)
      if (id < 0 || id >= c.vocab_size)
        return make_error(error_code::invalid_argument,
                          "request {}: prompt token {} is outside the vocabulary (size {})", i, id,
                          c.vocab_size);
    if (r.max_tokens < 1)
      return make_error(error_code::invalid_argument, "request {}: max_tokens {} is below 1", i,
                        r.max_tokens);
    const std::int64_t total = std::int64_t(r.prompt.size()) + r.max_tokens;
    if (total > c.max_position_embeddings)
      return make_error(error_code::invalid_argument,
                        "request {}: prompt ({} tokens) + max_tokens ({}) exceeds the context of "
                        "{} tokens",
                        i, r.prompt.size(), r.max_tokens, c.max_position_embeddings);
    if (auto s = engine::validate(r.sampling); !s)
      return make_error(error_code::invalid_argument, "request {}: {}", i, s.err().message);
    if (int(r.stop_strings.size()) > options_.stop_strings_max)
      return make_error(error_code::invalid_argument, "request {}: {} stop strings, at most {}", i,
                        r.stop_strings.size(), options_.stop_strings_max);
    for (const auto& s : r.stop_strings)
      if (s.empty() || int(s.size()) > options_.stop_string_bytes_max)
        return make_error(error_code::invalid_argument,
                          "request {}: stop strings must have 1 to {} bytes", i,
                          options_.stop_string_bytes_max);
    if ((total + block_tokens - 1) / block_tokens > model_.kv_blocks())
      return make_error(error_code::unavailable,
                        "request {}: needs {} KV blocks, the cache has {} (raise kv_cache_bytes_max)",
                        i, (total + block_tokens - 1) / block_tokens, model_.kv_blocks());
  }
  return ok_status();
}

result<std::vector<generation_output>> generator::run(std::span<const generation_request> requests,
                                                      const text_callback& on_text) {
  DSRT_TRY(validate(requests));
  steps_ = 0;
  block_manager blocks(model_.kv_blocks(), model_.kv_block_tokens());
  std::vector<active_request> all(requests.size());
  for (std::size_t i = 0; i < requests.size(); ++i) all[i].request = &requests[i];

  const std::int64_t budget = std::min(options_.step_tokens_max, model_.step_tokens_max());
  // Every running sequence brings one decode token per step, so at most `budget` run.
  const std::int64_t running_max = std::min<std::int64_t>(options_.sequences_max, budget);
  const std::int64_t vocab = model_.config().vocab_size;
  std::size_t next_waiting = 0, finished = 0;
  std::vector<step_sequence> step;
  std::vector<std::size_t> step_owner;
  std::vector<block_copy> copies;
  std::vector<float> logits;

  auto pass_on = [&](std::size_t index, std::string_view text) {
    if (on_text && !text.empty()) on_text(index, text);
  };
  auto finish = [&](std::size_t index, finish_reason reason) {
    auto& a = all[index];
    pass_on(index, a.text->finish());
    a.output.text = a.text->text();
    a.output.reason = a.text->stopped() ? finish_reason::stop : reason;
    a.state = phase::done;
    blocks.release(a.blocks);
    ++finished;
  };

  // Every step finishes a prefill chunk or a token of some request, so this bounds the loop.
  std::int64_t steps_max = 0;
  for (const auto& r : requests) steps_max += std::int64_t(r.prompt.size()) + r.max_tokens;
  while (finished < all.size()) {
    DSRT_ASSERT(steps_ <= steps_max, "generator made {} steps, at most {} expected", steps_, steps_max);
    // Admit in arrival order while the whole request fits in free blocks.
    std::int64_t running = 0;
    for (const auto& a : all) running += (a.state == phase::prefill || a.state == phase::decode);
    while (next_waiting < all.size() && running < running_max) {
      auto& a = all[next_waiting];
      const std::int64_t total = std::int64_t(a.request->prompt.size()) + a.request->max_tokens;
      if (!blocks.reserve(a.blocks, total, copies)) break;
      a.state = phase::prefill;
      a.sampling.emplace(a.request->sampling);
      a.text.emplace(tokenizer_, a.request->stop_strings);
      ++next_waiting;
      ++running;
    }
    DSRT_ASSERT(running > 0, "no request could be admitted (validate() checks the cache size)");

    step.clear();
    step_owner.clear();
    std::int64_t tokens = 0;
    for (std::size_t i = 0; i < all.size(); ++i) {
      auto& a = all[i];
      if (a.state != phase::decode) continue;
      const std::int64_t position = std::int64_t(a.request->prompt.size() + a.output.tokens.size()) - 1;
      step.push_back({std::span(&a.last_token, 1), position, a.blocks.table, false});
      step_owner.push_back(i);
      ++tokens;
    }
    for (std::size_t i = 0; i < all.size() && tokens < budget; ++i) {
      auto& a = all[i];
      if (a.state != phase::prefill) continue;
      const auto& prompt = a.request->prompt;
      const std::int64_t chunk = std::min({options_.prefill_chunk_tokens, budget - tokens,
                                           std::int64_t(prompt.size()) - a.prefilled});
      step.push_back({std::span(prompt).subspan(std::size_t(a.prefilled), std::size_t(chunk)),
                      a.prefilled, a.blocks.table, false});
      step_owner.push_back(i);
      tokens += chunk;
    }
    DSRT_TRY(model_.forward(step, logits));
    ++steps_;

    for (std::size_t s = 0; s < step.size(); ++s) {
      const std::size_t index = step_owner[s];
      auto& a = all[index];
      if (a.state == phase::prefill) {
        a.prefilled += std::int64_t(step[s].tokens.size());
        if (a.prefilled < std::int64_t(a.request->prompt.size())) continue;
        a.state = phase::decode;
      }
      const std::int32_t token =
          a.sampling->sample(std::span(logits).subspan(s * std::size_t(vocab), std::size_t(vocab)));
      const auto& stop_ids = a.request->stop_token_ids;
      if (std::find(stop_ids.begin(), stop_ids.end(), token) != stop_ids.end()) {
        finish(index, finish_reason::stop);
        continue;
      }
      a.output.tokens.push_back(token);
      a.last_token = token;
      pass_on(index, a.text->push(token));
      if (a.text->stopped()) {
        finish(index, finish_reason::stop);
      } else if (int(a.output.tokens.size()) >= a.request->max_tokens) {
        finish(index, finish_reason::length);
      }
    }
  }
  std::vector<generation_output> outputs;
  outputs.reserve(all.size());
  for (auto& a : all) outputs.push_back(std::move(a.output));
  return outputs;
}

}  // namespace dsrt::engine
