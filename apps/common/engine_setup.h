#pragma once
// What every tool that runs a model needs: the shared command-line options for the
// engine, and loading model + tokenizer + backend from them with clear errors.
#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "kernels/backend.h"
#include "runtime/engine/causal_lm.h"
#include "runtime/error.h"
#include "runtime/tokenizer/tokenizer.h"

namespace dsrt::apps {

struct engine_flags {
  std::string model_dir;
  int threads = 0;                    // 0 = all cores
  std::string isa;                    // "" = best the CPU has
  std::int64_t kv_cache_mb = 512;
  std::int64_t step_tokens_max = 8192;
  std::string weights_memory = "huge-pages";   // or "mapped" (model::weights_memory)
  std::string device = "cpu";         // "cpu", "cuda" (= cuda:0) or "cuda:N"
};

// A parsed --device: the CPU, or a CUDA ordinal.
struct device_choice {
  bool cuda = false;
  int ordinal = 0;
};
// invalid_argument for anything but "cpu", "cuda" and "cuda:N" (N a non-negative integer).
result<device_choice> parse_device(const std::string& text);

// Adds --model, --device, --threads, --isa, --kv-cache-mb, --step-tokens-max,
// --weights-memory to a (sub)command.
void add_engine_flags(CLI::App& app, engine_flags& flags);

struct loaded_engine {
  std::unique_ptr<kernels::backend> backend;
  std::unique_ptr<engine::causal_lm> model;
  std::unique_ptr<tokenizer::tokenizer> tokenizer;
};

// Every id the tokenizer can produce (its vocabulary, BOS, EOS, the template's prefix and
// suffix) is below the model's vocab_size; invalid_argument naming the first that is not
// (every request would otherwise fail on it, or embed past the table).
status check_tokenizer_fits(const tokenizer::tokenizer& tok, int vocab_size);

// Errors: the model loader's and tokenizer's (and check_tokenizer_fits'), invalid_argument
// for an ISA this CPU lacks or a malformed --device, unavailable for a CUDA device this
// machine (or this build) cannot provide.
result<loaded_engine> load_engine(const engine_flags& flags);
// The same with model options other than the flags' (kv_block_tokens, ...).
result<loaded_engine> load_engine(const engine_flags& flags, const engine::model_options& options);
// The model options the flags ask for.
engine::model_options model_options_of(const engine_flags& flags);

// The CPUs this process may run on (its affinity mask, which Slurm, containers and taskset
// narrow), at least 1: the default for --threads.
int usable_cores();

// Prints "dsrt: <CODE>: message" to stderr and returns the exit code for it
// (2 for invalid_argument, 1 otherwise).
int report(const error& e);

}  // namespace dsrt::apps
