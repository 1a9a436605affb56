#include "kernels/cuda/launcher.h"

#include "kernels/cuda/cuda_check.h"

namespace dsrt::kernels::cuda {
namespace {

void memcpy_async(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind,
                  cudaStream_t stream) {
  DSRT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, stream));
}

// Graph hooks on one stream: capture what run_all issues (thread-local capture mode: other
// threads' CUDA calls are not this capture's business), instantiate, launch, destroy.
step_recorder::hooks graph_hooks(cudaStream_t stream) {
  return {[stream](const std::function<void()>& run_all) -> void* {
            if (cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
              (void)cudaGetLastError();
              return nullptr;
            }
            run_all();
            cudaGraph_t graph = nullptr;
            cudaGraphExec_t exec = nullptr;
            cudaError_t e = cudaStreamEndCapture(stream, &graph);
            if (e == cudaSuccess) e = cudaGraphInstantiate(&exec, graph, 0);
            if (graph != nullptr) cudaGraphDestroy(graph);
            if (e != cudaSuccess) {
              (void)cudaGetLastError();
              return nullptr;
            }
            return exec;
          },
          [stream](void* exec) {
            DSRT_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec), stream));
          },
          [](void* exec) {
            cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec));
            (void)cudaGetLastError();  // not left for the next launch check to misreport
          }};
}

}  // namespace

void add_key(launch_key& k, const rope_launch& r) {
  k.add_all(r.x, r.rows, r.heads, r.head_dim, r.head_stride, r.positions, r.inv_freq,
            r.cos_sin_scale, r.interleaved);
}

void add_key(launch_key& k, const attention_launch& a) {
  k.add_all(a.q0, a.q0_row_stride, a.q0_head_stride, a.q0_dim, a.q1, a.q1_row_stride,
            a.q1_head_stride, a.q1_dim, a.heads, a.kv_group, a.keys, a.values, a.slot_stride,
            a.kv_head_stride, a.v_dim, a.block_tokens, a.block_tables, a.rows, a.row_count,
            a.context_max, a.scale, a.out, a.out_row_stride);
}

void add_key(launch_key& k, const skinny_gemm& g) {
  k.add_all(g.x, g.n, g.k, g.ldx, g.w_type, g.parts, g.batch, g.w_batch_stride, g.x_batch_stride,
            g.y_batch_stride);
  for (int p = 0; p < g.parts; ++p)
    k.add_all(g.part[p].w, g.part[p].x_offset, g.part[p].m, g.part[p].y, g.part[p].ldy,
              g.part[p].scales, g.part[p].scale_cols, g.part[p].scale_row0, g.part[p].block_rows,
              g.part[p].block_cols);
}

void add_key(launch_key& k, const fp8_weight& w) {
  k.add_all(w.data, w.rows, w.cols, w.scales, w.scale_cols, w.scale_row0, w.block_rows, w.block_cols);
}

void add_key(launch_key& k, const gemm_problem& g) {
  k.add_all(g.type, g.w, g.m, g.k, g.x, g.n, g.ldx, g.y, g.ldy, g.batch, g.w_batch_stride,
            g.x_batch_stride, g.y_batch_stride);
}

launcher::launcher(cudaStream_t stream, bool graphs)
    : stream_(stream), recorder_(graph_hooks(stream), graphs) {}

launcher::~launcher() = default;

void launcher::copy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
  if (bytes == 0) return;
  launch(&memcpy_async, dst, src, bytes, kind);
}

void launcher::sync() {
  recorder_.idle();
  DSRT_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

}  // namespace dsrt::kernels::cuda
