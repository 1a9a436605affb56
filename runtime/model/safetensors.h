#pragma once
// safetensors files, memory-mapped. A model's weights are one model.safetensors or several
// shards listed by model.safetensors.index.json; weight_store hides which.
//
// Format: 8-byte little-endian header length N, N bytes of JSON header
// {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {...}},
// then the data region; offsets are relative to the start of the data region.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/dtype.h"
#include "runtime/error.h"

namespace dsrt::model {

// Limits on what we accept from a file (a hostile or broken file cannot make us allocate
// or parse without bound).
inline constexpr std::uint64_t safetensors_header_bytes_max = 100ull << 20;  // 100 MiB
inline constexpr std::size_t tensor_rank_max = 8;

// Where a weight file's bytes live once it is opened.
enum class weights_memory {
  // The file mapped read-only, every page faulted in at open (MAP_POPULATE). No copy; 4 KB
  // pages.
  mapped,
  // Copied into anonymous memory advised for 2 MB transparent huge pages (MADV_HUGEPAGE).
  // Costs a copy at load (the page cache copy stays reclaimable); a decode step streaming
  // gigabytes of weights then walks ~500x fewer page-table entries. On bench-dsv3-1b this
  // made decode 1.3-1.9x faster (docs/PERFORMANCE.md). Falls back to `mapped` when the
  // memory cannot be had.
  huge_pages,
};

// A read-only view of a whole file's bytes, mapped or copied (weights_memory). Move-only;
// releases the memory on destruction.
class mapped_file {
 public:
  static result<mapped_file> open(const std::filesystem::path& path,
                                  weights_memory memory = weights_memory::mapped);
  mapped_file() = default;
  mapped_file(mapped_file&& other) noexcept;
  mapped_file& operator=(mapped_file&& other) noexcept;
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  ~mapped_file();

  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  void release();

  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  void* map_base_ = nullptr;   // what munmap releases: the file mapping or the anonymous one
  std::size_t map_size_ = 0;
};

struct tensor_info {
  std::string name;
  dtype type = dtype::f32;
  std::vector<std::int64_t> shape;
  std::size_t size_bytes = 0;
  const void* data = nullptr;          // into the mapping; valid while the owner lives
  std::filesystem::path file;          // which file it came from (for error messages)

  std::int64_t elements() const;
};

// One safetensors file. Validation on open: header length within the file and within
// safetensors_header_bytes_max; header is JSON of the expected shape; every dtype known;
// every shape non-negative with rank <= tensor_rank_max; data_offsets within the data
// region, end >= begin, end - begin == elements * dtype_size; no two tensors overlap.
// Errors: not_found, corrupt_data (message names the file and the tensor), unsupported
// (a dtype we do not handle, e.g. I64).
class safetensors_file {
 public:
  static result<safetensors_file> open(const std::filesystem::path& path,
                                       weights_memory memory = weights_memory::mapped);

  const std::map<std::string, tensor_info>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::shared_ptr<mapped_file> mapping_;
  std::map<std::string, tensor_info> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a model directory: DIR/model.safetensors, or the shards named by
// DIR/model.safetensors.index.json ("weight_map": tensor name -> shard file).
// Errors: not_found (no weights file, or a shard the index names is missing), corrupt_data
// (index is not valid JSON, a tensor listed in the index is missing from its shard, a
// tensor appears in two shards), and the errors of safetensors_file::open.
class weight_store {
 public:
  static result<weight_store> open(const std::filesystem::path& model_dir,
                                   weights_memory memory = weights_memory::mapped);

  // nullptr when absent.
  const tensor_info* find(const std::string& name) const;
  const std::map<std::string, const tensor_info*>& all() const { return index_; }
  std::uint64_t total_bytes() const;

 private:
  std::vector<safetensors_file> files_;
  std::map<std::string, const tensor_info*> index_;
};

// A tensor to write: name, dtype, shape, and its raw little-endian bytes.
struct tensor_to_write {
  std::string name;
  dtype type = dtype::f32;
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> bytes;
};

// What a header says about one tensor, for a writer that streams the data itself.
struct tensor_desc {
  std::string name;
  dtype type = dtype::f32;
  std::vector<std::int64_t> shape;
};

// The bytes that start a safetensors file (8-byte length, then the JSON header padded with
// spaces to a multiple of 8) for these tensors laid out in name order, exactly as
// write_safetensors writes them. A streaming writer writes this, then each tensor's bytes
// in name order. Errors: invalid_argument (duplicate name, negative dim, rank too high).
result<std::string> safetensors_header(const std::vector<tensor_desc>& tensors,
                                       const std::map<std::string, std::string>& metadata = {});

// Writes one safetensors file deterministically: tensors sorted by name, header JSON with
// sorted keys, padded with spaces to a multiple of 8 bytes. Errors: invalid_argument
// (bytes do not match shape x dtype), internal (I/O failure, message names the path).
status write_safetensors(const std::filesystem::path& path,
                         const std::vector<tensor_to_write>& tensors,
                         const std::map<std::string, std::string>& metadata = {});

}  // namespace dsrt::model
