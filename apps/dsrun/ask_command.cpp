// dsrun ask: starts the serving runtime in this process (router, batchers, shards,
// supervisor; --replicas copies of the model) and streams the answer to one request through
// the embedded client — the whole serving path, on one machine. With --connect it asks a
// running cluster instead (dsrun --nodes N prints its address and secret file).
#include "actors/remote_runtime.h"
#include "apps/common/runtime_setup.h"
#include "apps/dsrun/commands.h"
#include "apps/dsrun/stream_answer.h"
#include "transport/auth.h"

namespace dsrt::apps {
namespace {

struct ask_flags {
  engine_flags engine;
  runtime_flags runtime{.replicas = 2};
  prompt_flags ask;
  std::string connect;       // dsrt://HOST:PORT of a running cluster
  std::string secret_file;
};

int run_ask(const ask_flags& f) {
  if (!f.connect.empty()) {
    if (auto s = check_connect_flags(f.engine, f.runtime); !s)
      return report(s.err());
    auto secret = transport::read_secret_file(f.secret_file);
    if (!secret) return report(secret.err());
    auto tok = tokenizer::tokenizer::load(f.engine.model_dir);
    if (!tok) return report(tok.err());
    auto rt = actors::remote_runtime::connect(f.connect, *secret, std::make_shared<tokenizer::tokenizer>(std::move(*tok)));
    if (!rt) return report(rt.err());
    return stream_answer(**rt, f.ask, "through " + f.connect);
  }
  auto loaded = start_runtime(f.engine, f.runtime, actors::runtime_options{});
  if (!loaded) return report(loaded.err());
  return stream_answer(*loaded->runtime, f.ask, fmt::format("{} replicas", loaded->runtime->replicas()));
}

}  // namespace

std::function<int()> add_ask_command(CLI::App& app) {
  auto f = std::make_shared<ask_flags>();
  auto* cmd = app.add_subcommand("ask", "serve one request through the in-process runtime (router, batchers, shards)");
  add_engine_flags(*cmd, f->engine);
  add_runtime_flags(*cmd, f->runtime);
  add_prompt_flags(*cmd, f->ask, /*prompt_required=*/true);
  auto* connect = cmd->add_option("--connect", f->connect,
                                  "ask a running cluster at dsrt://HOST:PORT (the model dir gives the tokenizer)");
  auto* secret = cmd->add_option("--secret-file", f->secret_file, "the cluster's secret file (with --connect)");
  secret->needs(connect);
  connect->needs(secret);
  return [f] { return run_ask(*f); };
}

}  // namespace dsrt::apps
