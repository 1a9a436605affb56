// The CUDA backend's products (backend_impl.h): matmul, matmul_group, matmul_batch,
// matmul_heads, through the skinny kernel for few rows and cuBLASLt for more, fp8 weights
// included.
#include "kernels/cuda/backend_impl.h"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/fp8.cuh"

namespace dsrt::kernels::cuda {

void cuda_backend::matmul(const float* x, std::int64_t n, const weight_ref& w, const weight_ref& bias,
              float* y) {
  const matmul_part part{w, bias, y};
  matmul_group(x, n, {&part, 1});
}

void cuda_backend::matmul_group(const float* x, std::int64_t n, std::span<const matmul_part> parts) {
  use_device();
  if (n <= 0 || parts.empty()) return;
  const std::int64_t cols = parts[0].w.cols;
  for (const auto& p : parts) {
    DSRT_ASSERT(p.w.cols == cols, "grouped matmul parts differ in width: {} vs {}", p.w.cols, cols);
  }
  if (n <= skinny_rows_limit) {
    // Parts of one dtype share launches, skinny_parts_max at a time.
    for (std::size_t i = 0; i < parts.size();) {
      skinny_gemm g{x, n, cols, cols, parts[i].w.type, 0, {}};
      while (i < parts.size() && g.parts < skinny_parts_max && parts[i].w.type == g.w_type) {
        g.part[g.parts++] = part_of(parts[i].w, parts[i].y, parts[i].w.rows);
        ++i;
      }
      launcher_->launch(&launch_skinny_gemm, g);
    }
  } else {
    converted_ = {};  // x is converted at most once per dtype for the whole group
    for (const auto& p : parts) product(x, n, cols, p.w, p.y, p.w.rows);
  }
  for (const auto& p : parts)
    if (p.bias.data != nullptr)
      launcher_->launch(&launch_add_bias, p.y, n, p.w.rows, p.w.rows, p.bias.data, p.bias.type);
}

void cuda_backend::matmul_batch(std::span<const matmul_task> tasks) {
  use_device();
  // Tasks on the same x (a shared expert's gate and up) share its conversion: outputs
  // never overlap inputs (the interface's REQUIRES), so x cannot change within the call.
  converted_ = {};
  for (const auto& t : tasks)
    if (t.n > 0) product(t.x, t.n, t.w.cols, t.w, t.y, t.w.rows);
}

void cuda_backend::matmul_heads(const float* x, std::int64_t n, int heads, std::int64_t x_head_stride,
                    const weight_ref& w, float* y, std::int64_t y_head_stride) {
  use_device();
  DSRT_ASSERT(heads > 0 && w.rows % heads == 0, "{} rows for {} heads", w.rows, heads);
  const std::int64_t out = w.rows / heads;
  DSRT_ASSERT(x_head_stride >= w.cols && y_head_stride >= out, "strides {} {} for {}x{}",
              x_head_stride, y_head_stride, out, w.cols);
  DSRT_ASSERT(heads <= 65535, "{} heads", heads);
  if (n <= 0) return;
  const std::int64_t ldx = heads * x_head_stride, ldy = heads * y_head_stride;
  converted_ = {};
  if (n > skinny_rows_limit) {
    const weight_ref wd = gemm_weight(w);
    // One batched product over the heads. x is converted up to its last element used (the
    // gaps between heads included), not past it: x may be a view inside a larger buffer.
    const std::int64_t used = (n - 1) * ldx + (heads - 1) * x_head_stride + w.cols;
    const void* xc = wd.type == dtype::f32 ? static_cast<const void*>(x) : converted(x, used, wd.type);
    gemm_problem g{wd.type, wd.data, out, w.cols, xc, n, ldx, y, ldy, heads,
                   out * w.cols, x_head_stride, y_head_stride};
    if (const auto* plan = gemm_->prepare(g)) {
      dequantize(w, wd);
      launcher_->launch(&launch_lt_matmul, gemm_.get(), plan, g);
      return;
    }
  }
  // Few rows (or no algorithm): the skinny kernel, one launch for every head.
  skinny_gemm g{x, n, w.cols, ldx, w.type, 1, {}};
  g.part[0] = part_of(w, y, ldy);
  g.part[0].m = out;
  g.batch = heads;
  g.w_batch_stride = out * w.cols;
  g.x_batch_stride = x_head_stride;
  g.y_batch_stride = y_head_stride;
  launcher_->launch(&launch_skinny_gemm, g);
}

const void* cuda_backend::converted(const float* x, std::int64_t count, dtype type) {
  if (converted_.x == x && converted_.count == count && converted_.type == type)
    return converted_.ptr;
  void* buffer = x_converted_.get(std::size_t(count) * dtype_size(type));
  launcher_->launch(&launch_convert_from_f32, x, count, type, buffer);
  converted_ = {x, count, type, buffer};
  return buffer;
}

void cuda_backend::product(const float* x, std::int64_t n, std::int64_t cols, const weight_ref& w, float* y,
               std::int64_t ldy) {
  if (n > skinny_rows_limit) {
    const weight_ref wd = gemm_weight(w);
    const void* xc = wd.type == dtype::f32 ? static_cast<const void*>(x)
                                           : converted(x, n * cols, wd.type);
    const gemm_problem g{wd.type, wd.data, w.rows, cols, xc, n, cols, y, ldy};
    if (const auto* plan = gemm_->prepare(g)) {
      dequantize(w, wd);
      launcher_->launch(&launch_lt_matmul, gemm_.get(), plan, g);
      return;
    }
  }
  skinny_gemm g{x, n, cols, cols, w.type, 1, {}};
  g.part[0] = part_of(w, y, ldy);
  launcher_->launch(&launch_skinny_gemm, g);
}

skinny_part cuda_backend::part_of(const weight_ref& w, float* y, std::int64_t ldy) {
  skinny_part p{w.data, 0, w.rows, y, ldy};
  p.scales = w.scales;
  p.scale_cols = w.scale_cols;
  p.scale_row0 = w.scale_row0;
  p.block_rows = w.block_rows;
  p.block_cols = w.block_cols;
  return p;
}

weight_ref cuda_backend::gemm_weight(const weight_ref& w) {
  if (w.type != dtype::f8_e4m3) return w;
  weight_ref b = w;
  b.data = dequantized_.get(std::size_t(w.rows * w.cols) * sizeof(std::uint16_t));
  b.type = dtype::bf16;
  b.scales = nullptr;
  return b;
}

void cuda_backend::dequantize(const weight_ref& w, const weight_ref& into) {
  if (w.type != dtype::f8_e4m3) return;
  DSRT_ASSERT(w.scales != nullptr, "an f8_e4m3 weight without its block scales");
  const fp8_weight f{static_cast<const std::uint8_t*>(w.data), w.rows, w.cols, w.scales,
                     w.scale_cols, w.scale_row0, w.block_rows, w.block_cols};
  launcher_->launch(&launch_dequantize_fp8, f, static_cast<std::uint16_t*>(const_cast<void*>(into.data)));
}

}  // namespace dsrt::kernels::cuda
