#pragma once
// Starting the in-process serving runtime from command-line flags: R replicas of one
// model, each with its own copy of the model and KV memory and its share of the CPU
// threads, or a null backend (no model math) for measuring the runtime's own overhead.
#include <memory>
#include <vector>

#include "actors/local_runtime.h"
#include "actors/runtime_settings.h"
#include "apps/common/engine_setup.h"

namespace dsrt::apps {

struct runtime_flags {
  std::int32_t replicas = 1;
  bool null_backend = false;
  bool ignore_eos = false;    // generate exactly max_tokens (benchmarks)
  std::string config_file;    // settings file (docs/CONFIGURATION.md); "" = none
  std::vector<std::string> overrides;   // --set section.name=value, after the file
  // A cluster node's count is --replicas (dsrun's layout): settings naming another
  // runtime.replicas are refused instead of one of the two being ignored.
  bool replicas_fixed = false;
};

// --replicas' bound: runtime.replicas' (dsnode head takes a whole cluster's count).
inline constexpr int replicas_max = actors::runtime_replicas_max;

void add_runtime_flags(CLI::App& app, runtime_flags& flags);

// With --connect the cluster's nodes run the requests, with their own settings and models:
// the flags that configure an in-process runtime or its engine would be ignored (the
// model directory gives only the tokenizer). Errors: invalid_argument naming the first one
// given (an engine flag given its default value is not seen).
status check_connect_flags(const engine_flags& engine, const runtime_flags& flags);

// A node's replicas before any actor runs: the models (one copy each), their executors,
// the tokenizer, and the runtime options with the settings and the model's limits applied.
struct loaded_replicas {
  std::vector<loaded_engine> engines;                    // empty with the null backend
  std::vector<std::shared_ptr<serving::step_executor>> executors;   // one per replica
  std::shared_ptr<const tokenizer::tokenizer> tokenizer;
  actors::runtime_options options;
};

// Loads flags.replicas replicas, which share the CPU threads (--threads, or every core).
// Without `models` (a head node) only the tokenizer and the model's config are read and
// there are no executors. Errors: the settings' (and with flags.replicas_fixed
// invalid_argument for another runtime.replicas, before anything loads), the model
// loader's and tokenizer's.
result<loaded_replicas> load_replicas(const engine_flags& engine, const runtime_flags& flags,
                                      actors::runtime_options options, bool models = true);

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
