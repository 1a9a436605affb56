#include "apps/dsgen/weight_writer.h"

#include <algorithm>
#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "apps/dsgen/normal_rng.h"
#include "kernels/assert.h"
#include "runtime/model/safetensors.h"

namespace dsrt::dsgen {
namespace {

// Values are drawn in chunks with their own seed, so threads can fill chunks in any order.
constexpr std::size_t chunk_elements = 1 << 16;
// Chunks generated per write; bounds memory to block_chunks * chunk_elements * 4 bytes.
constexpr std::size_t block_chunks = 128;
constexpr float init_stddev = 0.02f;

class output_file {
 public:
  static result<output_file> create(const std::filesystem::path& path) {
    output_file f;
    f.path_ = path;
    f.file_ = std::fopen(path.c_str(), "wb");
    if (!f.file_) {
      return make_error(error_code::internal, "{}: cannot create: {}", path.string(),
                        std::strerror(errno));
    }
    return f;
  }
  output_file() = default;
  output_file(output_file&& o) noexcept
      : path_(std::move(o.path_)), file_(std::exchange(o.file_, nullptr)) {}
  output_file& operator=(output_file&&) = delete;
  ~output_file() {
    if (file_) std::fclose(file_);
  }

  status write(const void* data, std::size_t bytes) {
    if (bytes > 0 && std::fwrite(data, 1, bytes, file_) != bytes) {
      return make_error(error_code::internal, "{}: write failed: {}", path_.string(),
                        std::strerror(errno));
    }
    return ok_status();
  }

  status close() {
    const int rc = std::fclose(std::exchange(file_, nullptr));
    if (rc != 0) {
      return make_error(error_code::internal, "{}: close failed: {}", path_.string(),
                        std::strerror(errno));
    }
    return ok_status();
  }

 private:
  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
};

void store_values(const float* values, std::size_t n, dtype type, std::uint8_t* out) {
  if (type == dtype::f32) {
    std::memcpy(out, values, n * 4);  // little-endian hosts only, like the loader
    return;
  }
  auto convert = type == dtype::f16 ? f32_to_f16 : f32_to_bf16;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint16_t h = convert(values[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}

// Fills chunks [first, first + count) of a tensor into `out` (which starts at chunk
// `first`), spreading chunks over threads.
void fill_block(const tensor_plan& t, std::uint64_t name_seed, std::uint64_t seed, dtype type,
                std::size_t first, std::size_t count, unsigned threads, std::uint8_t* out) {
  const auto elements = std::size_t(t.elements());
  auto work = [&](unsigned worker) {
    std::vector<float> values(chunk_elements);
    for (std::size_t c = worker; c < count; c += threads) {
      const std::size_t begin = (first + c) * chunk_elements;
      const std::size_t n = std::min(chunk_elements, elements - begin);
      if (t.fill == init::ones) {
        std::fill_n(values.begin(), n, 1.0f);
      } else {
        fill_normal(mix_seed(seed, name_seed, first + c), init_stddev, values.data(), n);
      }
      store_values(values.data(), n, type, out + c * chunk_elements * dtype_size(type));
    }
  };
  if (threads <= 1 || count <= 1) {
    work(0);
    return;
  }
  std::vector<std::thread> pool;
  for (unsigned w = 1; w < threads; ++w) pool.emplace_back(work, w);
  work(0);
  for (auto& th : pool) th.join();
}

dtype type_of(const tensor_plan& t, const weight_write_options& o) {
  return t.type.value_or(o.type);
}

// The f32 values a normal tensor `name` of `elements` values has (the same values a bf16
// or f32 model of the same seed stores, before rounding).
std::vector<float> normal_values(const std::string& name, std::int64_t elements,
                                 const weight_write_options& o) {
  const tensor_plan plan{name, {elements}, init::normal};
  std::vector<float> values(static_cast<std::size_t>(elements));
  const std::size_t chunks = (values.size() + chunk_elements - 1) / chunk_elements;
  fill_block(plan, fnv1a64(name), o.seed, dtype::f32, 0, chunks, std::max(1u, o.threads),
             reinterpret_cast<std::uint8_t*>(values.data()));
  return values;
}

// DeepSeek-V3's block quantisation of a [rows, cols] weight: per fp8_block x fp8_block
// block, scale = amax / 448 (the largest e4m3 value), stored = e4m3(value / scale).
struct fp8_blocks {
  std::vector<std::uint8_t> data;
  std::vector<float> scales;
};

fp8_blocks quantize_fp8(const std::vector<float>& w, std::int64_t rows, std::int64_t cols) {
  constexpr float e4m3_max = 448.0f;
  const std::int64_t block_rows = (rows + fp8_block - 1) / fp8_block;
  const std::int64_t block_cols = (cols + fp8_block - 1) / fp8_block;
  fp8_blocks q;
  q.data.resize(w.size());
  q.scales.resize(std::size_t(block_rows * block_cols));
  for (std::int64_t br = 0; br < block_rows; ++br) {
    for (std::int64_t bc = 0; bc < block_cols; ++bc) {
      const std::int64_t r_end = std::min(rows, (br + 1) * fp8_block);
      const std::int64_t c_end = std::min(cols, (bc + 1) * fp8_block);
      float amax = 0.0f;
      for (std::int64_t r = br * fp8_block; r < r_end; ++r)
        for (std::int64_t c = bc * fp8_block; c < c_end; ++c)
          amax = std::max(amax, std::abs(w[std::size_t(r * cols + c)]));
      const float scale = amax > 0.0f ? amax / e4m3_max : 1.0f;
      q.scales[std::size_t(br * block_cols + bc)] = scale;
      for (std::int64_t r = br * fp8_block; r < r_end; ++r)
        for (std::int64_t c = bc * fp8_block; c < c_end; ++c)
          q.data[std::size_t(r * cols + c)] = f32_to_f8_e4m3(w[std::size_t(r * cols + c)] / scale);
    }
  }
  return q;
}

// fp8_weight / fp8_scales: the whole weight is generated (in memory) and quantised; the
// scales tensor regenerates its weight to get the same blocks.
status write_fp8_tensor(output_file& out, const tensor_plan& t, const weight_write_options& o) {
  const bool weight = t.fill == init::fp8_weight;
  const std::string& name = weight ? t.name : t.source;
  const auto& shape = weight ? t.shape : t.source_shape;
  DSRT_ASSERT(shape.size() == 2, "fp8 tensor {} must be 2-D", name);
  const auto q = quantize_fp8(normal_values(name, shape[0] * shape[1], o), shape[0], shape[1]);
  if (weight) return out.write(q.data.data(), q.data.size());
  return out.write(q.scales.data(), q.scales.size() * sizeof(float));  // little-endian hosts
}

status write_tensor(output_file& out, const tensor_plan& t, const weight_write_options& o) {
  if (t.fill == init::fp8_weight || t.fill == init::fp8_scales) return write_fp8_tensor(out, t, o);
  const dtype type = type_of(t, o);
  const auto elements = std::size_t(t.elements());
  const std::size_t chunks = (elements + chunk_elements - 1) / chunk_elements;
  const std::uint64_t name_seed = fnv1a64(t.name);
  std::vector<std::uint8_t> block(std::min(chunks, block_chunks) * chunk_elements *
                                  dtype_size(type));
  for (std::size_t first = 0; first < chunks; first += block_chunks) {
    const std::size_t count = std::min(block_chunks, chunks - first);
    fill_block(t, name_seed, o.seed, type, first, count, std::max(1u, o.threads), block.data());
    const std::size_t done = first * chunk_elements;
    const std::size_t n = std::min(count * chunk_elements, elements - done);
    DSRT_TRY(out.write(block.data(), n * dtype_size(type)));
  }
  return ok_status();
}

}  // namespace

result<weight_write_summary> write_weights(const std::filesystem::path& dir,
                                           const std::vector<tensor_plan>& tensors,
                                           const weight_write_options& o) {
  // safetensors lays tensors out in name order; generate them in that order too.
  std::vector<const tensor_plan*> sorted;
  for (const auto& t : tensors) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(),
            [](const tensor_plan* a, const tensor_plan* b) { return a->name < b->name; });

  std::vector<std::vector<const tensor_plan*>> shards(1);
  std::uint64_t shard_bytes = 0;
  weight_write_summary summary;
  for (const auto* t : sorted) {
    const std::uint64_t bytes = std::uint64_t(t->elements()) * dtype_size(type_of(*t, o));
    if (!shards.back().empty() && shard_bytes + bytes > o.shard_bytes_max) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(t);
    shard_bytes += bytes;
    summary.total_bytes += bytes;
  }

  const std::map<std::string, std::string> metadata = {{"format", "pt"}};
  nlohmann::json weight_map = nlohmann::json::object();
  for (std::size_t s = 0; s < shards.size(); ++s) {
    const std::string name =
        shards.size() == 1
            ? std::string("model.safetensors")
            : fmt::format("model-{:05}-of-{:05}.safetensors", s + 1, shards.size());
    std::vector<model::tensor_desc> descs;
    for (const auto* t : shards[s]) {
      descs.push_back({t->name, type_of(*t, o), t->shape});
      weight_map[t->name] = name;
    }
    auto header = model::safetensors_header(descs, metadata);
    if (!header) return header.err();
    auto out = output_file::create(dir / name);
    if (!out) return out.err();
    DSRT_TRY(out->write(header->data(), header->size()));
    for (const auto* t : shards[s]) DSRT_TRY(write_tensor(*out, *t, o));
    DSRT_TRY(out->close());
    summary.files.push_back(name);
  }
  if (shards.size() > 1) {
    const nlohmann::json index = {{"metadata", {{"total_size", summary.total_bytes}}},
                                  {"weight_map", weight_map}};
    const auto path = dir / "model.safetensors.index.json";
    std::ofstream f(path, std::ios::binary);
    f << index.dump(2) << "\n";
    f.close();
    if (!f) {
      return make_error(error_code::internal, "{}: write failed", path.string());
    }
    summary.files.push_back("model.safetensors.index.json");
  }
  return summary;
}

}  // namespace dsrt::dsgen
