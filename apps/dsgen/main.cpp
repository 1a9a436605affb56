// dsgen: writes a random model of a preset shape as a Hugging Face directory (config.json,
// safetensors, tokenizer.json, tokenizer_config.json), so tests and benchmarks run the
// real loading path. Same preset and seed -> byte-identical files.
//
//   dsgen --preset tiny-llama --seed 1 --out /tmp/tiny
//   dsgen --list
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "apps/dsgen/presets.h"
#include "apps/dsgen/tokenizer_gen.h"
#include "apps/dsgen/weight_writer.h"
#include "runtime/model/weights.h"

namespace fs = std::filesystem;
using namespace dsrt;
using namespace dsrt::dsgen;

namespace {

// Threads used to draw random values when --threads is not given. Output bytes do not
// depend on it.
constexpr unsigned default_threads_max = 8;

struct options {
  std::string preset;
  std::uint64_t seed = 0;
  std::string out;
  std::string tokenizer = "default";
  std::string type = "bf16";
  std::uint64_t shard_bytes_max = 2ull << 30;
  unsigned threads = 0;
  bool force = false;
  bool list = false;
  bool fp8 = false;
};

void print_presets() {
  for (const auto& p : presets()) {
    std::string shape = fmt::format(
        "vocab {}, hidden {}, {} layers, {} heads, {} KV heads, FFN {}", p.vocab_size,
        p.hidden_size, p.num_hidden_layers, p.num_attention_heads, p.num_key_value_heads,
        p.intermediate_size);
    if (const auto& d = p.deepseek) {
      shape = fmt::format(
          "vocab {}, hidden {}, {} layers ({} dense), {} heads, q_lora {}, kv_lora {}, "
          "qk_nope {}, qk_rope {}, v_head {}, {} routed experts top-{}, {} shared, {} groups "
          "top-{}, expert FFN {}",
          p.vocab_size, p.hidden_size, p.num_hidden_layers, d->first_k_dense_replace,
          p.num_attention_heads, d->q_lora_rank, d->kv_lora_rank, d->qk_nope_head_dim,
          d->qk_rope_head_dim, d->v_head_dim, d->n_routed_experts, d->num_experts_per_tok,
          d->n_shared_experts, d->n_group, d->topk_group, d->moe_intermediate_size);
    }
    if (p.attention_bias) shape += ", q/k/v bias";
    shape += p.tie_word_embeddings ? ", tied embeddings" : ", untied head";
    std::printf("%-14s %-11s %s  (%s)\n", std::string(p.name).c_str(),
                std::string(family_name(p.arch)).c_str(), shape.c_str(),
                std::string(p.use).c_str());
  }
}

status write_text(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f.write(text.data(), std::streamsize(text.size()));
  f.close();
  if (!f) return make_error(error_code::internal, "{}: write failed", path.string());
  return ok_status();
}

bool is_our_file(const std::string& name) {
  static const char* ours[] = {"config.json", "generation_config.json", "tokenizer.json",
                               "tokenizer_config.json", "model.safetensors",
                               "model.safetensors.index.json"};
  for (const char* n : ours) {
    if (name == n) return true;
  }
  return name.starts_with("model-") && name.ends_with(".safetensors") &&
         name.find("-of-") != std::string::npos;
}

// An existing directory must be empty unless --force; then only the files dsgen writes are
// removed (a stale shard or index would otherwise be loaded with the new weights).
status prepare_out_dir(const fs::path& dir, bool force) {
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) {
      return make_error(error_code::invalid_argument, "{} exists and is not a directory",
                        dir.string());
    }
    const bool empty = fs::is_empty(dir, ec);
    if (ec) return make_error(error_code::internal, "{}: {}", dir.string(), ec.message());
    if (!empty && !force) {
      return make_error(error_code::invalid_argument,
                        "{} exists and is not empty; pass --force to overwrite", dir.string());
    }
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (entry.is_regular_file(ec) && is_our_file(entry.path().filename().string())) {
        fs::remove(entry.path(), ec);
        if (ec) return make_error(error_code::internal, "{}: {}", entry.path().string(),
                                  ec.message());
      }
    }
    if (ec) return make_error(error_code::internal, "{}: {}", dir.string(), ec.message());
    return ok_status();
  }
  fs::create_directories(dir, ec);
  if (ec) {
    return make_error(error_code::internal, "cannot create {}: {}", dir.string(), ec.message());
  }
  return ok_status();
}

status generate(const options& o) {
  const preset* p = find_preset(o.preset);
  if (!p) {
    return make_error(error_code::invalid_argument, "unknown preset '{}' (valid: {})", o.preset,
                      preset_names());
  }
  const dtype type = o.type == "f32" ? dtype::f32 : o.type == "f16" ? dtype::f16 : dtype::bf16;
  if (o.fp8 && (p->arch != family::deepseek_v3 || type != dtype::bf16)) {
    return make_error(error_code::invalid_argument,
                      "--fp8 needs a DeepSeek preset (tiny-dsv3, bench-dsv3-1b) and --dtype bf16");
  }
  if (o.shard_bytes_max == 0) {
    return make_error(error_code::invalid_argument, "--shard-bytes-max must be positive");
  }

  tokenizer_files tok;
  if (o.tokenizer == "deepseek-v3") {
    auto loaded = load_deepseek_v3_tokenizer();
    if (!loaded) return loaded.err();
    tok = std::move(loaded.value());
  } else {
    tok = make_default_tokenizer(p->arch);
  }
  // The default tokenizer fits every preset; a real one decides the vocabulary itself.
  const int vocab_size = o.tokenizer == "default" ? p->vocab_size : tok.vocab_size;
  if (tok.vocab_size > vocab_size) {
    return make_error(error_code::internal, "tokenizer has {} tokens but the vocab is {}",
                      tok.vocab_size, vocab_size);
  }

  const fs::path dir(o.out);
  DSRT_TRY(prepare_out_dir(dir, o.force));
  DSRT_TRY(write_text(dir / "config.json",
                      make_config(*p, vocab_size, type, tok.ids, o.fp8).dump(2) + "\n"));
  DSRT_TRY(write_text(dir / "generation_config.json",
                      make_generation_config(tok.ids).dump(2) + "\n"));
  DSRT_TRY(write_text(dir / "tokenizer.json", tok.tokenizer_json));
  DSRT_TRY(write_text(dir / "tokenizer_config.json", tok.tokenizer_config_json));

  weight_write_options w;
  w.seed = o.seed;
  w.type = type;
  w.shard_bytes_max = o.shard_bytes_max;
  w.threads = o.threads > 0 ? o.threads
                            : std::clamp(std::thread::hardware_concurrency(), 1u,
                                         default_threads_max);
  const auto start = std::chrono::steady_clock::now();
  auto written = write_weights(dir, plan_tensors(*p, vocab_size, o.fp8), w);
  if (!written) return written.err();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // Read back through the runtime's loader: a preset that does not load is a dsgen bug.
  auto loaded = model::load_model_dir(dir);
  if (!loaded) {
    return make_error(error_code::internal, "wrote {} but it does not load: {}", dir.string(),
                      loaded.err().to_string());
  }
  const std::size_t shards = written->files.size() > 1 ? written->files.size() - 1 : 1;
  std::printf("dsgen: wrote %s (%s, %s, vocab %d, %.1f MB of weights in %zu safetensors "
              "file(s), %.2f s)\n",
              dir.string().c_str(), std::string(p->name).c_str(), o.fp8 ? "fp8" : o.type.c_str(),
              vocab_size,
              double(written->total_bytes) / 1e6, shards, seconds);
  return ok_status();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dsgen: write a random model of a preset shape as a Hugging Face directory"};
  options o;
  app.add_flag("--list", o.list, "list the presets and exit");
  app.add_option("--preset", o.preset, "preset name (see --list)");
  app.add_option("--seed", o.seed, "random seed; the same seed gives byte-identical files")
      ->capture_default_str();
  app.add_option("--out", o.out, "output directory");
  app.add_option("--tokenizer", o.tokenizer, "default (small byte-level BPE) or deepseek-v3")
      ->check(CLI::IsMember({"default", "deepseek-v3"}))
      ->capture_default_str();
  app.add_option("--dtype", o.type, "weight dtype")
      ->check(CLI::IsMember({"bf16", "f16", "f32"}))
      ->capture_default_str();
  app.add_flag("--fp8", o.fp8,
               "DeepSeek presets: projections in fp8 e4m3 with 128x128 block scales "
               "(DeepSeek-V3's checkpoint format)");
  app.add_option("--shard-bytes-max", o.shard_bytes_max,
                 "split the weights into shards of at most this many bytes")
      ->capture_default_str();
  app.add_option("--threads", o.threads, "threads drawing random values (default: cores, max 8)");
  app.add_flag("--force", o.force, "overwrite dsgen's files in a non-empty output directory");
  CLI11_PARSE(app, argc, argv);

  if (o.list) {
    print_presets();
    return 0;
  }
  if (o.preset.empty() || o.out.empty()) {
    std::fprintf(stderr, "dsgen: --preset and --out are required (valid presets: %s)\n",
                 preset_names().c_str());
    return 2;
  }
  const status s = generate(o);
  if (!s) {
    std::fprintf(stderr, "dsgen: %s\n", s.err().message.c_str());
    return s.err().code == error_code::invalid_argument ? 2 : 1;
  }
  return 0;
}
