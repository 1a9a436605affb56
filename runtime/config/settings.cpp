#include "runtime/config/settings.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kernels/assert.h"
#include "runtime/config/setting_value.h"
#include "runtime/json_file.h"

namespace dsrt::config {
namespace {

using detail::check;
using detail::current;
using detail::parse_text;
using detail::setting;
using detail::shown;
using detail::value;
using detail::write_field;

// Levenshtein distance, for "did you mean".
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  std::iota(row.begin(), row.end(), std::size_t{0});
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t k = 1; k <= b.size(); ++k) {
      const std::size_t above = row[k];
      row[k] = std::min({row[k] + 1, row[k - 1] + 1, diagonal + (a[i - 1] == b[k - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > name_bytes_max) return false;
  std::size_t segments = 1;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (c == '.') {
      if (i == 0 || i + 1 == name.size() || name[i - 1] == '.') return false;
      ++segments;
    } else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
      return false;
    }
  }
  return segments <= name_segments_max;
}

// "a" is a section of "a.b" (and of "a.b.c").
bool is_section_of(std::string_view section, std::string_view name) {
  return name.size() > section.size() && name.starts_with(section) && name[section.size()] == '.';
}

std::string escaped_cell(std::string_view text) {
  std::string out;
  for (char c : text) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out;
}

}  // namespace

settings::settings() = default;
settings::~settings() = default;
settings::settings(settings&&) noexcept = default;
settings& settings::operator=(settings&&) noexcept = default;

void settings::add_entry(setting e) {
  DSRT_ASSERT(valid_name(e.name), "bad setting name '{}'", e.name);
  DSRT_ASSERT(entries_.size() < settings_max, "settings_max={}", settings_max);
  DSRT_ASSERT(!e.unit.empty() && !e.doc.empty(), "{}: unit and doc are required", e.name);
  DSRT_ASSERT(std::visit([](auto* f) { return f != nullptr; }, e.field), "{}: null field", e.name);
  for (const auto& other : entries_) {
    DSRT_ASSERT(other.name != e.name, "setting {} bound twice", e.name);
    DSRT_ASSERT(!is_section_of(other.name, e.name) && !is_section_of(e.name, other.name),
                "{} and {}: a name cannot also be a section", other.name, e.name);
  }
  e.default_text = current(e).dump();
  entries_.push_back(std::move(e));
}

void settings::add(std::string name, std::int64_t* field, std::string unit, std::string doc,
                   std::int64_t min, std::int64_t max) {
  DSRT_ASSERT(field && min <= *field && *field <= max, "{}: default outside [{}, {}]", name, min,
              max);
  add_entry({.name = std::move(name), .unit = std::move(unit), .doc = std::move(doc),
             .field = field, .int_min = min, .int_max = max,
             .range_text = fmt::format("[{}, {}]", min, max)});
}

void settings::add(std::string name, int* field, std::string unit, std::string doc, int min,
                   int max) {
  DSRT_ASSERT(field && min <= *field && *field <= max, "{}: default outside [{}, {}]", name, min,
              max);
  add_entry({.name = std::move(name), .unit = std::move(unit), .doc = std::move(doc),
             .field = field, .int_min = min, .int_max = max,
             .range_text = fmt::format("[{}, {}]", min, max)});
}

void settings::add(std::string name, double* field, std::string unit, std::string doc, double min,
                   double max) {
  DSRT_ASSERT(std::isfinite(min) && std::isfinite(max), "{}: bounds must be finite", name);
  DSRT_ASSERT(field && min <= *field && *field <= max, "{}: default outside [{}, {}]", name, min,
              max);
  add_entry({.name = std::move(name), .unit = std::move(unit), .doc = std::move(doc),
             .field = field, .real_min = min, .real_max = max,
             .range_text = fmt::format("[{}, {}]", min, max)});
}

void settings::add(std::string name, bool* field, std::string doc) {
  add_entry({.name = std::move(name), .unit = "bool", .doc = std::move(doc), .field = field,
             .range_text = "true, false"});
}

void settings::add(std::string name, std::chrono::milliseconds* field, std::string doc,
                   std::chrono::milliseconds min, std::chrono::milliseconds max) {
  DSRT_ASSERT(name.ends_with("_ms"), "{}: a duration in ms is named *_ms", name);
  DSRT_ASSERT(field && min <= *field && *field <= max, "{}: default outside [{}, {}] ms", name,
              min.count(), max.count());
  add_entry({.name = std::move(name), .unit = "ms", .doc = std::move(doc), .field = field,
             .int_min = min.count(), .int_max = max.count(),
             .range_text = fmt::format("[{}, {}]", min.count(), max.count())});
}

void settings::add(std::string name, std::string* field, std::string doc,
                   std::vector<std::string> allowed) {
  DSRT_ASSERT(field && (allowed.empty() || std::count(allowed.begin(), allowed.end(), *field)),
              "{}: default is not one of the allowed values", name);
  const bool is_enum = !allowed.empty();
  add_entry({.name = std::move(name), .unit = is_enum ? "enum" : "text", .doc = std::move(doc),
             .field = field, .allowed = allowed,
             .range_text = is_enum ? fmt::format("{}", fmt::join(allowed, ", ")) : "-"});
}

const setting* settings::find(std::string_view name) const {
  for (const auto& e : entries_) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

error settings::unknown(std::string_view name) const {
  // Candidates are the names and their sections, so a misspelt section is caught too.
  std::string best;
  std::size_t best_distance = SIZE_MAX;
  if (name.size() <= 2 * name_bytes_max) {  // edit distance is quadratic in the length
    for (const auto& e : entries_) {
      for (std::size_t end = e.name.find('.');; end = e.name.find('.', end + 1)) {
        const std::string_view candidate = std::string_view(e.name).substr(0, end);
        const std::size_t d = edit_distance(name, candidate);
        if (d < best_distance) {
          best_distance = d;
          best = candidate;
        }
        if (end == std::string::npos) break;
      }
    }
  }
  if (best_distance == 0) {  // only a section can match exactly: find() missed the names
    return make_error(error_code::invalid_argument, "'{}' is a section, not a setting", best);
  }
  // Near enough to be a typo: a couple of letters, or a quarter of a long name.
  if (best_distance <= std::max<std::size_t>(2, name.size() / 4)) {
    return make_error(error_code::invalid_argument, "unknown setting '{}'; did you mean '{}'?",
                      shown(std::string(name)), best);
  }
  return make_error(error_code::invalid_argument, "unknown setting '{}'", shown(std::string(name)));
}

status settings::collect(const nlohmann::json& object, const std::string& prefix,
                         std::vector<std::pair<std::string, const nlohmann::json*>>& out) const {
  for (const auto& [key, v] : object.items()) {
    std::string name = prefix.empty() ? key : prefix + "." + key;
    if (find(name)) {
      out.emplace_back(std::move(name), &v);
      continue;
    }
    const bool section = std::any_of(entries_.begin(), entries_.end(),
                                     [&](const setting& e) { return is_section_of(name, e.name); });
    if (!section) return unknown(name);
    if (!v.is_object()) {
      return make_error(error_code::invalid_argument, "{}: is a section, expected an object", name);
    }
    // Recursion depth is bounded: sections exist only up to name_segments_max - 1 deep.
    DSRT_TRY(collect(v, name, out));
  }
  return ok_status();
}

status settings::load_file(const std::filesystem::path& path) {
  auto root = read_json_file(path, settings_file_bytes_max);
  if (!root.ok()) return root.err();
  auto loaded = load_json(*root);
  if (!loaded.ok()) {
    return error{loaded.err().code, fmt::format("{}: {}", path.string(), loaded.err().message)};
  }
  return ok_status();
}

status settings::load_json(const nlohmann::json& root) {
  if (!root.is_object()) {
    return make_error(error_code::invalid_argument, "settings must be a JSON object, got {}",
                      root.type_name());
  }
  std::vector<std::pair<std::string, const nlohmann::json*>> leaves;
  DSRT_TRY(collect(root, "", leaves));
  // Check everything before writing anything: a failed load leaves every field as it was.
  std::set<std::string_view> seen;
  std::vector<std::pair<const setting*, value>> pending;
  for (const auto& [name, j] : leaves) {
    if (!seen.insert(name).second) {
      return make_error(error_code::invalid_argument, "{}: given twice", name);
    }
    const setting* s = find(name);
    auto v = check(*s, *j);
    if (!v.ok()) return v.err();
    pending.emplace_back(s, std::move(*v));
  }
  for (const auto& [s, v] : pending) write_field(*s, v);
  return ok_status();
}

status settings::set(std::string_view assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return make_error(error_code::invalid_argument, "--set expects section.name=value, got '{}'",
                      shown(std::string(assignment)));
  }
  const setting* s = find(assignment.substr(0, eq));
  if (!s) return unknown(assignment.substr(0, eq));
  auto j = parse_text(*s, assignment.substr(eq + 1));
  if (!j.ok()) return j.err();
  auto v = check(*s, *j);
  if (!v.ok()) return v.err();
  write_field(*s, *v);
  return ok_status();
}

nlohmann::json settings::to_json() const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& e : entries_) {
    std::string pointer = "/" + e.name;  // names are [a-z0-9_.]: nothing to escape
    std::replace(pointer.begin(), pointer.end(), '.', '/');
    out[nlohmann::json::json_pointer(pointer)] = current(e);
  }
  return out;
}

std::string settings::markdown_table() const {
  std::vector<const setting*> rows;
  for (const auto& e : entries_) rows.push_back(&e);
  std::sort(rows.begin(), rows.end(), [](auto* a, auto* b) { return a->name < b->name; });
  std::string out = "| name | unit | default | range | meaning |\n|---|---|---|---|---|\n";
  for (const setting* e : rows) {
    out += fmt::format("| {} | {} | {} | {} | {} |\n", e->name, escaped_cell(e->unit),
                       escaped_cell(e->default_text), escaped_cell(e->range_text),
                       escaped_cell(e->doc));
  }
  return out;
}

}  // namespace dsrt::config
