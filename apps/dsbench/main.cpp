// dsbench: dsrt's benchmarks. They measure speed and report it against a limit measured in
// the same run (PERFORMANCE.md); they assert nothing.
//   dsbench engine --model DIR --batch 1,8,32 --prompt-len 128 --gen 64 [--json FILE]
//   dsbench load --inproc --model DIR --replicas R --requests N --concurrency C
//                [--fault SPEC]... [--null-backend] [--json FILE]
//   dsbench transport [--round-trips N --tensor-mb 64 --tensors 16] [--no-actors] [--idle-peers N] [--json FILE]
#include <CLI/CLI.hpp>

#include "apps/dsbench/engine_bench.h"
#include "apps/dsbench/load_bench.h"
#include "apps/dsbench/transport_bench.h"

int main(int argc, char** argv) {
  CLI::App app{"dsbench: dsrt benchmarks"};
  app.require_subcommand(1);
  auto engine = dsrt::apps::add_engine_bench(app);
  auto load = dsrt::apps::add_load_bench(app);
  auto transport = dsrt::apps::add_transport_bench(app);
  CLI11_PARSE(app, argc, argv);
  if (app.got_subcommand("transport")) return transport();
  return app.got_subcommand("load") ? load() : engine();
}
