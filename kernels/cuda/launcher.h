#pragma once
// Where the backend's work enters its stream: every kernel launch, cuBLASLt product and
// asynchronous copy goes through here, so that with CUDA graphs on (step_graphs.h) each is
// recorded with its key and issued, captured or replayed at the next flush; with graphs off
// it is issued at once.
//
// launch(fn, args...) issues fn(args..., stream); its key is fn's address and the scalar
// values of args (structs contribute their fields through add_key overloads, below). Every
// pointer a launch reads or writes is among its arguments, so equal keys mean equal work.
//
// Thread safety: none (one caller at a time, as the backend).
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/cuda/fp8.cuh"
#include "kernels/cuda/lt_gemm.h"
#include "kernels/cuda/paged_attention.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/skinny_gemm.cuh"
#include "kernels/cuda/step_graphs.h"

namespace dsrt::kernels::cuda {

// Key fields of the launch structs (every field the kernels read).
void add_key(launch_key& k, const rope_launch& r);
void add_key(launch_key& k, const attention_launch& a);
void add_key(launch_key& k, const skinny_gemm& g);
void add_key(launch_key& k, const gemm_problem& g);
void add_key(launch_key& k, const fp8_weight& w);
template <class T>
  requires std::is_scalar_v<T>
void add_key(launch_key& k, const T& v) {
  k.add(v);
}

class launcher {
 public:
  // graphs: record and replay steps as CUDA graphs (off: issue every launch at once).
  launcher(cudaStream_t stream, bool graphs);
  ~launcher();
  launcher(const launcher&) = delete;
  launcher& operator=(const launcher&) = delete;

  template <class Fn, class... Args>
  void launch(Fn* fn, const Args&... args) {
    key_.clear();
    key_.add(reinterpret_cast<std::uintptr_t>(fn));
    // Each argument's size first: arguments of other widths can never add up to equal keys.
    ((key_.add(std::uint16_t(sizeof(Args))), add_key(key_, args)), ...);
    recorder_.record(key_.bytes(), [fn, args..., stream = stream_] { fn(args..., stream); });
  }
  // cudaMemcpyAsync on the stream (device to device, or from pinned host memory).
  void copy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind);
  // Issues everything recorded (before anything that waits for the stream or frees memory).
  void flush() { recorder_.flush(); }
  // flush() and wait for the stream; the next segment is a first one (step_graphs.h).
  void sync();

 private:
  cudaStream_t stream_;
  launch_key key_;
  step_recorder recorder_;
};

}  // namespace dsrt::kernels::cuda
