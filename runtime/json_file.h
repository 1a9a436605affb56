#pragma once
// Reading a JSON file from disk with a size limit, as every loader of model files does.
#include <cstdint>
#include <filesystem>
#include <string_view>

#include <nlohmann/json.hpp>

#include "runtime/error.h"

namespace dsrt {

// Arrays and objects nested deeper than this are refused before parsing: nlohmann parses
// without recursion, but copying or dumping a value recurses once per level, and a file of a
// few MB could nest a million deep. Model files nest a handful of levels.
inline constexpr std::size_t json_depth_max = 64;

// Parses `text`; `source` names it in errors. Errors: corrupt_data (nested deeper than
// json_depth_max, or not valid JSON).
result<nlohmann::json> parse_json(std::string_view text, std::string_view source);

// Errors: not_found (missing or unreadable; the message names the path), corrupt_data
// (larger than bytes_max, or as parse_json).
result<nlohmann::json> read_json_file(const std::filesystem::path& path, std::uint64_t bytes_max);

}  // namespace dsrt
