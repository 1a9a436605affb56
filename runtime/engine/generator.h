#pragma once
// Generates text for a set of requests together on one causal_lm: continuous batching
// in its simplest form. Each step carries one decode token for every running sequence and
// fills the rest of the token budget with prefill chunks; a request is admitted when the
// KV blocks for its whole prompt + max_tokens are free (so no preemption is needed), and
// its blocks return as soon as it finishes. The serving batcher (actors) replaces this
// with a policy that preempts; tools and tests use this one.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/engine/causal_lm.h"
#include "runtime/engine/sampler.h"
#include "runtime/error.h"
#include "runtime/tokenizer/tokenizer.h"

namespace dsrt::engine {

enum class finish_reason { stop, length };

struct generation_request {
  std::vector<std::int32_t> prompt;
  sampling_params sampling;
  int max_tokens = 256;
  std::vector<std::int32_t> stop_token_ids;   // end the generation; not part of the output
  std::vector<std::string> stop_strings;      // end at the first occurrence; text cut before it
};

struct generation_output {
  std::vector<std::int32_t> tokens;           // generated tokens, without a stop token
  std::string text;
  finish_reason reason = finish_reason::length;
};

struct generator_options {
  std::int64_t prefill_chunk_tokens = 512;    // prompt tokens of one sequence per step
  std::int64_t step_tokens_max = 2048;        // tokens per step (clamped to the model's)
  int sequences_max = 256;                    // sequences running at once
  int stop_strings_max = 16;
  int stop_string_bytes_max = 256;
};

// Receives text as it becomes final: never inside a UTF-8 character and never a piece
// that could still turn out to be the start of a stop string.
using text_callback = std::function<void(std::size_t request, std::string_view text)>;

class generator {
 public:
  generator(causal_lm& model, const tokenizer::tokenizer& tok, const generator_options& options = {});

  // Errors (nothing runs): invalid_argument naming the request index for an empty prompt,
  // a token outside the vocabulary, max_tokens < 1, prompt + max_tokens past the model's
  // context, bad sampling parameters or stop strings over their limits; unavailable when
  // a request needs more KV blocks than the whole cache has.
  result<std::vector<generation_output>> run(std::span<const generation_request> requests,
                                             const text_callback& on_text = {});

  // Steps the last run took (prefill chunks and decode tokens share steps).
  std::int64_t steps() const { return steps_; }

 private:
  status validate(std::span<const generation_request> requests) const;

  causal_lm& model_;
  const tokenizer::tokenizer& tokenizer_;
  generator_options options_;
  std::int64_t steps_ = 0;
};

}  // namespace dsrt::engine
