#pragma once
// Looks tensors up in a weight store and checks each against the shape its config implies
// and the dtypes allowed for its role. Shared by the dense and DeepSeek weight binders
// (weights.cpp, weights_deepseek.cpp); not meant for other callers.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "runtime/error.h"
#include "runtime/model/safetensors.h"
#include "runtime/model/weights.h"

namespace dsrt::model::detail {

std::string shape_string(const std::vector<std::int64_t>& shape);

class tensor_checker {
 public:
  // REQUIRES: dir and store outlive the checker.
  tensor_checker(const std::filesystem::path& dir, const weight_store& store)
      : dir_(dir), store_(store) {}

  // The tensor, or nullptr when absent (callers decide whether absence is an error).
  // Accepts f32, f16, bf16, and f8_e4m3 when allow_fp8.
  result<const tensor_info*> optional(const std::string& name,
                                      const std::vector<std::int64_t>& expected,
                                      bool allow_fp8 = false) const;
  result<const tensor_info*> required(const std::string& name,
                                      const std::vector<std::int64_t>& expected,
                                      bool allow_fp8 = false) const;
  // A tensor that must be f32 (scales), present.
  result<const tensor_info*> required_f32(const std::string& name,
                                          const std::vector<std::int64_t>& expected) const;

  const weight_store& store() const { return store_; }

 private:
  const std::filesystem::path& dir_;
  const weight_store& store_;
};

// Binds and checks every DeepSeek tensor (weights_deepseek.cpp).
// REQUIRES: c.deepseek is set.
status bind_deepseek(const tensor_checker& check, const model_config& c, deepseek_weights& w);

}  // namespace dsrt::model::detail
