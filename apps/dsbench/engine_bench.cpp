#include "apps/dsbench/engine_bench.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>

#include "apps/common/engine_setup.h"
#include "apps/dsbench/device_roofline.h"
#include "apps/dsbench/machine_info.h"
#include "kernels/cpu/memory_bandwidth.h"
#include "runtime/engine/block_manager.h"
#include "runtime/engine/sampler.h"

namespace dsrt::apps {
namespace {

using clock_type = std::chrono::steady_clock;

struct engine_bench_flags {
  engine_flags engine;
  std::vector<int> batches = {1, 8, 32};
  int prompt_len = 128;
  int gen = 64;
  std::uint64_t seed = 1;
  std::string json_path;
  std::int64_t bw_buffer_mb = 1024;   // must be far larger than the last-level cache
  double peak_tflops = 0;             // 0: the device's known bf16 peak (GPUs), else none
};

struct batch_result {
  int batch = 0;
  double prefill_tokens_per_s = 0;
  double prefill_gflops = 0;
  double prefill_peak_ratio = 0;      // prefill_gflops over the bf16 peak (0: peak unknown)
  double decode_tokens_per_s = 0;
  double step_ms = 0;
  double mem_bw_gbps = 0;
  double roofline_tokens_per_s = 0;
  double roofline_ratio = 0;
  double weight_bytes_per_step = 0;   // average over the decode steps (MoE: routed experts only)
  double weight_read_gbps = 0;        // weight_bytes_per_step / step time
};

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

// Prefills `batch` random prompts, then decodes `gen` greedy tokens for all of them. The
// greedy tokens are picked by the backend (forward_greedy): a GPU sends back ids, not logits.
// measure_bandwidth: false for the warm-up run, which reports nothing.
result<batch_result> run_batch(engine::causal_lm& model, kernels::backend& backend, int batch,
                               const engine_bench_flags& f, bool measure_bandwidth) {
  const auto& c = model.config();
  engine::block_manager blocks(model.kv_blocks(), model.kv_block_tokens());
  engine::rng random(f.seed + std::uint64_t(batch));
  std::vector<std::vector<std::int32_t>> prompts(static_cast<std::size_t>(batch));
  std::vector<engine::sequence_blocks> seqs(prompts.size());
  std::vector<engine::block_copy> copies;
  for (std::size_t s = 0; s < prompts.size(); ++s) {
    for (int i = 0; i < f.prompt_len; ++i)
      prompts[s].push_back(std::int32_t(random.next() % std::uint64_t(c.vocab_size)));
    if (!blocks.reserve(seqs[s], f.prompt_len + f.gen, copies))
      return make_error(error_code::invalid_argument,
                        "batch {} x {} tokens does not fit the KV cache; raise --kv-cache-mb", batch,
                        f.prompt_len + f.gen);
  }
  std::vector<std::int32_t> ids;
  std::vector<engine::step_sequence> step;
  std::vector<std::int32_t> next(prompts.size());

  // Prefill: steps of at most step_tokens_max tokens, whole prompts where they fit and
  // chunks of a prompt where they do not; a prompt's first token is sampled after its last
  // chunk.
  const std::int64_t budget = f.engine.step_tokens_max;
  std::vector<std::size_t> owner;
  std::size_t next_prompt = 0;
  std::int64_t done_in_prompt = 0;
  const auto prefill_start = clock_type::now();
  while (next_prompt < prompts.size()) {
    step.clear();
    owner.clear();
    std::int64_t tokens = 0;
    while (next_prompt < prompts.size() && tokens < budget) {
      const auto& p = prompts[next_prompt];
      const std::int64_t chunk = std::min(budget - tokens, std::int64_t(p.size()) - done_in_prompt);
      step.push_back({std::span(p).subspan(std::size_t(done_in_prompt), std::size_t(chunk)), done_in_prompt,
                      seqs[next_prompt].table, false});
      owner.push_back(next_prompt);
      tokens += chunk;
      done_in_prompt += chunk;
      if (done_in_prompt == std::int64_t(p.size())) {
        ++next_prompt;
        done_in_prompt = 0;
      }
    }
    DSRT_TRY(model.forward_greedy(step, ids));
    for (std::size_t i = 0; i < step.size(); ++i) {
      const bool last_chunk = step[i].first_position + std::int64_t(step[i].tokens.size()) == f.prompt_len;
      if (last_chunk) next[owner[i]] = ids[i];
    }
  }
  const double prefill_s = seconds_since(prefill_start);

  batch_result r;
  r.batch = batch;
  const double prefill_tokens = double(batch) * f.prompt_len;
  r.prefill_tokens_per_s = prefill_tokens / prefill_s;
  r.prefill_gflops = 2.0 * double(model.weight_elements_per_token()) * prefill_tokens / prefill_s / 1e9;

  const std::size_t bw_bytes = std::size_t(f.bw_buffer_mb) << 20;
  // A host backend's roofline is the CPU's read bandwidth; a device's, its own copy bandwidth.
  if (measure_bandwidth)
    r.mem_bw_gbps = backend.caps().host_visible_memory
                        ? kernels::cpu::measure_read_bandwidth_gbps(
                              {.threads = backend.caps().threads, .buffer_bytes = bw_bytes})
                        : measure_device_copy_gbps(backend, bw_bytes);
  double weight_bytes = 0;
  const auto decode_start = clock_type::now();
  for (int t = 0; t < f.gen; ++t) {
    step.clear();
    for (std::size_t s = 0; s < prompts.size(); ++s)
      step.push_back({std::span(&next[s], 1), f.prompt_len + t, seqs[s].table, false});
    DSRT_TRY(model.forward_greedy(step, ids));
    weight_bytes += double(model.last_step_weight_bytes());
    next = ids;
  }
  const double decode_s = seconds_since(decode_start);
  r.decode_tokens_per_s = double(batch) * f.gen / decode_s;
  r.step_ms = decode_s / f.gen * 1e3;
  r.weight_bytes_per_step = weight_bytes / f.gen;
  r.weight_read_gbps = r.weight_bytes_per_step / (decode_s / f.gen) / 1e9;
  // Roofline: B * bw / (weights + B * KV bytes read per sequence), the KV read at the
  // average context of the decode run; the weights are those the steps actually read.
  const double average_context = f.prompt_len + (f.gen + 1) / 2.0;
  const double bytes_per_step = r.weight_bytes_per_step +
                                double(batch) * average_context * double(model.kv_bytes_per_token());
  r.roofline_tokens_per_s = double(batch) * r.mem_bw_gbps * 1e9 / bytes_per_step;
  r.roofline_ratio = measure_bandwidth ? r.decode_tokens_per_s / r.roofline_tokens_per_s : 0.0;
  for (auto& s : seqs) blocks.release(s);
  return r;
}

int run_engine_bench(const engine_bench_flags& f) {
  auto loaded = load_engine(f.engine);
  if (!loaded) return report(loaded.err());
  auto& model = *loaded->model;
  const auto& caps = loaded->backend->caps();
  auto machine = describe_machine();
  if (!caps.host_visible_memory) machine.gpu = caps.detail;

  // Warm-up: fault the weights in and settle the thread pool.
  engine_bench_flags warm_flags = f;
  warm_flags.prompt_len = std::min(f.prompt_len, 16);
  warm_flags.gen = 4;
  if (auto warm = run_batch(model, *loaded->backend, 1, warm_flags, false); !warm)
    return report(warm.err());

  const double peak_tflops = f.peak_tflops > 0 ? f.peak_tflops
                             : caps.host_visible_memory ? 0.0
                                                        : known_bf16_peak_tflops(caps.detail);
  std::vector<batch_result> results;
  for (int b : f.batches) {
    auto r = run_batch(model, *loaded->backend, b, f, true);
    if (!r) return report(r.err());
    if (peak_tflops > 0) r->prefill_peak_ratio = r->prefill_gflops / (peak_tflops * 1e3);
    results.push_back(*r);
  }

  std::printf("model %s (%s), %s path %s x%d threads\n", f.engine.model_dir.c_str(),
              std::string(model::architecture_name(model.config().arch)).c_str(), caps.name.c_str(),
              caps.detail.c_str(), caps.threads);
  std::printf("machine: %s, %d cores%s%s; prompt %d tokens, %d generated\n", machine.cpu_model.c_str(),
              machine.cores, machine.gpu.empty() ? "" : ", GPU ", machine.gpu.c_str(), f.prompt_len, f.gen);
  std::printf("%6s %14s %12s %14s %10s %10s %10s %10s %14s %8s\n", "batch", "prefill tok/s",
              "prefill GF/s", "decode tok/s", "step ms", "MB/step", "weight GB/s", "mem GB/s",
              "roofline tok/s", "ratio");
  for (const auto& r : results)
    std::printf("%6d %14.1f %12.1f %14.1f %10.2f %10.1f %10.1f %10.1f %14.1f %8.3f\n", r.batch,
                r.prefill_tokens_per_s, r.prefill_gflops, r.decode_tokens_per_s, r.step_ms,
                r.weight_bytes_per_step / 1e6, r.weight_read_gbps, r.mem_bw_gbps,
                r.roofline_tokens_per_s, r.roofline_ratio);
  if (peak_tflops > 0)
    for (const auto& r : results)
      std::printf("batch %d prefill: %.1f TFLOP/s = %.3f of the %.0f TFLOP/s bf16 peak\n", r.batch,
                  r.prefill_gflops / 1e3, r.prefill_peak_ratio, peak_tflops);
  std::printf("peak resident memory: %.1f MB\n", double(peak_rss_bytes()) / 1e6);

  if (!f.json_path.empty()) {
    nlohmann::json j;
    j["model"] = f.engine.model_dir;
    j["architecture"] = model::architecture_name(model.config().arch);
    j["kv_bytes_per_token"] = model.kv_bytes_per_token();
    j["prompt_len"] = f.prompt_len;
    j["gen"] = f.gen;
    j["backend"] = {{"name", caps.name}, {"detail", caps.detail}, {"threads", caps.threads}};
    j["machine"] = {{"cpu", machine.cpu_model}, {"cores", machine.cores}, {"gpu", machine.gpu}};
    j["peak_rss_bytes"] = peak_rss_bytes();
    double best_bw = 0;
    for (const auto& r : results) {
      best_bw = std::max(best_bw, r.mem_bw_gbps);
      j["results"].push_back({{"batch", r.batch},
                              {"prefill_tokens_per_s", r.prefill_tokens_per_s},
                              {"prefill_gflops", r.prefill_gflops},
                              {"prefill_peak_ratio", r.prefill_peak_ratio},
                              {"decode_tokens_per_s", r.decode_tokens_per_s},
                              {"step_ms", r.step_ms},
                              {"mem_bw_gbps", r.mem_bw_gbps},
                              {"roofline_tokens_per_s", r.roofline_tokens_per_s},
                              {"roofline_ratio", r.roofline_ratio},
                              {"weight_bytes_per_step", r.weight_bytes_per_step},
                              {"weight_read_gbps", r.weight_read_gbps}});
    }
    j["mem_bw_gbps"] = best_bw;
    j["bf16_peak_tflops"] = peak_tflops;
    std::ofstream out(f.json_path);
    out << j.dump(2) << '\n';
    if (!out) {
      std::fprintf(stderr, "dsrt: cannot write %s\n", f.json_path.c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace

std::function<int()> add_engine_bench(CLI::App& app) {
  auto flags = std::make_shared<engine_bench_flags>();
  auto* cmd = app.add_subcommand("engine", "prefill and decode speed against the memory-bandwidth roofline");
  add_engine_flags(*cmd, flags->engine);
  cmd->add_option("--batch", flags->batches, "batch sizes, comma separated")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--prompt-len", flags->prompt_len, "prompt tokens per sequence")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--gen", flags->gen, "tokens generated per sequence")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--seed", flags->seed, "seed of the random prompts")->capture_default_str();
  cmd->add_option("--json", flags->json_path, "write the results as JSON to this file");
  cmd->add_option("--bw-buffer-mb", flags->bw_buffer_mb,
                  "buffer of the memory-bandwidth measurement in MiB (far above the LLC)")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t(1), std::int64_t(1) << 16));
  cmd->add_option("--peak-tflops", flags->peak_tflops,
                  "bf16 peak for the prefill's compute roofline (default: known GPUs' data-sheet "
                  "figure; none on the CPU)")
      ->check(CLI::Range(0.0, 1e6));
  return [flags] { return run_engine_bench(*flags); };
}

}  // namespace dsrt::apps
