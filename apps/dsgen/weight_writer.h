#pragma once
// Writes a model's random weights as safetensors, streaming: each file's header is written
// first (every size is known up front), then each tensor's bytes block by block, so even
// bench-1b (~2.5 GB) never sits in memory. Large models are split into shards named
// model-0000i-of-0000n.safetensors plus model.safetensors.index.json, as transformers does.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "apps/dsgen/presets.h"
#include "kernels/dtype.h"
#include "runtime/error.h"

namespace dsrt::dsgen {

struct weight_write_options {
  std::uint64_t seed = 0;
  dtype type = dtype::bf16;
  std::uint64_t shard_bytes_max = 2ull << 30;  // a shard holds at least one tensor
  unsigned threads = 1;                        // output bytes do not depend on it
};

struct weight_write_summary {
  std::vector<std::string> files;  // file names written, in order
  std::uint64_t total_bytes = 0;   // tensor data bytes
};

// Every value is a pure function of (seed, tensor name, position), so the bytes do not
// depend on the thread count, the shard split or the order tensors are written in.
result<weight_write_summary> write_weights(const std::filesystem::path& dir,
                                           const std::vector<tensor_plan>& tensors,
                                           const weight_write_options& options);

}  // namespace dsrt::dsgen
