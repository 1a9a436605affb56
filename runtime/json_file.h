#pragma once
// Reading a JSON file from disk with a size limit, as every loader of model files does.
#include <cstdint>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "runtime/error.h"

namespace dsrt {

// Errors: not_found (missing or unreadable; the message names the path), corrupt_data
// (larger than bytes_max, or not valid JSON).
result<nlohmann::json> read_json_file(const std::filesystem::path& path, std::uint64_t bytes_max);

}  // namespace dsrt
