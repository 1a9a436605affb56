#pragma once
// Checks for the CUDA code. A failing CUDA or cuBLASLt call inside the backend is a
// programmer error or a device fault (an illegal address, an ECC error): it crashes loudly
// with the call and the error's name, and the shard's supervisor restarts the process.
// Conditions a caller can act on (no device, out of memory) are reported as values before
// they reach these checks.
//
// No fmt here: nvcc's front end cannot compile fmt's compile-time format checks, so the .cu
// files use DSRT_CU_ASSERT with a std::string message instead of DSRT_ASSERT.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

namespace dsrt::detail {
[[noreturn]] void assert_fail(const char* expr, const char* file, int line,
                              const std::string& message);  // kernels/assert.cpp
}  // namespace dsrt::detail

#define DSRT_CU_ASSERT(cond, message)                                              \
  do {                                                                             \
    if (!(cond)) [[unlikely]]                                                      \
      ::dsrt::detail::assert_fail(#cond, __FILE__, __LINE__, (message));           \
  } while (0)

#define DSRT_CUDA_CHECK(call)                                                        \
  do {                                                                               \
    const cudaError_t dsrt_cuda_status_ = (call);                                    \
    DSRT_CU_ASSERT(dsrt_cuda_status_ == cudaSuccess,                                 \
                   std::string(#call) + ": " + cudaGetErrorName(dsrt_cuda_status_) + \
                       " (" + cudaGetErrorString(dsrt_cuda_status_) + ")");          \
  } while (0)

#define DSRT_CUBLAS_CHECK(call)                                                      \
  do {                                                                               \
    const cublasStatus_t dsrt_cublas_status_ = (call);                               \
    DSRT_CU_ASSERT(dsrt_cublas_status_ == CUBLAS_STATUS_SUCCESS,                     \
                   std::string(#call) + ": " +                                       \
                       cublasLtGetStatusName(dsrt_cublas_status_));                  \
  } while (0)

// After a kernel launch: a bad launch configuration shows up here at once; faults during
// execution show up at the next synchronising call.
#define DSRT_CUDA_CHECK_LAUNCH() DSRT_CUDA_CHECK(cudaPeekAtLastError())
