#pragma once
// Starting the in-process serving runtime from command-line flags: R replicas of one
// model, each with its own copy of the model and KV memory and its share of the CPU
// threads, or a null backend (no model math) for measuring the runtime's own overhead.
#include <memory>
#include <vector>

#include "actors/local_runtime.h"
#include "apps/common/engine_setup.h"

namespace dsrt::apps {

struct runtime_flags {
  std::int32_t replicas = 1;
  bool null_backend = false;
  bool ignore_eos = false;    // generate exactly max_tokens (benchmarks)
  std::string config_file;    // settings file (docs/CONFIGURATION.md); "" = none
  std::vector<std::string> overrides;   // --set section.name=value, after the file
};

void add_runtime_flags(CLI::App& app, runtime_flags& flags);

struct loaded_runtime {
  std::vector<loaded_engine> engines;                    // empty with the null backend
  std::shared_ptr<const tokenizer::tokenizer> tokenizer;
  std::unique_ptr<actors::local_runtime> runtime;
};

// Applies --config and --set to `options` and the model options (CONFIGURATION.md;
// --kv-cache-mb and --step-tokens-max give the model.* defaults).
// Errors: the settings', the model loader's and tokenizer's.
result<loaded_runtime> start_runtime(const engine_flags& engine, const runtime_flags& flags,
                                     actors::runtime_options options);

}  // namespace dsrt::apps
