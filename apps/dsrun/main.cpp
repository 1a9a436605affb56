// dsrun: the command-line entry point for running dsrt.
//   dsrun generate --model DIR --prompt TEXT   stream a completion to stdout
//   dsrun ask --model DIR --prompt TEXT [--replicas R]   the same through the serving runtime
//   dsrun tokenize --model DIR [--decode]      text lines <-> JSON arrays of token ids
//   dsrun logits --model DIR --token-ids 1,2 --out F.json   every position's logits, as JSON
//   dsrun --nodes N --model DIR [--replicas R] [--port P]  a local cluster (= dsrun cluster ...)
#include <CLI/CLI.hpp>

#include <cstring>
#include <vector>

#include "apps/dsrun/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"dsrun: run DeepSeek-family models with dsrt"};
  app.require_subcommand(1);
  auto generate = dsrt::apps::add_generate_command(app);
  auto tokenize = dsrt::apps::add_tokenize_command(app);
  auto logits = dsrt::apps::add_logits_command(app);
  auto ask = dsrt::apps::add_ask_command(app);
  auto cluster = dsrt::apps::add_cluster_command(app);
  // `dsrun --nodes N ...` is `dsrun cluster --nodes N ...`.
  std::vector<char*> args(argv, argv + argc);
  char cluster_word[] = "cluster";
  if (argc > 1 && std::strncmp(argv[1], "--", 2) == 0 && std::strcmp(argv[1], "--help") != 0)
    args.insert(args.begin() + 1, cluster_word);
  try {
    app.parse(int(args.size()), args.data());
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (app.got_subcommand("cluster")) return cluster();
  if (app.got_subcommand("generate")) return generate();
  if (app.got_subcommand("logits")) return logits();
  if (app.got_subcommand("ask")) return ask();
  return tokenize();
}
