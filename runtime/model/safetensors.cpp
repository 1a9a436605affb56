#include "runtime/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runtime/json_file.h"

namespace dsrt::model {
namespace {

using json = nlohmann::json;

// An index lists one line per tensor; even DeepSeek-V3's (~90k tensors) is a few MiB.
constexpr std::uint64_t safetensors_index_bytes_max = 64ull << 20;
// Bounds the element count so elements * dtype_size cannot overflow 64 bits.
constexpr std::uint64_t tensor_elements_max = 1ull << 60;

// Every dtype the safetensors format defines, so a file in a dtype we do not handle yet
// (I64, F8_E5M2, ...) is reported as unsupported rather than as garbage.
bool is_safetensors_dtype(std::string_view name) {
  static constexpr std::string_view known[] = {
      "BOOL", "U8",  "I8",  "I16", "U16",     "F16",     "BF16",    "I32",     "U32",    "F32",
      "F64",  "I64", "U64", "C64", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4"};
  return std::find(std::begin(known), std::end(known), name) != std::end(known);
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// Parses one header entry into `t` (everything but data and file). `data_bytes` is the size
// of the data region; begin/end are returned for the overlap check.
status parse_entry(const std::string& source, const std::string& name, const json& entry,
                   std::uint64_t data_bytes, tensor_info& t, std::uint64_t& begin,
                   std::uint64_t& end) {
  auto fail = [&](std::string_view what) {
    return make_error(error_code::corrupt_data, "{}: tensor '{}': {}", source, name, what);
  };
  if (!entry.is_object()) return fail("header entry is not an object");
  auto dtype_it = entry.find("dtype");
  auto shape_it = entry.find("shape");
  auto offsets_it = entry.find("data_offsets");
  if (dtype_it == entry.end() || !dtype_it->is_string()) return fail("no string dtype");
  if (shape_it == entry.end() || !shape_it->is_array()) return fail("no shape array");
  if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
    return fail("no data_offsets [begin, end]");
  }

  const auto& type_name = dtype_it->get_ref<const std::string&>();
  auto type = dtype_from_safetensors(type_name);
  if (!type) {
    if (is_safetensors_dtype(type_name)) {
      return make_error(error_code::unsupported,
                        "{}: tensor '{}': dtype {} is not supported (F32, F16, BF16, F8_E4M3 only)",
                        source, name, type_name);
    }
    return make_error(error_code::corrupt_data, "{}: tensor '{}': unknown dtype '{}'", source,
                      name, type_name);
  }
  t.type = *type;

  if (shape_it->size() > tensor_rank_max) {
    return make_error(error_code::corrupt_data, "{}: tensor '{}': rank {} exceeds the limit {}",
                      source, name, shape_it->size(), tensor_rank_max);
  }
  std::uint64_t elements = 1;
  for (const auto& dim : *shape_it) {
    if (!dim.is_number_unsigned()) {
      return make_error(error_code::corrupt_data,
                        "{}: tensor '{}': shape {} has a dimension that is not a non-negative "
                        "integer",
                        source, name, shape_it->dump());
    }
    const auto d = dim.get<std::uint64_t>();
    if (d != 0 && elements > tensor_elements_max / d) {
      return make_error(error_code::corrupt_data, "{}: tensor '{}': shape {} is too large",
                        source, name, shape_it->dump());
    }
    elements *= d;
    t.shape.push_back(std::int64_t(d));
  }

  const auto& offsets = *offsets_it;
  if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned()) {
    return fail(fmt::format("data_offsets {} are not non-negative integers", offsets.dump()));
  }
  begin = offsets[0].get<std::uint64_t>();
  end = offsets[1].get<std::uint64_t>();
  if (end < begin) {
    return fail(fmt::format("data_offsets [{}, {}] end before they begin", begin, end));
  }
  if (end > data_bytes) {
    return fail(fmt::format("data_offsets [{}, {}] run past the end of the data region ({} "
                            "bytes)",
                            begin, end, data_bytes));
  }
  const std::uint64_t expected = elements * dtype_size(t.type);
  if (end - begin != expected) {
    return fail(fmt::format("holds {} bytes but shape {} of {} needs {}", end - begin,
                            shape_string(t.shape), type_name, expected));
  }
  t.size_bytes = std::size_t(expected);
  return ok_status();
}

// A shard name from an index must name a file beside the index, not a path elsewhere.
bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find('/') == std::string::npos && name.find('\0') == std::string::npos;
}

}  // namespace

std::int64_t tensor_info::elements() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

// ---- mapped_file ----

namespace {

constexpr std::size_t huge_page_bytes = 2u << 20;

// An anonymous copy of [data, data + size) in memory aligned to and advised for huge pages,
// or nullptr. base/length receive what munmap must release.
std::byte* copy_to_huge_pages(const void* data, std::size_t size, void*& base, std::size_t& length) {
  length = (size + huge_page_bytes - 1) / huge_page_bytes * huge_page_bytes + huge_page_bytes;
  base = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return nullptr;
  const auto start = reinterpret_cast<std::uintptr_t>(base);
  auto* aligned = reinterpret_cast<std::byte*>((start + huge_page_bytes - 1) / huge_page_bytes *
                                               huge_page_bytes);
  ::madvise(aligned, length - std::size_t(aligned - static_cast<std::byte*>(base)), MADV_HUGEPAGE);
  std::memcpy(aligned, data, size);
  ::mprotect(base, length, PROT_READ);
  return aligned;
}

}  // namespace

result<mapped_file> mapped_file::open(const std::filesystem::path& path, weights_memory memory) {
  // O_NONBLOCK: opening a FIFO in a model's place would otherwise wait for a writer
  // forever; the file type check below refuses it (reads of regular files ignore the flag).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int e = errno;
    return make_error(e == ENOENT ? error_code::not_found : error_code::internal,
                      "{}: cannot open: {}", path.string(), std::strerror(e));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return make_error(error_code::not_found, "{}: not a regular file", path.string());
  }
  mapped_file m;
  m.size_ = std::size_t(st.st_size);
  if (m.size_ > 0) {
    // MAP_PRIVATE + PROT_READ: the weights are never written through the mapping, and a
    // private mapping keeps a later write to the file by someone else from surprising us
    // mid-run any more than the OS forces. MAP_POPULATE faults every page in now (reading
    // the file if it is not cached): otherwise the first step to touch each weight pays
    // its page faults, and with MoE, where a step reads only the experts it routes to,
    // that would go on for as many steps as it takes to route to every expert.
    void* p = ::mmap(nullptr, m.size_, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      return make_error(error_code::internal, "{}: mmap of {} bytes failed: {}", path.string(),
                        m.size_, std::strerror(e));
    }
    m.data_ = static_cast<const std::byte*>(p);
    m.map_base_ = p;
    m.map_size_ = m.size_;
    if (memory == weights_memory::huge_pages) {
      void* base = nullptr;
      std::size_t length = 0;
      if (std::byte* copy = copy_to_huge_pages(p, m.size_, base, length)) {
        ::munmap(p, m.size_);
        m.data_ = copy;
        m.map_base_ = base;
        m.map_size_ = length;
      }
    }
  }
  ::close(fd);  // a file mapping keeps the file alive
  return m;
}

void mapped_file::release() {
  if (map_base_) ::munmap(map_base_, map_size_);
  data_ = nullptr;
  map_base_ = nullptr;
  size_ = map_size_ = 0;
}

mapped_file::mapped_file(mapped_file&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      map_base_(std::exchange(other.map_base_, nullptr)),
      map_size_(std::exchange(other.map_size_, 0)) {}

mapped_file& mapped_file::operator=(mapped_file&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    map_base_ = std::exchange(other.map_base_, nullptr);
    map_size_ = std::exchange(other.map_size_, 0);
  }
  return *this;
}

mapped_file::~mapped_file() { release(); }

// ---- safetensors_file ----

result<safetensors_file> safetensors_file::open(const std::filesystem::path& path,
                                                weights_memory memory) {
  auto mapping = mapped_file::open(path, memory);
  if (!mapping) return mapping.err();
  const std::string source = path.string();
  const std::size_t file_bytes = mapping->size();
  if (file_bytes < 8) {
    return make_error(error_code::corrupt_data,
                      "{}: file is {} bytes, shorter than the 8-byte header length", source,
                      file_bytes);
  }
  std::uint64_t header_bytes = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(mapping->data());
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | p[i];  // little-endian
  if (header_bytes > safetensors_header_bytes_max) {
    return make_error(error_code::corrupt_data,
                      "{}: header length {} exceeds the limit of {} bytes", source, header_bytes,
                      safetensors_header_bytes_max);
  }
  if (header_bytes > file_bytes - 8) {
    return make_error(error_code::corrupt_data,
                      "{}: header length {} runs past the end of the file ({} bytes)", source,
                      header_bytes, file_bytes);
  }
  const char* header_text = reinterpret_cast<const char*>(p + 8);
  auto parsed = parse_json(std::string_view(header_text, header_bytes), fmt::format("{}: header", source));
  if (!parsed) return parsed.err();
  json header = std::move(*parsed);
  if (!header.is_object()) {
    return make_error(error_code::corrupt_data, "{}: header is not a JSON object", source);
  }

  safetensors_file file;
  file.path_ = path;
  const std::size_t data_begin = 8 + std::size_t(header_bytes);
  const std::uint64_t data_bytes = file_bytes - data_begin;
  struct range {
    std::uint64_t begin, end;
    const std::string* name;
  };
  std::vector<range> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) {
        return make_error(error_code::corrupt_data, "{}: __metadata__ is not an object", source);
      }
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) {
          return make_error(error_code::corrupt_data,
                            "{}: __metadata__ value for '{}' is not a string", source, key);
        }
        file.metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    tensor_info t;
    t.name = name;
    t.file = path;
    std::uint64_t begin = 0, end = 0;
    DSRT_TRY(parse_entry(source, name, entry, data_bytes, t, begin, end));
    t.data = mapping->data() + data_begin + begin;
    auto [it, inserted] = file.tensors_.emplace(name, std::move(t));
    if (begin != end) ranges.push_back({begin, end, &it->first});
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const range& a, const range& b) { return a.begin < b.begin; });
  for (std::size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].begin < ranges[i - 1].end) {
      return make_error(error_code::corrupt_data,
                        "{}: tensor '{}' [{}, {}) overlaps tensor '{}' [{}, {})", source,
                        *ranges[i].name, ranges[i].begin, ranges[i].end, *ranges[i - 1].name,
                        ranges[i - 1].begin, ranges[i - 1].end);
    }
  }
  file.mapping_ = std::make_shared<mapped_file>(std::move(mapping.value()));
  return file;
}

// ---- weight_store ----

result<weight_store> weight_store::open(const std::filesystem::path& model_dir,
                                        weights_memory memory) {
  std::error_code ec;
  const auto index_path = model_dir / "model.safetensors.index.json";
  const auto single_path = model_dir / "model.safetensors";
  weight_store store;
  if (std::filesystem::exists(index_path, ec)) {
    auto index = read_json_file(index_path, safetensors_index_bytes_max);
    if (!index) return index.err();
    const std::string source = index_path.string();
    auto map_it = index->find("weight_map");
    if (!index->is_object() || map_it == index->end() || !map_it->is_object()) {
      return make_error(error_code::corrupt_data, "{}: no weight_map object", source);
    }
    std::map<std::string, std::string> tensor_to_shard;
    std::set<std::string> shards;
    for (const auto& [name, shard] : map_it->items()) {
      if (!shard.is_string() || !is_plain_file_name(shard.get<std::string>())) {
        return make_error(error_code::corrupt_data,
                          "{}: tensor '{}' maps to {}, which is not a file name in the model "
                          "directory",
                          source, name, shard.dump());
      }
      tensor_to_shard[name] = shard.get<std::string>();
      shards.insert(shard.get<std::string>());
    }
    if (shards.empty()) {
      return make_error(error_code::corrupt_data, "{}: weight_map lists no tensors", source);
    }
    std::map<std::string, std::size_t> shard_slot;
    for (const auto& shard : shards) {
      const auto shard_path = model_dir / shard;
      if (!std::filesystem::exists(shard_path, ec)) {
        return make_error(error_code::not_found, "{}: shard {} does not exist", source,
                          shard_path.string());
      }
      auto file = safetensors_file::open(shard_path, memory);
      if (!file) return file.err();
      shard_slot[shard] = store.files_.size();
      store.files_.push_back(std::move(file.value()));
    }
    // Index only once files_ no longer grows, so the pointers cannot be invalidated.
    std::map<std::string, std::string> seen_in;
    for (const auto& file : store.files_) {
      for (const auto& [name, t] : file.tensors()) {
        auto [it, inserted] = seen_in.emplace(name, file.path().filename().string());
        if (!inserted) {
          return make_error(error_code::corrupt_data, "{}: tensor '{}' appears in both {} and {}",
                            source, name, it->second, file.path().filename().string());
        }
      }
    }
    for (const auto& [name, shard] : tensor_to_shard) {
      const auto& file = store.files_[shard_slot[shard]];
      auto it = file.tensors().find(name);
      if (it == file.tensors().end()) {
        return make_error(error_code::corrupt_data,
                          "{}: tensor '{}' is listed in the index but missing from shard {}",
                          source, name, file.path().string());
      }
      store.index_[name] = &it->second;
    }
    return store;
  }
  if (!std::filesystem::exists(single_path, ec)) {
    return make_error(error_code::not_found,
                      "{}: no weights (neither model.safetensors nor "
                      "model.safetensors.index.json)",
                      model_dir.string());
  }
  auto file = safetensors_file::open(single_path, memory);
  if (!file) return file.err();
  store.files_.push_back(std::move(file.value()));
  for (const auto& [name, t] : store.files_[0].tensors()) store.index_[name] = &t;
  return store;
}

const tensor_info* weight_store::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

std::uint64_t weight_store::total_bytes() const {
  std::uint64_t total = 0;
  for (const auto& [name, t] : index_) total += t->size_bytes;
  return total;
}

// ---- writing ----

result<std::string> safetensors_header(const std::vector<tensor_desc>& tensors,
                                       const std::map<std::string, std::string>& metadata) {
  std::vector<const tensor_desc*> sorted;
  for (const auto& t : tensors) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(),
            [](const tensor_desc* a, const tensor_desc* b) { return a->name < b->name; });
  json header = json::object();  // std::map-backed: keys come out sorted
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const auto* t : sorted) {
    if (t->name == "__metadata__" || header.contains(t->name)) {
      return make_error(error_code::invalid_argument, "tensor name '{}' is reserved or repeated",
                        t->name);
    }
    if (t->shape.size() > tensor_rank_max) {
      return make_error(error_code::invalid_argument, "tensor '{}': rank {} exceeds {}",
                        t->name, t->shape.size(), tensor_rank_max);
    }
    std::uint64_t elements = 1;
    for (auto d : t->shape) {
      if (d < 0) {
        return make_error(error_code::invalid_argument, "tensor '{}': negative dimension in {}",
                          t->name, shape_string(t->shape));
      }
      elements *= std::uint64_t(d);
    }
    const std::uint64_t end = offset + elements * dtype_size(t->type);
    header[t->name] = {{"dtype", std::string(dtype_to_safetensors(t->type))},
                       {"shape", t->shape},
                       {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data region 8-byte aligned
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[std::size_t(i)] = char((std::uint64_t(text.size()) >> (8 * i)) & 0xff);
  return out + text;
}

status write_safetensors(const std::filesystem::path& path,
                         const std::vector<tensor_to_write>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  std::vector<tensor_desc> descs;
  std::vector<const tensor_to_write*> sorted;
  for (const auto& t : tensors) {
    std::uint64_t elements = 1;
    for (auto d : t.shape) elements *= d < 0 ? 0 : std::uint64_t(d);
    if (t.bytes.size() != elements * dtype_size(t.type)) {
      return make_error(error_code::invalid_argument,
                        "{}: tensor '{}' has {} bytes but shape {} of {} needs {}",
                        path.string(), t.name, t.bytes.size(), shape_string(t.shape),
                        dtype_name(t.type), elements * dtype_size(t.type));
    }
    descs.push_back({t.name, t.type, t.shape});
    sorted.push_back(&t);
  }
  auto header = safetensors_header(descs, metadata);
  if (!header) {
    return make_error(header.err().code, "{}: {}", path.string(), header.err().message);
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const tensor_to_write* a, const tensor_to_write* b) { return a->name < b->name; });
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) {
    return make_error(error_code::internal, "{}: cannot create: {}", path.string(),
                      std::strerror(errno));
  }
  bool good = std::fwrite(header->data(), 1, header->size(), f) == header->size();
  for (const auto* t : sorted) {
    if (!good) break;
    good = t->bytes.empty() || std::fwrite(t->bytes.data(), 1, t->bytes.size(), f) == t->bytes.size();
  }
  const int write_errno = errno;
  if (std::fclose(f) != 0) good = false;
  if (!good) {
    return make_error(error_code::internal, "{}: write failed: {}", path.string(),
                      std::strerror(write_errno));
  }
  return ok_status();
}

}  // namespace dsrt::model
