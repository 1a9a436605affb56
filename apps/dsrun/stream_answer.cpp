#include "apps/dsrun/stream_answer.h"

#include <chrono>
#include <cstdio>
#include <future>
#include <memory>

#include "actors/client.h"
#include "apps/common/engine_setup.h"

namespace dsrt::apps {

void add_prompt_flags(CLI::App& cmd, prompt_flags& f, bool prompt_required) {
  auto* prompt = cmd.add_option("--prompt", f.prompt, "the prompt")->check([](const std::string& text) {
    return text.empty() ? std::string("the prompt is empty") : std::string();
  });
  if (prompt_required) prompt->required();
  cmd.add_flag("--chat", f.chat, "format the prompt as a user message with the model's chat template");
  cmd.add_option("--max-tokens", f.max_tokens, "tokens to generate")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd.add_option("--temperature", f.sampling.temperature, "0 = greedy")->capture_default_str();
  cmd.add_option("--seed", f.sampling.seed, "sampling seed")->capture_default_str();
  cmd.add_option("--stop", f.stop, "stop strings");
}

int stream_answer(actors::router_access& runtime, const prompt_flags& f, const std::string& where,
                  const std::function<bool()>& stopped) {
  client c(runtime);
  client_request r;
  if (f.chat)
    r.chat = {{"user", f.prompt}};
  else
    r.prompt = f.prompt;
  r.max_tokens = f.max_tokens;
  r.sampling = f.sampling;
  r.stop = f.stop;
  // Shared with the callback: an interrupted wait returns before the final may come.
  auto done = std::make_shared<std::promise<actors::final_message>>();
  auto id = c.submit(
      r,
      [](const actors::token_chunk& chunk) {
        std::fwrite(chunk.text.data(), 1, chunk.text.size(), stdout);
        std::fflush(stdout);
      },
      [done](const actors::final_message& fin) { done->set_value(fin); });
  if (!id) return report(id.err());
  auto answered = done->get_future();
  while (answered.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready) {
    if (!stopped()) continue;
    c.cancel(*id);   // its final follows
    if (answered.wait_for(std::chrono::milliseconds(cancel_wait_ms)) != std::future_status::ready) {
      std::printf("\n");
      return report(make_error(error_code::cancelled, "interrupted; the request's final did not come within {} ms",
                               cancel_wait_ms));
    }
    break;
  }
  const auto fin = answered.get();
  std::printf("\n");
  if (fin.failure) return report(*fin.failure);
  std::fprintf(stderr, "[%u prompt tokens, %u generated, finished by %s, %s]\n", fin.prompt_tokens,
               fin.completion_tokens, fin.reason == actors::finish_reason::stop ? "stop" : "length", where.c_str());
  return 0;
}

}  // namespace dsrt::apps
