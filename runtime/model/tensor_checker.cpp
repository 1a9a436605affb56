#include "runtime/model/tensor_checker.h"

namespace dsrt::model::detail {

std::string shape_string(const std::vector<std::int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

result<const tensor_info*> tensor_checker::optional(const std::string& name,
                                                    const std::vector<std::int64_t>& expected,
                                                    bool allow_fp8) const {
  const tensor_info* t = store_.find(name);
  if (!t) return static_cast<const tensor_info*>(nullptr);
  // No default case: a new dtype becomes a -Wswitch warning here instead of a tensor
  // silently accepted.
  bool accepted = false;
  switch (t->type) {
    case dtype::f32:
    case dtype::f16:
    case dtype::bf16:
      accepted = true;
      break;
    case dtype::f8_e4m3:
      accepted = allow_fp8;
      break;
  }
  if (!accepted) {
    return make_error(error_code::corrupt_data, "{}: tensor '{}' has dtype {}; {}",
                      t->file.string(), name, dtype_name(t->type),
                      allow_fp8 ? "weights must be f32, f16, bf16 or f8_e4m3"
                                : "this tensor must be f32, f16 or bf16");
  }
  if (t->shape != expected) {
    return make_error(error_code::corrupt_data,
                      "{}: tensor '{}' has shape {} but config.json implies {}",
                      t->file.string(), name, shape_string(t->shape), shape_string(expected));
  }
  return t;
}

result<const tensor_info*> tensor_checker::required(const std::string& name,
                                                    const std::vector<std::int64_t>& expected,
                                                    bool allow_fp8) const {
  auto t = optional(name, expected, allow_fp8);
  if (!t) return t.err();
  if (!*t) {
    return make_error(error_code::corrupt_data, "{}: tensor '{}' (shape {}) is missing",
                      dir_.string(), name, shape_string(expected));
  }
  return t;
}

result<const tensor_info*> tensor_checker::required_f32(
    const std::string& name, const std::vector<std::int64_t>& expected) const {
  auto t = required(name, expected);
  if (!t) return t.err();
  if ((*t)->type != dtype::f32) {
    return make_error(error_code::corrupt_data, "{}: tensor '{}' has dtype {}; it must be f32",
                      (*t)->file.string(), name, dtype_name((*t)->type));
  }
  return t;
}

}  // namespace dsrt::model::detail
