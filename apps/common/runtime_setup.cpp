#include "apps/common/runtime_setup.h"

#include <algorithm>

#include "actors/runtime_settings.h"
#include "runtime/model/config.h"
#include "runtime/serving/step_executor.h"

namespace dsrt::apps {

void add_runtime_flags(CLI::App& app, runtime_flags& flags) {
  app.add_option("--replicas", flags.replicas, "model replicas, each with its own model copy and KV cache")
      ->capture_default_str()
      ->check(CLI::Range(1, replicas_max));
  app.add_flag("--null-backend", flags.null_backend,
               "shards return tokens without running the model: measures the runtime's overhead");
  app.add_flag("--ignore-eos", flags.ignore_eos, "generate exactly max_tokens (no end-of-sequence stop)");
  app.add_option("--config", flags.config_file, "runtime settings file (JSON; docs/CONFIGURATION.md)");
  app.add_option("--set", flags.overrides, "override one setting: section.name=value (after --config)");
}

status check_connect_flags(const engine_flags& engine, const runtime_flags& flags) {
  const engine_flags defaults;
  const char* given = !flags.config_file.empty()                        ? "--config"
                      : !flags.overrides.empty()                        ? "--set"
                      : flags.null_backend                              ? "--null-backend"
                      : flags.ignore_eos                                ? "--ignore-eos"
                      : engine.threads != defaults.threads              ? "--threads"
                      : engine.isa != defaults.isa                      ? "--isa"
                      : engine.kv_cache_mb != defaults.kv_cache_mb      ? "--kv-cache-mb"
                      : engine.step_tokens_max != defaults.step_tokens_max ? "--step-tokens-max"
                      : engine.weights_memory != defaults.weights_memory ? "--weights-memory"
                      : engine.device != defaults.device                ? "--device"
                                                                        : nullptr;
  if (!given) return ok_t{};
  return make_error(error_code::invalid_argument,
                    "{} configures an in-process runtime; with --connect the cluster's nodes hold their own "
                    "(a dsrun cluster's: --node-arg={}...)",
                    given, given);
}

result<loaded_replicas> load_replicas(const engine_flags& engine, const runtime_flags& flags,
                                      actors::runtime_options options, bool models) {
  loaded_replicas out;
  engine::model_options model = model_options_of(engine);
  options.replicas = flags.replicas;
  const std::filesystem::path file = flags.config_file;
  DSRT_TRY(actors::load_runtime_settings(flags.config_file.empty() ? nullptr : &file, flags.overrides,
                                         options, model));
  if (flags.replicas_fixed && options.replicas != flags.replicas)
    return make_error(error_code::invalid_argument,
                      "runtime.replicas is {} in the settings but --replicas is {}: a node's replicas come from "
                      "--replicas (dsrun: --replicas, spread over the workers)",
                      options.replicas, flags.replicas);
  auto tok = tokenizer::tokenizer::load(engine.model_dir);
  if (!tok) return tok.err();
  auto tokenizer = std::make_shared<tokenizer::tokenizer>(std::move(tok).value());
  model::model_config config;
  if (flags.null_backend || !models) {
    auto files = model::load_model_dir(engine.model_dir, {.memory = model::weights_memory::mapped});
    if (!files) return files.err();
    config = (*files)->config;
    // As many blocks as 1 KB of KV per token would give: the null backend holds no memory.
    const int block_tokens = model.kv_block_tokens;
    for (int i = 0; models && i < options.replicas; ++i)
      out.executors.push_back(std::make_shared<serving::null_executor>(
          config.vocab_size, 3, std::int32_t(model.kv_cache_bytes_max / (block_tokens * 1024)),
          block_tokens, model.step_tokens_max));
  } else {
    // Each replica gets its share of the cores (at least one thread).
    const int cores = engine.threads > 0 ? engine.threads : usable_cores();
    engine_flags per_replica = engine;
    per_replica.threads = std::max(1, cores / options.replicas);
    auto device = parse_device(engine.device);
    if (!device) return device.err();
    for (int i = 0; i < options.replicas; ++i) {
      // One GPU per replica (its shard owns it): replica i on the first ordinal + i.
      if (device->cuda) per_replica.device = fmt::format("cuda:{}", device->ordinal + i);
      auto e = load_engine(per_replica, model);
      if (!e) return e.err();
      out.executors.push_back(std::make_shared<serving::model_executor>(*e->model));
      out.engines.push_back(std::move(e).value());
    }
    config = out.engines.front().model->config();
  }
  DSRT_TRY(check_tokenizer_fits(*tokenizer, config.vocab_size));
  options.router.policy.vocab_size = config.vocab_size;
  // A request must fit the positions and the smallest replica's KV cache here (a head has no
  // replicas of its own: its workers' batchers refuse what their caches cannot hold).
  std::int64_t context = config.max_position_embeddings;
  for (const auto& e : out.executors)
    context = std::min(context, std::int64_t(e->kv_blocks()) * e->kv_block_tokens());
  options.router.policy.context_tokens_max = context;
  if (!flags.ignore_eos) options.router.policy.stop_token_ids = tokenizer->eos_ids();
  out.tokenizer = std::move(tokenizer);
  out.options = std::move(options);
  return out;
}

result<loaded_runtime> start_runtime(const engine_flags& engine, const runtime_flags& flags,
                                     actors::runtime_options options) {
  auto replicas = load_replicas(engine, flags, std::move(options));
  if (!replicas) return replicas.err();
  loaded_runtime out;
  out.engines = std::move(replicas->engines);
  out.tokenizer = replicas->tokenizer;
  auto rt = actors::local_runtime::start(replicas->options, std::move(replicas->executors), replicas->tokenizer);
  if (!rt) return rt.err();
  out.runtime = std::move(rt).value();
  return out;
}

}  // namespace dsrt::apps
