// dsrun: the command-line entry point for running dsrt.
//   dsrun generate --model DIR --prompt TEXT   stream a completion to stdout
//   dsrun ask --model DIR --prompt TEXT [--replicas R]   the same through the serving runtime
//   dsrun tokenize --model DIR [--decode]      text lines <-> JSON arrays of token ids
//   dsrun logits --model DIR --token-ids 1,2 --out F.json   every position's logits, as JSON
#include <CLI/CLI.hpp>

#include "apps/dsrun/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"dsrun: run DeepSeek-family models with dsrt"};
  app.require_subcommand(1);
  auto generate = dsrt::apps::add_generate_command(app);
  auto tokenize = dsrt::apps::add_tokenize_command(app);
  auto logits = dsrt::apps::add_logits_command(app);
  auto ask = dsrt::apps::add_ask_command(app);
  CLI11_PARSE(app, argc, argv);
  if (app.got_subcommand("generate")) return generate();
  if (app.got_subcommand("logits")) return logits();
  if (app.got_subcommand("ask")) return ask();
  return tokenize();
}
