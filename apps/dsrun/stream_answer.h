#pragma once
// Streams the answer to one prompt to stdout through dsrt::client (dsrun ask, in process;
// dsrun --nodes N --prompt, through a cluster), then a statistics line to stderr.
#include <CLI/CLI.hpp>

#include <functional>
#include <string>

#include "actors/router_access.h"
#include "runtime/engine/sampler.h"

namespace dsrt::apps {

struct prompt_flags {
  std::string prompt;
  bool chat = false;                   // format as a user message with the chat template
  int max_tokens = 64;
  engine::sampling_params sampling;
  std::vector<std::string> stop;
};

// --prompt (required or not), --chat, --max-tokens, --temperature, --seed, --stop.
void add_prompt_flags(CLI::App& cmd, prompt_flags& flags, bool prompt_required);

// Returns the exit code: 0, or report()'s for an error (the request's or its final's).
// `where` ends the statistics line ("2 replicas", "through dsrt://..."). When `stopped`
// turns true (a signal) the request is cancelled and its final (CANCELLED) awaited for at
// most cancel_wait_ms.
inline constexpr int cancel_wait_ms = 5000;
int stream_answer(actors::router_access& runtime, const prompt_flags& flags, const std::string& where,
                  const std::function<bool()>& stopped = [] { return false; });

}  // namespace dsrt::apps
