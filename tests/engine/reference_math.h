#pragma once
// Double-precision building blocks of the test references (reference_model.cpp,
// reference_deepseek.cpp): checkpoint tensors as doubles, y = x . w^T, RMSNorm.
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/model/weights.h"

namespace dsrt::engine::test_util {

using matrix = std::vector<double>;  // row-major

// A checkpoint tensor as doubles (values as stored; fp8 without its scales), its element
// count checked. Throws std::runtime_error when absent or of another size.
matrix tensor(const model::model_files& files, const std::string& name, std::int64_t rows,
              std::int64_t cols);
// y[n, rows] = x[n, cols] . w[rows, cols]^T (+ bias[rows])
matrix linear(const matrix& x, std::int64_t n, const matrix& w, std::int64_t rows,
              std::int64_t cols, const matrix* bias = nullptr);
// Each of n rows of dim values divided by its RMS, times gamma (or not, when !use_gamma).
matrix rms_norm(const matrix& x, std::int64_t n, std::int64_t dim, const matrix& gamma,
                double eps, bool use_gamma = true);
double round_bf16(double v);

}  // namespace dsrt::engine::test_util
