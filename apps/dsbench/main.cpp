// dsbench: dsrt's benchmarks. They measure speed and report it against a limit measured in
// the same run (PERFORMANCE.md); they assert nothing.
//   dsbench engine --model DIR --batch 1,8,32 --prompt-len 128 --gen 64 [--json FILE]
#include <CLI/CLI.hpp>

#include "apps/dsbench/engine_bench.h"

int main(int argc, char** argv) {
  CLI::App app{"dsbench: dsrt benchmarks"};
  app.require_subcommand(1);
  auto engine = dsrt::apps::add_engine_bench(app);
  CLI11_PARSE(app, argc, argv);
  return engine();
}
