#include "tests/engine/reference_math.h"

#include <cmath>
#include <stdexcept>

namespace dsrt::engine::test_util {

matrix tensor(const model::model_files& files, const std::string& name, std::int64_t rows,
              std::int64_t cols) {
  const model::tensor_info* t = files.store.find(name);
  if (t == nullptr) throw std::runtime_error("missing tensor " + name);
  if (t->elements() != rows * cols) throw std::runtime_error("bad shape of " + name);
  matrix out(std::size_t(rows * cols));
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = load_as_f32(t->data, t->type, i);
  return out;
}

matrix linear(const matrix& x, std::int64_t n, const matrix& w, std::int64_t rows,
              std::int64_t cols, const matrix* bias) {
  matrix y(std::size_t(n * rows));
  for (std::int64_t t = 0; t < n; ++t)
    for (std::int64_t r = 0; r < rows; ++r) {
      double s = bias ? (*bias)[std::size_t(r)] : 0.0;
      for (std::int64_t c = 0; c < cols; ++c)
        s += x[std::size_t(t * cols + c)] * w[std::size_t(r * cols + c)];
      y[std::size_t(t * rows + r)] = s;
    }
  return y;
}

matrix rms_norm(const matrix& x, std::int64_t n, std::int64_t dim, const matrix& gamma, double eps,
                bool use_gamma) {
  matrix y(x.size());
  for (std::int64_t t = 0; t < n; ++t) {
    double ss = 0;
    for (std::int64_t i = 0; i < dim; ++i) ss += x[std::size_t(t * dim + i)] * x[std::size_t(t * dim + i)];
    const double inv = 1.0 / std::sqrt(ss / double(dim) + eps);
    for (std::int64_t i = 0; i < dim; ++i)
      y[std::size_t(t * dim + i)] =
          x[std::size_t(t * dim + i)] * inv * (use_gamma ? gamma[std::size_t(i)] : 1.0);
  }
  return y;
}

double round_bf16(double v) { return bf16_to_f32(f32_to_bf16(float(v))); }

}  // namespace dsrt::engine::test_util
