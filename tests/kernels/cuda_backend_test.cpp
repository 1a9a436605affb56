// Every backend operation on the CUDA backend against the CPU backend (the reference), in the
// style of ggml's test-backend-ops. Without a usable GPU every case here skips with the reason
// (visible in ctest's output as "Skipped"); the GPU machine runs them with `ctest -L gpu`.
// Sizes are odd on purpose, and the attention cases cover split-K (long contexts) and GQA.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cuda_backend.h"
#include "tests/kernels/fp8_test_weights.h"
#include "tests/kernels/kernel_test_util.h"

namespace dsrt::kernels {
namespace {

using namespace test_util;

// Largest |a - b| over max(1, largest |b|): the relative error of the whole output.
double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0.0, range = 1.0;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    if (std::isnan(a[i]) != std::isnan(b[i])) return INFINITY;
    diff = std::max(diff, double(std::abs(a[i] - b[i])));
    range = std::max(range, double(std::abs(b[i])));
  }
  return diff / range;
}

class CudaVsCpu : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    gpu_ = make_cuda_backend({}, &why);
    if (!gpu_) GTEST_SKIP() << "no CUDA device for the CUDA backend's tests: " << why;
    cpu_ = make_cpu_backend({.threads = 2});
  }
  void TearDown() override {
    if (!gpu_) return;
    for (void* p : device_) gpu_->free(p);
  }

  // A device copy of host values; freed after the test.
  template <class T>
  T* upload(const std::vector<T>& host) {
    void* p = gpu_->alloc(std::max<std::size_t>(1, host.size() * sizeof(T)));
    EXPECT_NE(p, nullptr);
    device_.push_back(p);
    gpu_->copy_to_device(p, host.data(), host.size() * sizeof(T));
    return static_cast<T*>(p);
  }
  template <class T>
  std::vector<T> download(const T* device, std::size_t count) {
    std::vector<T> host(count);
    gpu_->copy_to_host(host.data(), device, count * sizeof(T));
    return host;
  }
  weight_ref upload_weight(const test_weights& w) { return gpu_->upload_weight(w.ref); }

  void check_paged_attention(int heads, int kv_heads, int head_dim);
  void check_latent_attention(int heads, int latent, int rope_dim);

  std::unique_ptr<backend> gpu_, cpu_;
  std::vector<void*> device_;
};

TEST(CudaBackend, AMissingDeviceIsAnErrorWithItsReasonNotACrash) {
  std::string why;
  auto b = make_cuda_backend({.device = 4096}, &why);
  EXPECT_EQ(b, nullptr);
  EXPECT_FALSE(why.empty());
  std::string count_why;
  const int count = cuda_device_count(&count_why);
  if (count < 0) {
    EXPECT_FALSE(count_why.empty());
    EXPECT_EQ(why, count_why);
  } else {
    EXPECT_NE(why.find("cuda:4096"), std::string::npos) << why;
  }
}

TEST_F(CudaVsCpu, CapsDescribeADeviceBackend) {
  EXPECT_EQ(gpu_->caps().name, "cuda:0");
  EXPECT_FALSE(gpu_->caps().host_visible_memory);
  EXPECT_FALSE(gpu_->caps().weights_zero_copy);
}

TEST_F(CudaVsCpu, CopiesRoundTripAndDeviceCopiesMove) {
  const auto x = random_floats(1000, 3);
  float* a = upload(x);
  float* b = upload(std::vector<float>(1000, 0.f));
  gpu_->copy_device(b, a, 1000 * sizeof(float));
  EXPECT_EQ(download(b, 1000), x);
}

TEST_F(CudaVsCpu, OverlappingDeviceCopiesMoveLikeMemmoveAndSmallUploadsOwnTheirBytes) {
  std::vector<float> x = random_floats(1000, 4);
  float* a = upload(x);
  gpu_->copy_device(a + 10, a, 900 * sizeof(float));  // overlapping, forwards
  std::vector<float> expected = x;
  std::memmove(expected.data() + 10, expected.data(), 900 * sizeof(float));
  EXPECT_EQ(download(a, 1000), expected);
  // A small upload goes through the staging ring: the caller may overwrite its bytes at once.
  std::vector<float> host = random_floats(100, 5);
  const std::vector<float> sent = host;
  float* b = upload(std::vector<float>(100, 0.f));
  gpu_->copy_to_device(b, host.data(), 100 * sizeof(float));
  std::fill(host.begin(), host.end(), -1.f);
  EXPECT_EQ(download(b, 100), sent);
}

TEST_F(CudaVsCpu, AWeightItsCallerFreesIsNotFreedAgain) {
  const auto w = make_weights(dtype::bf16, 4, 8, 1);
  const weight_ref ref = gpu_->upload_weight(w.ref);
  gpu_->free(const_cast<void*>(ref.data));
  gpu_.reset();  // would abort on a double free ("did not hand out")
  SUCCEED();
}

TEST_F(CudaVsCpu, F16WeightsTakeActivationsBeyondTheF16Range) {
  // The CPU multiplies f16 weights by f32 activations; 7e4 is past f16's largest (65504).
  for (std::int64_t n : {1, 12}) {
    const auto w = make_weights(dtype::f16, 16, 32, 2);
    auto x = random_floats(std::size_t(n * 32), 3);
    x[0] = 7e4f;
    std::vector<float> expected(std::size_t(n * 16));
    cpu_->matmul(x.data(), n, w.ref, {}, expected.data());
    float* y = upload(std::vector<float>(expected.size(), NAN));
    gpu_->matmul(upload(x), n, upload_weight(w), {}, y);
    const auto got = download(y, expected.size());
    for (float v : got) ASSERT_TRUE(std::isfinite(v)) << "n=" << n;
    EXPECT_LT(relative_error(got, expected), 1e-5) << "n=" << n;
  }
}

TEST_F(CudaVsCpu, MatmulMatchesCpuOnEveryDtypeAndShape) {
  // n <= 8 takes the skinny kernel, larger n cuBLASLt (or the fallback on odd shapes).
  // {3, 40, 2344}: 293 16-byte vectors per bf16 row, so the skinny kernel's four-loads loop
  // runs and leaves a tail.
  const std::int64_t shapes[][3] = {{1, 7, 15},  {1, 300, 768}, {5, 129, 257}, {8, 64, 64},
                                    {9, 33, 100}, {37, 20, 64},  {70, 9, 48},   {130, 256, 512},
                                    {3, 40, 2344}};
  for (dtype type : {dtype::f32, dtype::f16, dtype::bf16}) {
    for (const auto& s : shapes) {
      const std::int64_t n = s[0], rows = s[1], cols = s[2];
      const auto w = make_weights(type, rows, cols, std::uint32_t(rows * 31 + cols));
      const auto bias = make_weights(dtype::bf16, 1, rows, 99);
      const auto x = random_floats(std::size_t(n * cols), std::uint32_t(n + cols));
      std::vector<float> expected(std::size_t(n * rows));
      cpu_->matmul(x.data(), n, w.ref, bias.ref, expected.data());
      float* y = upload(std::vector<float>(std::size_t(n * rows), NAN));
      gpu_->matmul(upload(x), n, upload_weight(w), upload_weight(bias), y);
      EXPECT_LT(relative_error(download(y, expected.size()), expected), 2e-2)
          << dtype_name(type) << " n=" << n << " rows=" << rows << " cols=" << cols;
    }
  }
}

TEST_F(CudaVsCpu, GroupedAndBatchedMatmulsMatchCpu) {
  const std::int64_t n = 11, cols = 96;
  const auto x = random_floats(std::size_t(n * cols), 7);
  const auto q = make_weights(dtype::bf16, 64, cols, 1), k = make_weights(dtype::bf16, 32, cols, 2);
  std::vector<float> cq(std::size_t(n * 64)), ck(std::size_t(n * 32));
  const matmul_part cpu_parts[] = {{q.ref, {}, cq.data()}, {k.ref, {}, ck.data()}};
  cpu_->matmul_group(x.data(), n, cpu_parts);
  float* gq = upload(std::vector<float>(cq.size(), NAN));
  float* gk = upload(std::vector<float>(ck.size(), NAN));
  const float* gx = upload(x);
  const matmul_part gpu_parts[] = {{upload_weight(q), {}, gq}, {upload_weight(k), {}, gk}};
  gpu_->matmul_group(gx, n, gpu_parts);
  EXPECT_LT(relative_error(download(gq, cq.size()), cq), 2e-2);
  EXPECT_LT(relative_error(download(gk, ck.size()), ck), 2e-2);

  // Two experts over different token counts (one skinny, one through cuBLASLt).
  const auto x2 = random_floats(std::size_t(3 * cols), 8);
  std::vector<float> c1(std::size_t(n * 64)), c2(std::size_t(3 * 32));
  const matmul_task cpu_tasks[] = {{x.data(), n, q.ref, c1.data()}, {x2.data(), 3, k.ref, c2.data()}};
  cpu_->matmul_batch(cpu_tasks);
  float* g1 = upload(std::vector<float>(c1.size(), NAN));
  float* g2 = upload(std::vector<float>(c2.size(), NAN));
  const matmul_task gpu_tasks[] = {{gx, n, upload_weight(q), g1}, {upload(x2), 3, upload_weight(k), g2}};
  gpu_->matmul_batch(gpu_tasks);
  EXPECT_LT(relative_error(download(g1, c1.size()), c1), 2e-2);
  EXPECT_LT(relative_error(download(g2, c2.size()), c2), 2e-2);
}

TEST_F(CudaVsCpu, SkinnyGroupsOfMoreThanFourPartsAndMixedDtypesMatchCpu) {
  // n <= 8: parts share skinny launches, four at a time and only within one dtype.
  const std::int64_t n = 3, cols = 72;
  const auto x = random_floats(std::size_t(n * cols), 12);
  const dtype types[] = {dtype::bf16, dtype::bf16, dtype::f32, dtype::bf16,
                         dtype::bf16, dtype::bf16, dtype::bf16, dtype::f16};
  std::vector<test_weights> ws;
  std::vector<std::vector<float>> expected;
  std::vector<matmul_part> cpu_parts, gpu_parts;
  const float* gx = upload(x);
  for (int i = 0; i < 8; ++i) ws.push_back(make_weights(types[i], 10 + i, cols, std::uint32_t(i)));
  for (int i = 0; i < 8; ++i) {
    expected.emplace_back(std::size_t(n * (10 + i)));
    cpu_parts.push_back({ws[std::size_t(i)].ref, {}, expected.back().data()});
    gpu_parts.push_back({upload_weight(ws[std::size_t(i)]), {},
                         upload(std::vector<float>(expected.back().size(), NAN))});
  }
  cpu_->matmul_group(x.data(), n, cpu_parts);
  gpu_->matmul_group(gx, n, gpu_parts);
  for (int i = 0; i < 8; ++i)
    EXPECT_LT(relative_error(download(gpu_parts[std::size_t(i)].y, expected[std::size_t(i)].size()),
                             expected[std::size_t(i)]),
              1e-5)
        << "part " << i << " " << dtype_name(types[i]);
}

// Block-scaled fp8 (DeepSeek-V3's format): skinny rows (n <= 8) multiply the bytes as they
// are, more rows go through a bf16 dequantisation and cuBLASLt; a view of some rows keeps
// pointing at the tensor's scales (scale_row0); one product per head too.
TEST_F(CudaVsCpu, Fp8ProductsMatchCpuForRowsViewsAndHeads) {
  const std::int64_t rows = 320, cols = 256;
  const auto w = make_fp8_weights(rows, cols, 128, 128, 21);
  auto device_fp8 = [&](const weight_ref& host) {
    weight_ref d = gpu_->upload_weight(host);
    const std::int64_t scale_rows = (host.scale_row0 + host.rows + host.block_rows - 1) / host.block_rows;
    d.scales = static_cast<const float*>(
        gpu_->upload_weight({w.scales.data(), dtype::f32, scale_rows, host.scale_cols}).data);
    return d;
  };
  const weight_ref whole = device_fp8(w.ref);
  const weight_ref view_host = rows_view(w.ref, 130, 300);
  const weight_ref view = rows_view(whole, 130, 300);
  for (std::int64_t n : {1, 5, 12, 40}) {
    const auto x = random_floats(std::size_t(n * cols), std::uint32_t(n));
    const float* gx = upload(x);
    for (const auto& [host, device] : {std::pair{w.ref, whole}, std::pair{view_host, view}}) {
      std::vector<float> expected(std::size_t(n * host.rows));
      cpu_->matmul(x.data(), n, host, {}, expected.data());
      float* y = upload(std::vector<float>(expected.size(), NAN));
      gpu_->matmul(gx, n, device, {}, y);
      EXPECT_LT(relative_error(download(y, expected.size()), expected), 2e-2)
          << "n=" << n << " rows " << host.rows << " from " << host.scale_row0;
    }
    // Heads of 64 rows each (5 heads), x heads 256 wide with no gap.
    const int heads = 5;
    const auto xh = random_floats(std::size_t(n * heads * cols), std::uint32_t(n + 100));
    std::vector<float> expected(std::size_t(n * rows));
    cpu_->matmul_heads(xh.data(), n, heads, cols, w.ref, expected.data(), rows / heads);
    float* y = upload(std::vector<float>(expected.size(), NAN));
    gpu_->matmul_heads(upload(xh), n, heads, cols, whole, y, rows / heads);
    EXPECT_LT(relative_error(download(y, expected.size()), expected), 2e-2) << "heads, n=" << n;
  }
  // 2320 columns: 145 vectors per row (the four-loads loop and a tail); 200 columns in 32x16
  // blocks: not a multiple of 16, the scalar path.
  for (const auto& [r, c, br, bc] : {std::tuple{64, 2320, 128, 128}, std::tuple{40, 200, 32, 16}}) {
    const auto wb = make_fp8_weights(r, c, br, bc, std::uint32_t(r + c));
    weight_ref d = gpu_->upload_weight(wb.ref);
    d.scales = static_cast<const float*>(
        gpu_->upload_weight({wb.scales.data(), dtype::f32, (r + br - 1) / br, wb.ref.scale_cols}).data);
    for (std::int64_t n : {1, 5, 12}) {
      const auto x = random_floats(std::size_t(n * c), std::uint32_t(n + 7));
      std::vector<float> expected(std::size_t(n * r));
      cpu_->matmul(x.data(), n, wb.ref, {}, expected.data());
      float* y = upload(std::vector<float>(expected.size(), NAN));
      gpu_->matmul(upload(x), n, d, {}, y);
      EXPECT_LT(relative_error(download(y, expected.size()), expected), 2e-2)
          << r << "x" << c << " in " << br << "x" << bc << " blocks, n=" << n;
    }
  }
}

TEST_F(CudaVsCpu, MatmulHeadsMatchesCpuWithStridedHeads) {
  const int heads = 6;
  const std::int64_t cols = 40, out = 24, x_stride = 56, y_stride = 30;
  for (dtype type : {dtype::bf16, dtype::f32})
  for (std::int64_t n : {1, 5, 19}) {
    const auto w = make_weights(type, heads * out, cols, 4);
    const auto x = random_floats(std::size_t(n * heads * x_stride), std::uint32_t(n));
    std::vector<float> expected(std::size_t(n * heads * y_stride), 0.f);
    cpu_->matmul_heads(x.data(), n, heads, x_stride, w.ref, expected.data(), y_stride);
    float* y = upload(std::vector<float>(expected.size(), 0.f));
    gpu_->matmul_heads(upload(x), n, heads, x_stride, upload_weight(w), y, y_stride);
    EXPECT_LT(relative_error(download(y, expected.size()), expected), 2e-2)
        << dtype_name(type) << " n=" << n;
  }
}

TEST_F(CudaVsCpu, ElementwiseOpsMatchCpu) {
  const std::int64_t n = 7, dim = 333;
  const auto x = random_floats(std::size_t(n * dim), 1, 3.f);
  const auto y = random_floats(std::size_t(n * dim), 2, 3.f);
  for (dtype type : {dtype::f32, dtype::bf16}) {
    const auto gamma = make_weights(type, 1, dim, 5);
    std::vector<float> expected(x.size());
    cpu_->rms_norm(x.data(), n, gamma.ref, 1e-5f, expected.data());
    float* out = upload(std::vector<float>(x.size(), NAN));
    gpu_->rms_norm(upload(x), n, upload_weight(gamma), 1e-5f, out);
    EXPECT_LT(relative_error(download(out, x.size()), expected), 1e-5) << dtype_name(type);
  }
  {
    std::vector<float> expected = x;
    cpu_->add(expected.data(), y.data(), std::int64_t(x.size()));
    float* gx = upload(x);
    gpu_->add(gx, upload(y), std::int64_t(x.size()));
    EXPECT_LT(relative_error(download(gx, x.size()), expected), 1e-7);
  }
  {
    std::vector<float> expected(x.size());
    cpu_->swiglu(x.data(), y.data(), std::int64_t(x.size()), expected.data());
    float* out = upload(std::vector<float>(x.size(), NAN));
    gpu_->swiglu(upload(x), upload(y), std::int64_t(x.size()), out);
    EXPECT_LT(relative_error(download(out, x.size()), expected), 1e-5);
  }
  for (dtype type : {dtype::f32, dtype::f16, dtype::bf16}) {
    const auto table = make_weights(type, 50, dim, 6);
    const std::vector<std::int32_t> ids = {3, 0, 49, 3, 17};
    std::vector<float> expected(ids.size() * dim);
    cpu_->embed(table.ref, ids, expected.data());
    float* out = upload(std::vector<float>(expected.size(), NAN));
    gpu_->embed(upload_weight(table), ids, out);
    EXPECT_EQ(download(out, expected.size()), expected) << dtype_name(type);
  }
}

TEST_F(CudaVsCpu, ArgmaxRowsMatchesCpuWithTiesNanAndLongRows) {
  const std::int64_t rows = 7, cols = 128256;  // bench-1b's vocabulary
  auto x = random_floats(std::size_t(rows * cols), 41, 10.f);
  x[0 * cols + 5] = x[0 * cols + 90000] = 50.f;           // a tie far apart
  for (std::int64_t i = 0; i < cols; ++i) x[1 * cols + i] = NAN;  // all NaN: 0
  x[2 * cols + 3] = NAN;
  x[2 * cols + 128255] = 60.f;                             // the last column
  for (std::int64_t i = 0; i < cols; ++i) x[3 * cols + i] = -INFINITY;
  std::vector<std::int32_t> expected(rows), got(rows, -1);
  cpu_->argmax_rows(x.data(), rows, cols, expected.data());
  gpu_->argmax_rows(upload(x), rows, cols, got.data());
  EXPECT_EQ(got, expected);
  EXPECT_EQ(expected[0], 5);
  EXPECT_EQ(expected[1], 0);
  EXPECT_EQ(expected[2], 128255);
  EXPECT_EQ(expected[3], 0);
}

TEST_F(CudaVsCpu, RopeMatchesCpuInBothPairingsAtLargePositions) {
  const int heads = 3, head_dim = 16;
  const std::int64_t n = 4, stride = 24;
  for (bool interleaved : {false, true}) {
    rope_table table;
    for (int i = 0; i < head_dim / 2; ++i) table.inv_freq.push_back(std::pow(10000.f, -2.f * i / head_dim));
    table.cos_sin_scale = 1.25f;
    table.interleaved = interleaved;
    const std::vector<std::int32_t> positions = {0, 7, 4095, 131071};
    const auto x = random_floats(std::size_t(n * heads * stride), 9);
    std::vector<float> expected = x;
    cpu_->rope(expected.data(), n, heads, head_dim, stride, positions, table);
    float* gx = upload(x);
    gpu_->rope(gx, n, heads, head_dim, stride, positions, table);
    EXPECT_LT(relative_error(download(gx, x.size()), expected), 1e-4) << "interleaved=" << interleaved;
  }
}

TEST_F(CudaVsCpu, GatherAndOrderedScatterAddMatchCpu) {
  const std::int64_t dim = 300;
  const auto src = random_floats(std::size_t(10 * dim), 11);
  const std::vector<std::int32_t> rows = {4, 9, 0, 4, 4};
  std::vector<float> expected(rows.size() * dim);
  cpu_->gather_rows(src.data(), dim, rows, expected.data());
  float* out = upload(std::vector<float>(expected.size(), NAN));
  const float* gsrc = upload(src);
  gpu_->gather_rows(gsrc, dim, rows, out);
  EXPECT_EQ(download(out, expected.size()), expected);

  const std::vector<float> weights = {0.5f, -1.f, 2.f, 0.25f, 1.f};
  const auto terms = random_floats(rows.size() * dim, 12);
  std::vector<float> dst = src;
  cpu_->scatter_add_rows(dst.data(), dim, rows, weights, terms.data());
  float* gdst = upload(src);
  gpu_->scatter_add_rows(gdst, dim, rows, weights, upload(terms));
  EXPECT_LT(relative_error(download(gdst, dst.size()), dst), 1e-6);
}

// Sequences for the attention cases: (first_position, rows) each, blocks shuffled.
struct attention_case {
  std::vector<attention_sequence> seqs;
  std::vector<std::vector<std::int32_t>> tables;
  std::int64_t rows = 0, blocks = 0;
};

attention_case make_case(const std::vector<std::pair<std::int64_t, std::int64_t>>& shape,
                         int block_tokens) {
  attention_case c;
  for (const auto& [first, rows] : shape) c.blocks += (first + rows + block_tokens - 1) / block_tokens;
  std::vector<std::int32_t> order(std::size_t(c.blocks));
  std::iota(order.begin(), order.end(), 0);
  std::reverse(order.begin(), order.end());  // tables that are not the identity
  std::size_t next = 0;
  for (const auto& [first, rows] : shape) {
    const std::int64_t blocks = (first + rows + block_tokens - 1) / block_tokens;
    c.tables.emplace_back(order.begin() + std::ptrdiff_t(next), order.begin() + std::ptrdiff_t(next + blocks));
    next += std::size_t(blocks);
    c.seqs.push_back({c.rows, rows, first, nullptr, blocks});
    c.rows += rows;
  }
  for (std::size_t i = 0; i < c.seqs.size(); ++i) c.seqs[i].block_table = c.tables[i].data();
  return c;
}

// The sequences of c from position 0 on, written as one prefill (their whole history), and
// how many rows that is.
attention_case history_of(const attention_case& c, std::int64_t& rows) {
  attention_case full = c;
  rows = 0;
  for (auto& s : full.seqs) {
    s.rows += s.first_position;
    s.first_position = 0;
    s.row_begin = rows;
    rows += s.rows;
  }
  return full;
}

// Fills every position of every sequence's cache (the earlier positions as a prefix the
// sequence wrote before), then attends the sequences' rows.
// heads / kv_heads: GQA groups of 4, 8 and 3 (blocks of 4, 8 and 1 query heads), and MHA.
TEST_F(CudaVsCpu, PagedAttentionMatchesCpuWithGqaPrefillAndSplitK) {
  for (const auto& [heads, kv_heads, head_dim] : {std::tuple{8, 2, 64}, std::tuple{16, 2, 128},
                                                 std::tuple{6, 2, 32}, std::tuple{4, 4, 256}}) {
    SCOPED_TRACE(::testing::Message() << heads << " heads, " << kv_heads << " KV heads, head_dim "
                                      << head_dim);
    check_paged_attention(heads, kv_heads, head_dim);
  }
}

void CudaVsCpu::check_paged_attention(const int heads, const int kv_heads, const int head_dim) {
  const int bt = 16;
  // A long decode (split-K), a prefill, a decode in the middle of a block.
  auto c = make_case({{1500, 1}, {0, 37}, {70, 1}}, bt);
  const std::int64_t width = std::int64_t(kv_heads) * head_dim;
  const std::size_t cache_values = std::size_t(c.blocks * bt * width);
  std::vector<std::uint16_t> cpu_keys(cache_values), cpu_values(cache_values);
  kv_layer cpu_cache{cpu_keys.data(), cpu_values.data(), bt, kv_heads, head_dim};
  auto* gk = upload(std::vector<std::uint16_t>(cache_values, 0));
  auto* gv = upload(std::vector<std::uint16_t>(cache_values, 0));
  kv_layer gpu_cache{gk, gv, bt, kv_heads, head_dim};
  std::int64_t history_rows = 0;
  const attention_case full = history_of(c, history_rows);
  const auto keys = random_floats(std::size_t(history_rows * width), 21);
  const auto values = random_floats(std::size_t(history_rows * width), 22);
  cpu_->kv_write(cpu_cache, full.seqs, keys.data(), values.data());
  gpu_->kv_write(gpu_cache, full.seqs, upload(keys), upload(values));
  EXPECT_EQ(download(gk, cache_values), cpu_keys);
  EXPECT_EQ(download(gv, cache_values), cpu_values);

  const auto q = random_floats(std::size_t(c.rows * heads * head_dim), 23, 2.f);
  std::vector<float> expected(q.size());
  const float scale = 1.0f / std::sqrt(float(head_dim));
  cpu_->paged_attention(q.data(), heads, cpu_cache, c.seqs, scale, expected.data());
  float* out = upload(std::vector<float>(q.size(), NAN));
  gpu_->paged_attention(upload(q), heads, gpu_cache, c.seqs, scale, out);
  EXPECT_LT(relative_error(download(out, q.size()), expected), 1e-3);
}

// 4 heads (one block of 4), 6 heads (blocks of 2), at DeepSeek-V3's dims and a small one.
TEST_F(CudaVsCpu, LatentAttentionMatchesCpuAtDeepSeekDims) {
  for (const auto& [heads, latent, rope_dim] : {std::tuple{4, 512, 64}, std::tuple{6, 512, 64},
                                               std::tuple{3, 64, 16}}) {
    SCOPED_TRACE(::testing::Message() << heads << " heads, latent " << latent << ", rope "
                                      << rope_dim);
    check_latent_attention(heads, latent, rope_dim);
  }
}

void CudaVsCpu::check_latent_attention(const int heads, const int latent, const int rope_dim) {
  const int bt = 16;
  auto c = make_case({{900, 1}, {0, 5}}, bt);
  const std::int64_t width = latent + rope_dim;
  const std::size_t cache_values = std::size_t(c.blocks * bt * width);
  std::vector<std::uint16_t> cpu_entries(cache_values);
  latent_kv_layer cpu_cache{cpu_entries.data(), bt, latent, rope_dim};
  auto* ge = upload(std::vector<std::uint16_t>(cache_values, 0));
  latent_kv_layer gpu_cache{ge, bt, latent, rope_dim};
  std::int64_t history_rows = 0;
  const attention_case full = history_of(c, history_rows);
  const auto lat = random_floats(std::size_t(history_rows * latent), 31, 0.3f);
  const auto rk = random_floats(std::size_t(history_rows * rope_dim), 32, 0.3f);
  cpu_->latent_kv_write(cpu_cache, full.seqs, lat.data(), rk.data());
  gpu_->latent_kv_write(gpu_cache, full.seqs, upload(lat), upload(rk));
  EXPECT_EQ(download(ge, cache_values), cpu_entries);

  const std::int64_t rope_stride = 96;  // q_rope heads inside wider rows, as the model has them
  const auto ql = random_floats(std::size_t(c.rows * heads * latent), 33, 0.3f);
  const auto qr = random_floats(std::size_t(c.rows * heads * rope_stride), 34, 0.3f);
  std::vector<float> expected(std::size_t(c.rows * heads * latent));
  const float scale = 1.0f / std::sqrt(float(width));
  cpu_->latent_attention(ql.data(), qr.data(), rope_stride, heads, cpu_cache, c.seqs, scale,
                         expected.data());
  float* out = upload(std::vector<float>(expected.size(), NAN));
  gpu_->latent_attention(upload(ql), upload(qr), rope_stride, heads, gpu_cache, c.seqs, scale, out);
  EXPECT_LT(relative_error(download(out, expected.size()), expected), 1e-3);
}

}  // namespace
}  // namespace dsrt::kernels
