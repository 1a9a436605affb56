// dsrun ask: starts the serving runtime in this process (router, batchers, shards,
// supervisor; --replicas copies of the model) and streams the answer to one request through
// the embedded client — the whole serving path, on one machine.
#include <cstdio>
#include <future>

#include "actors/client.h"
#include "apps/common/runtime_setup.h"
#include "apps/dsrun/commands.h"

namespace dsrt::apps {
namespace {

struct ask_flags {
  engine_flags engine;
  runtime_flags runtime{.replicas = 2};
  std::string prompt;
  bool chat = false;
  int max_tokens = 64;
  engine::sampling_params sampling;
  std::vector<std::string> stop;
};

int run_ask(const ask_flags& f) {
  auto loaded = start_runtime(f.engine, f.runtime, actors::runtime_options{});
  if (!loaded) return report(loaded.err());
  client c(*loaded->runtime);
  client_request r;
  if (f.chat)
    r.chat = {{"user", f.prompt}};
  else
    r.prompt = f.prompt;
  r.max_tokens = f.max_tokens;
  r.sampling = f.sampling;
  r.stop = f.stop;
  std::promise<actors::final_message> done;
  auto id = c.submit(
      r,
      [](const actors::token_chunk& chunk) {
        std::fwrite(chunk.text.data(), 1, chunk.text.size(), stdout);
        std::fflush(stdout);
      },
      [&done](const actors::final_message& fin) { done.set_value(fin); });
  if (!id) return report(id.err());
  const auto fin = done.get_future().get();
  std::printf("\n");
  if (fin.failure) return report(*fin.failure);
  std::fprintf(stderr, "[%u prompt tokens, %u generated, finished by %s, %d replicas]\n", fin.prompt_tokens,
               fin.completion_tokens, fin.reason == actors::finish_reason::stop ? "stop" : "length",
               f.runtime.replicas);
  return 0;
}

}  // namespace

std::function<int()> add_ask_command(CLI::App& app) {
  auto f = std::make_shared<ask_flags>();
  auto* cmd = app.add_subcommand("ask", "serve one request through the in-process runtime (router, batchers, shards)");
  add_engine_flags(*cmd, f->engine);
  add_runtime_flags(*cmd, f->runtime);
  cmd->add_option("--prompt", f->prompt, "the prompt")->required();
  cmd->add_flag("--chat", f->chat, "format the prompt as a user message with the model's chat template");
  cmd->add_option("--max-tokens", f->max_tokens, "tokens to generate")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--temperature", f->sampling.temperature, "0 = greedy")->capture_default_str();
  cmd->add_option("--seed", f->sampling.seed, "sampling seed")->capture_default_str();
  cmd->add_option("--stop", f->stop, "stop strings");
  return [f] { return run_ask(*f); };
}

}  // namespace dsrt::apps
