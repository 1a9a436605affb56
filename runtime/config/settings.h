#pragma once
// One typed configuration (a JSON file plus command-line overrides) where every limit is
// named, has a unit and is documented. settings is a table that binds dotted names
// ("batcher.batch_tokens_max") to fields of the caller's own config structs; the structs
// keep their defaults, and markdown_table() documents them as captured at add() time.
//
//   engine_config cfg;
//   config::settings s;
//   s.add("batcher.batch_tokens_max", &cfg.batch_tokens_max, "tokens",
//         "Tokens in one forward batch.", 1, 1 << 20);
//   DSRT_TRY(s.load_file(path));
//   for (auto& a : cli.set_flags) DSRT_TRY(s.set(a));
//
// Errors: every load is validated in full before any field is written, so a failed load
// changes nothing. invalid_argument names the key (unknown key, with the closest known name
// when one is near; wrong type; out of bounds); not_found / corrupt_data for a file that is
// missing or is not JSON.
// Ownership: settings holds raw pointers to the bound fields and owns nothing else.
// REQUIRES: every bound field outlives the settings.
// Thread safety: none. Load at start-up, before the fields are read by other threads.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "runtime/error.h"

namespace dsrt::config {

namespace detail {
struct setting;  // one bound name (setting_value.h)
}  // namespace detail

// A settings file is a few kilobytes; anything near this is not one.
inline constexpr std::uint64_t settings_file_bytes_max = 1 << 20;  // 1 MiB
// Bound names; far above what the runtime declares.
inline constexpr std::size_t settings_max = 1024;
// A name is at most this many dot-separated segments ("section.sub.name" is 3).
inline constexpr std::size_t name_segments_max = 4;
inline constexpr std::size_t name_bytes_max = 128;

class settings {
 public:
  settings();
  ~settings();
  settings(settings&&) noexcept;
  settings& operator=(settings&&) noexcept;
  settings(const settings&) = delete;
  settings& operator=(const settings&) = delete;

  // Binds `name` to *field. The field's current value is the default. Bounds are inclusive
  // and checked on every load and set().
  // unit: what the number counts ("tokens", "requests", "bytes", "blocks", "ratio", "count").
  // doc: one line saying what the setting means.
  // REQUIRES (all overloads): name is 1..name_segments_max segments of [a-z0-9_]+ joined by
  // '.', at most name_bytes_max bytes, not bound before, not a section of another name (and
  // no other name a section of it); unit and doc not empty; min <= default <= max; fewer
  // than settings_max names bound; field not null and outliving the settings.
  void add(std::string name, std::int64_t* field, std::string unit, std::string doc,
           std::int64_t min, std::int64_t max);
  void add(std::string name, int* field, std::string unit, std::string doc, int min, int max);
  // REQUIRES also: min and max finite (a loaded value must be finite too).
  void add(std::string name, double* field, std::string unit, std::string doc, double min,
           double max);
  // Unit "bool". JSON true/false; on the command line "true" or "false".
  void add(std::string name, bool* field, std::string doc);
  // Unit "ms"; the value is a whole number of milliseconds. REQUIRES also: name ends in _ms.
  void add(std::string name, std::chrono::milliseconds* field, std::string doc,
           std::chrono::milliseconds min, std::chrono::milliseconds max);
  // Unit "text", or "enum" when `allowed` is not empty: then the value must be one of them.
  // REQUIRES also: the default is one of `allowed` when `allowed` is not empty.
  void add(std::string name, std::string* field, std::string doc,
           std::vector<std::string> allowed = {});

  // Loads a JSON file of nested objects: {"batcher": {"batch_tokens_max": 4096}}. A dotted
  // key ("batcher.batch_tokens_max": 4096) is accepted too. Keys left out keep their value.
  // Errors: not_found (missing file), corrupt_data (not JSON, or over
  // settings_file_bytes_max), invalid_argument as load_json; messages start with the path.
  status load_file(const std::filesystem::path& path);
  // Errors: invalid_argument for a root that is not an object, an unknown key or section,
  // a value of the wrong type or out of bounds, or one name given twice.
  status load_json(const nlohmann::json& root);
  // "section.name=value", as given to --set: the value is text (no JSON quoting), parsed as
  // the field's type. Errors: invalid_argument for a missing '=', an unknown name, a value
  // that does not parse or is out of bounds.
  status set(std::string_view assignment);

  // Current values, nested by section as load_json reads them (milliseconds as integers).
  nlohmann::json to_json() const;
  // | name | unit | default | range | meaning |, one row per name sorted by name, with the
  // defaults captured at add() time and inclusive ranges.
  std::string markdown_table() const;

 private:
  void add_entry(detail::setting e);
  const detail::setting* find(std::string_view name) const;
  // invalid_argument for an unknown name, with the closest known name or section if near.
  error unknown(std::string_view name) const;
  // Appends the leaves of a JSON object under `prefix` ("" at the root) to `out`.
  status collect(const nlohmann::json& object, const std::string& prefix,
                 std::vector<std::pair<std::string, const nlohmann::json*>>& out) const;

  std::vector<detail::setting> entries_;
};

}  // namespace dsrt::config
