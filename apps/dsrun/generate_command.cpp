// dsrun generate: one prompt, streamed to stdout as it is generated.
#include <chrono>
#include <cstdio>
#include <memory>
#include <set>

#include "apps/common/engine_setup.h"
#include "apps/dsrun/commands.h"
#include "runtime/engine/generator.h"

namespace dsrt::apps {
namespace {

struct generate_flags {
  engine_flags engine;
  std::string prompt;
  std::string system;
  bool chat = false;
  int max_tokens = 128;
  engine::sampling_params sampling;
  std::vector<std::string> stop;
  bool quiet = false;
};

int run_generate(const generate_flags& f) {
  auto loaded = load_engine(f.engine);
  if (!loaded) return report(loaded.err());
  auto& e = *loaded;
  std::vector<std::int32_t> prompt;
  if (f.chat) {
    std::vector<tokenizer::chat_message> messages;
    if (!f.system.empty()) messages.push_back({"system", f.system});
    messages.push_back({"user", f.prompt});
    auto text = tokenizer::format_chat(*e.tokenizer, messages);
    if (!text) return report(text.err());
    prompt = e.tokenizer->encode(*text, /*add_special=*/false);  // the template adds BOS itself
  } else {
    prompt = e.tokenizer->encode(f.prompt);
  }

  engine::generation_request request;
  request.prompt = std::move(prompt);
  request.sampling = f.sampling;
  request.max_tokens = f.max_tokens;
  request.stop_strings = f.stop;
  const std::vector<std::int32_t> eos = e.tokenizer->eos_ids();
  std::set<std::int32_t> stops(eos.begin(), eos.end());
  for (int id : e.model->config().eos_token_ids) stops.insert(id);
  request.stop_token_ids.assign(stops.begin(), stops.end());

  engine::generator gen(*e.model, *e.tokenizer);
  const auto start = std::chrono::steady_clock::now();
  auto out = gen.run({&request, 1}, [](std::size_t, std::string_view text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  });
  if (!out) return report(out.err());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fputc('\n', stdout);
  if (!f.quiet) {
    const auto& o = (*out)[0];
    std::fprintf(stderr, "dsrt: %zu prompt tokens, %zu generated, finish %s, %.2f s (%.1f tokens/s) on %s/%s x%d\n",
                 request.prompt.size(), o.tokens.size(),
                 o.reason == engine::finish_reason::stop ? "stop" : "length", seconds,
                 double(o.tokens.size()) / seconds, e.backend->caps().name.c_str(),
                 e.backend->caps().detail.c_str(), e.backend->caps().threads);
  }
  return 0;
}

}  // namespace

std::function<int()> add_generate_command(CLI::App& app) {
  auto flags = std::make_shared<generate_flags>();
  auto* cmd = app.add_subcommand("generate", "generate a completion and stream it to stdout");
  add_engine_flags(*cmd, flags->engine);
  cmd->add_option("--prompt", flags->prompt, "prompt text (the user message with --chat)")->required();
  cmd->add_flag("--chat", flags->chat, "format the prompt with the model's chat template");
  cmd->add_option("--system", flags->system, "system message (with --chat)");
  cmd->add_option("--max-tokens", flags->max_tokens, "tokens to generate at most")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--temperature", flags->sampling.temperature, "0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", flags->sampling.top_k, "0 = off")->capture_default_str();
  cmd->add_option("--top-p", flags->sampling.top_p, "1 = off")->capture_default_str();
  cmd->add_option("--min-p", flags->sampling.min_p, "0 = off")->capture_default_str();
  cmd->add_option("--seed", flags->sampling.seed, "sampling seed")->capture_default_str();
  cmd->add_option("--stop", flags->stop, "stop string (repeatable)");
  cmd->add_flag("--quiet", flags->quiet, "no statistics line on stderr");
  return [flags] { return run_generate(*flags); };
}

}  // namespace dsrt::apps
