#include "apps/common/engine_setup.h"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <thread>

#include "kernels/cuda_backend.h"
#include "runtime/model/weights.h"
#include "runtime/tokenizer/tokenizer_impl.h"

namespace dsrt::apps {

void add_engine_flags(CLI::App& app, engine_flags& flags) {
  app.add_option("--model", flags.model_dir, "model directory (config.json, *.safetensors, tokenizer.json)")
      ->required();
  app.add_option("--device", flags.device,
                 "where the model runs: cpu, or cuda:N for CUDA device N (cuda = cuda:0); with "
                 "several replicas, replica i runs on cuda:N+i")
      ->capture_default_str();
  app.add_option("--threads", flags.threads, "CPU threads (default: the cores this process may use)")
      ->check(CLI::Range(0, kernels::cpu_threads_max));
  app.add_option("--isa", flags.isa, "CPU path: avx512bf16, avx512, avx2 or scalar (default: best available)");
  app.add_option("--kv-cache-mb", flags.kv_cache_mb, "KV cache memory in MiB")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t(1), std::int64_t(1) << 20));
  app.add_option("--step-tokens-max", flags.step_tokens_max, "most tokens in one forward step")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t(1), engine::step_tokens_max_limit));
  app.add_option("--weights-memory", flags.weights_memory,
                 "huge-pages: copy the weights into 2 MB-page memory at load (faster decode); "
                 "mapped: use the file mapping as it is (no copy)")
      ->capture_default_str()
      ->check(CLI::IsMember({"huge-pages", "mapped"}));
}

engine::model_options model_options_of(const engine_flags& flags) {
  engine::model_options options;
  options.kv_cache_bytes_max = flags.kv_cache_mb << 20;
  options.step_tokens_max = flags.step_tokens_max;
  return options;
}

status check_tokenizer_fits(const tokenizer::tokenizer& tok, int vocab_size) {
  auto refuse = [&](std::string_view what, std::int64_t id) {
    return make_error(error_code::invalid_argument,
                      "the tokenizer's {} (id {}) is not below the model's vocab_size ({}, config.json)", what, id,
                      vocab_size);
  };
  if (tok.vocab_size() > vocab_size) return refuse("vocabulary", tok.vocab_size() - 1);
  if (const auto bos = tok.bos_id(); bos && *bos >= vocab_size) return refuse("BOS token", *bos);
  for (const auto id : tok.eos_ids())
    if (id >= vocab_size) return refuse("EOS token", id);
  for (const auto* ids : {&tok.data().prefix_ids, &tok.data().suffix_ids})
    for (const auto id : *ids)
      if (id >= vocab_size) return refuse("template token", id);
  return ok_t{};
}

result<device_choice> parse_device(const std::string& text) {
  if (text == "cpu") return device_choice{};
  if (text == "cuda") return device_choice{.cuda = true};
  constexpr std::string_view prefix = "cuda:";
  int ordinal = -1;
  if (text.starts_with(prefix)) {
    const char* begin = text.data() + prefix.size();
    const char* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(begin, end, ordinal);
    if (ec == std::errc{} && ptr == end && begin != end && ordinal >= 0)
      return device_choice{.cuda = true, .ordinal = ordinal};
  }
  return make_error(error_code::invalid_argument,
                    "--device {}: expected cpu, cuda or cuda:N (N a CUDA device ordinal)", text);
}

result<loaded_engine> load_engine(const engine_flags& flags) { return load_engine(flags, model_options_of(flags)); }

result<loaded_engine> load_engine(const engine_flags& flags, const engine::model_options& options) {
  auto device = parse_device(flags.device);
  if (!device) return device.err();
  if (!flags.isa.empty() && !kernels::cpu_isa_supported(flags.isa))
    return make_error(error_code::invalid_argument,
                      "--isa {}: not supported on this CPU (best here: {})", flags.isa,
                      kernels::cpu_best_isa());
  model::load_options load;
  load.memory = flags.weights_memory == "mapped" ? model::weights_memory::mapped
                                                 : model::weights_memory::huge_pages;
  auto files = model::load_model_dir(flags.model_dir, load);
  if (!files) return files.err();
  auto tok = tokenizer::tokenizer::load(flags.model_dir);
  if (!tok) return tok.err();
  DSRT_TRY(check_tokenizer_fits(*tok, (*files)->config.vocab_size));
  loaded_engine e;
  if (device->cuda) {
    std::string why;
    e.backend = kernels::make_cuda_backend({.device = device->ordinal}, &why);
    if (!e.backend) return make_error(error_code::unavailable, "--device {}: {}", flags.device, why);
  } else {
    e.backend = kernels::make_cpu_backend({.threads = flags.threads, .isa = flags.isa});
  }
  auto model = engine::create_causal_lm(std::move(files).value(), *e.backend, options);
  if (!model) return model.err();
  e.model = std::move(model).value();
  e.tokenizer = std::make_unique<tokenizer::tokenizer>(std::move(tok).value());
  return e;
}

int usable_cores() {
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  return int(std::max(1u, std::thread::hardware_concurrency()));
}

int report(const error& e) {
  std::fprintf(stderr, "dsrt: %s\n", e.to_string().c_str());
  return e.code == error_code::invalid_argument ? 2 : 1;
}

}  // namespace dsrt::apps
