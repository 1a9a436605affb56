#pragma once
// The CUDA backend's public face: whether this build has it, which GPUs it sees, and the
// factory. Everything here links and answers in every build; without the CUDA toolkit at
// build time (DSRT_HAVE_CUDA off) the factory returns an error saying so.
//
// The backend itself implements kernels/backend.h on one GPU: device memory from a caching
// pool, one stream, cuBLASLt GEMMs, and its own kernels for the rest (kernels/cuda/).
#include <cstddef>
#include <memory>
#include <string>

#include "kernels/backend.h"

namespace dsrt::kernels {

// Host metadata (positions, token ids, block tables) goes to the GPU through a pinned
// staging buffer of this size; one operation needing more grows it (after a stream sync).
inline constexpr std::size_t cuda_staging_bytes_default = std::size_t(4) << 20;
// cuBLASLt's workspace (split-K and stream-K algorithms need one).
inline constexpr std::size_t cuda_gemm_workspace_bytes = std::size_t(32) << 20;

struct cuda_backend_options {
  int device = 0;                                        // CUDA ordinal
  std::size_t staging_bytes = cuda_staging_bytes_default;
  // Replay repeated steps as CUDA graphs (kernels/cuda/step_graphs.h); DSRT_CUDA_GRAPHS=0 in
  // the environment turns them off too.
  bool graphs = true;
};

// Whether this binary was built with the CUDA backend.
bool cuda_compiled();

// GPUs this process can use, or -1 with *why set when CUDA cannot be used at all (not
// compiled in, no driver, a driver older than the runtime).
int cuda_device_count(std::string* why);

// The backend on options.device, or nullptr with *why set (no such device, not compiled in,
// the device would not initialise).
std::unique_ptr<backend> make_cuda_backend(const cuda_backend_options& options, std::string* why);

}  // namespace dsrt::kernels
