#include "kernels/cuda/lt_gemm.h"

#include <bit>

#include "kernels/assert.h"
#include "kernels/cuda/cuda_check.h"

namespace dsrt::kernels::cuda {
namespace {

// Shapes with an algorithm (or known to have none) kept before trim() forgets them all; a
// model has a few dozen.
constexpr std::size_t plans_max = 4096;

cudaDataType_t data_type(dtype t) {
  switch (t) {
    case dtype::f32: return CUDA_R_32F;
    case dtype::f16: return CUDA_R_16F;
    case dtype::bf16: return CUDA_R_16BF;
    case dtype::f8_e4m3: break;
  }
  DSRT_ASSERT(false, "no cuBLASLt GEMM on {} inputs here", dtype_name(t));
  return CUDA_R_32F;
}

// The largest power of two dividing the address and the byte sizes of the leading dimension
// and batch stride (each product of a batch starts one stride further on), at most 256
// (cuBLASLt's default assumption).
int alignment_of(const void* p, std::int64_t ld, std::int64_t batch_stride, int batch,
                 std::size_t element_bytes) {
  std::uintptr_t bits = reinterpret_cast<std::uintptr_t>(p) | 256;
  bits |= std::uintptr_t(ld) * element_bytes;
  if (batch > 1) bits |= std::uintptr_t(batch_stride) * element_bytes;
  return int(bits & (~bits + 1));
}

cublasLtMatrixLayout_t make_layout(cudaDataType_t type, std::int64_t rows, std::int64_t cols,
                                   std::int64_t ld, int batch, std::int64_t batch_stride) {
  cublasLtMatrixLayout_t layout = nullptr;
  DSRT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&layout, type, std::uint64_t(rows),
                                               std::uint64_t(cols), ld));
  if (batch > 1) {
    DSRT_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
        layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof batch));
    DSRT_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
        layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &batch_stride, sizeof batch_stride));
  }
  return layout;
}

}  // namespace

// Column-major view of the row-major product: y^T [m, n] = w [m, k] . x^T [k, n], i.e.
// A = w stored as a k x m column-major matrix used transposed, B = x as k x n, D = y^T.
struct lt_gemm::plan {
  bool found = false;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};

  ~plan() {
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

std::size_t lt_gemm::key_hash::operator()(const key& k) const {
  std::size_t h = std::size_t(k.type);
  for (std::int64_t v : {k.m, k.n, k.k, k.ldx, k.ldy, std::int64_t(k.batch), k.w_batch_stride,
                         k.x_batch_stride, k.y_batch_stride, std::int64_t(k.w_align),
                         std::int64_t(k.x_align), std::int64_t(k.y_align)})
    h = std::rotl(h, 13) ^ (std::size_t(v) * 0x9e3779b97f4a7c15ull);
  return h;
}

lt_gemm::lt_gemm(cublasLtHandle_t handle, void* workspace, std::size_t workspace_bytes)
    : workspace_(workspace), workspace_bytes_(workspace_bytes), handle_(handle) {}

void lt_gemm::trim() {
  if (plans_.size() > plans_max) plans_.clear();
}

lt_gemm::~lt_gemm() {
  plans_.clear();
  if (handle_) cublasLtDestroy(handle_);
}

const lt_gemm::plan* lt_gemm::plan_for(const key& k) {
  if (auto it = plans_.find(k); it != plans_.end()) return it->second.get();
  auto p = std::make_unique<plan>();
  const cudaDataType_t in = data_type(k.type);
  DSRT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t transpose = CUBLAS_OP_T, keep = CUBLAS_OP_N;
  DSRT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &transpose,
                                                   sizeof transpose));
  DSRT_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &keep, sizeof keep));
  p->a = make_layout(in, k.k, k.m, k.k, k.batch, k.w_batch_stride);
  p->b = make_layout(in, k.k, k.n, k.ldx, k.batch, k.x_batch_stride);
  p->d = make_layout(CUDA_R_32F, k.m, k.n, k.ldy, k.batch, k.y_batch_stride);

  cublasLtMatmulPreference_t preference = nullptr;
  DSRT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
  const std::uint64_t workspace = workspace_bytes_;
  DSRT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof workspace));
  const std::uint32_t align[] = {std::uint32_t(k.w_align), std::uint32_t(k.x_align),
                                 std::uint32_t(k.y_align), std::uint32_t(k.y_align)};
  const cublasLtMatmulPreferenceAttributes_t align_attr[] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  for (int i = 0; i < 4; ++i)
    DSRT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, align_attr[i], &align[i],
                                                           sizeof align[i]));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
      handle_, p->op, p->a, p->b, p->d, p->d, preference, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(preference);
  p->found = status == CUBLAS_STATUS_SUCCESS && found > 0;
  if (p->found) p->algo = result.algo;
  return plans_.emplace(k, std::move(p)).first->second.get();
}

const lt_gemm::plan* lt_gemm::prepare(const gemm_problem& g) {
  const std::size_t in_bytes = dtype_size(g.type);
  const key k{g.type, g.m, g.n, g.k, g.ldx, g.ldy, g.batch, g.w_batch_stride, g.x_batch_stride,
              g.y_batch_stride,
              alignment_of(g.w, g.k, g.w_batch_stride, g.batch, in_bytes),
              alignment_of(g.x, g.ldx, g.x_batch_stride, g.batch, in_bytes),
              alignment_of(g.y, g.ldy, g.y_batch_stride, g.batch, sizeof(float))};
  const plan* p = plan_for(k);
  return p->found ? p : nullptr;
}

void lt_gemm::issue(const plan* p, const gemm_problem& g, cudaStream_t stream) const {
  const float one = 1.0f, zero = 0.0f;
  DSRT_CUBLAS_CHECK(cublasLtMatmul(handle_, p->op, &one, g.w, p->a, g.x, p->b, &zero, g.y, p->d,
                                   g.y, p->d, &p->algo, workspace_, workspace_bytes_, stream));
}

}  // namespace dsrt::kernels::cuda
