#include "runtime/model/safetensors.h"

#include <cstring>

#include <gtest/gtest.h>

#include <sys/stat.h>

#include "tests/model/model_test_util.h"

namespace dsrt::model {
namespace {

using testing::f32_tensor;
using testing::json;
using testing::raw_safetensors;
using testing::read_file;
using testing::scratch_dir;
using testing::write_file;

// Opens `path`; ASSERTs failure with `code` and a message containing every part.
void expect_open_error(const std::filesystem::path& path, error_code code,
                       std::vector<std::string> parts) {
  auto f = safetensors_file::open(path);
  ASSERT_FALSE(f.ok()) << "opened " << path;
  EXPECT_EQ(f.err().code, code) << f.err().to_string();
  for (const auto& p : parts) {
    EXPECT_NE(f.err().message.find(p), std::string::npos)
        << "message '" << f.err().message << "' lacks '" << p << "'";
  }
}

// A header for one tensor "w" of F32 [2] at the given offsets.
std::string one_tensor_header(const std::string& type, json shape, json offsets) {
  return json{{"w", {{"dtype", type}, {"shape", shape}, {"data_offsets", offsets}}}}.dump();
}

TEST(Safetensors, WriteThenOpenRoundTrips) {
  scratch_dir dir;
  tensor_to_write bf;
  bf.name = "b";
  bf.type = dtype::bf16;
  bf.shape = {3};
  bf.bytes = {1, 2, 3, 4, 5, 6};
  std::vector<tensor_to_write> tensors = {f32_tensor("z", {2, 3}, 1.0f), bf,
                                          f32_tensor("a", {4})};
  auto s = write_safetensors(dir / "m.safetensors", tensors, {{"format", "pt"}});
  ASSERT_TRUE(s.ok()) << s.err().to_string();

  auto f = safetensors_file::open(dir / "m.safetensors");
  ASSERT_TRUE(f.ok()) << f.err().to_string();
  ASSERT_EQ(f->tensors().size(), 3u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  for (const auto& want : tensors) {
    const auto& got = f->tensors().at(want.name);
    EXPECT_EQ(got.type, want.type) << want.name;
    EXPECT_EQ(got.shape, want.shape) << want.name;
    ASSERT_EQ(got.size_bytes, want.bytes.size()) << want.name;
    EXPECT_EQ(std::memcmp(got.data, want.bytes.data(), want.bytes.size()), 0) << want.name;
    EXPECT_EQ(got.file, dir / "m.safetensors");
  }
  EXPECT_EQ(f->tensors().at("z").elements(), 6);
  // The data region starts 8-byte aligned.
  const std::string bytes = read_file(dir / "m.safetensors");
  std::uint64_t header_length = 0;
  std::memcpy(&header_length, bytes.data(), 8);
  EXPECT_EQ(header_length % 8, 0u);
}

TEST(Safetensors, WritingIsDeterministicWhateverTheInputOrder) {
  scratch_dir dir;
  std::vector<tensor_to_write> forward = {f32_tensor("a", {2}), f32_tensor("b", {3}, 2.f)};
  std::vector<tensor_to_write> backward = {forward[1], forward[0]};
  ASSERT_TRUE(write_safetensors(dir / "1.safetensors", forward).ok());
  ASSERT_TRUE(write_safetensors(dir / "2.safetensors", backward).ok());
  EXPECT_EQ(read_file(dir / "1.safetensors"), read_file(dir / "2.safetensors"));
  // safetensors_header is the prefix write_safetensors writes.
  auto header = safetensors_header({{"b", dtype::f32, {3}}, {"a", dtype::f32, {2}}});
  ASSERT_TRUE(header.ok());
  EXPECT_EQ(read_file(dir / "1.safetensors").substr(0, header->size()), *header);
}

TEST(Safetensors, WriteRejectsBytesNotMatchingShape) {
  scratch_dir dir;
  auto t = f32_tensor("w", {4});
  t.bytes.pop_back();
  auto s = write_safetensors(dir / "m.safetensors", {t});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.err().code, error_code::invalid_argument);
  EXPECT_NE(s.err().message.find("'w' has 15 bytes"), std::string::npos) << s.err().message;
  auto unwritable = write_safetensors(dir / "no/such/dir/m.safetensors", {f32_tensor("w", {1})});
  ASSERT_FALSE(unwritable.ok());
  EXPECT_EQ(unwritable.err().code, error_code::internal);
  EXPECT_NE(unwritable.err().message.find("no/such/dir/m.safetensors"), std::string::npos);
}

TEST(Safetensors, MissingFile) {
  scratch_dir dir;
  expect_open_error(dir / "absent.safetensors", error_code::not_found, {"absent.safetensors"});
}

TEST(Safetensors, TruncatedFiles) {
  scratch_dir dir;
  write_file(dir / "short.safetensors", "abc");
  expect_open_error(dir / "short.safetensors", error_code::corrupt_data,
                    {"short.safetensors", "3 bytes"});
  // A valid file cut in the middle of its data: the tensor now runs past the end.
  ASSERT_TRUE(write_safetensors(dir / "cut.safetensors", {f32_tensor("w", {16})}).ok());
  std::string bytes = read_file(dir / "cut.safetensors");
  write_file(dir / "cut.safetensors", bytes.substr(0, bytes.size() - 10));
  expect_open_error(dir / "cut.safetensors", error_code::corrupt_data,
                    {"cut.safetensors", "'w'", "past the end"});
}

TEST(Safetensors, HeaderLengthPastEndOfFile) {
  scratch_dir dir;
  const std::string header = one_tensor_header("F32", {2}, {0, 8});
  write_file(dir / "m.safetensors", raw_safetensors(header, std::string(8, '\0'), 4096));
  expect_open_error(dir / "m.safetensors", error_code::corrupt_data,
                    {"m.safetensors", "header length 4096", "past the end"});
  write_file(dir / "huge.safetensors", raw_safetensors(header, "", 1ull << 40));
  expect_open_error(dir / "huge.safetensors", error_code::corrupt_data,
                    {"huge.safetensors", "exceeds the limit"});
}

TEST(Safetensors, BadJsonHeader) {
  scratch_dir dir;
  write_file(dir / "m.safetensors", raw_safetensors("{\"w\": {\"dtype\": ", ""));
  expect_open_error(dir / "m.safetensors", error_code::corrupt_data,
                    {"m.safetensors", "not valid JSON"});
  write_file(dir / "a.safetensors", raw_safetensors("[1, 2]", ""));
  expect_open_error(dir / "a.safetensors", error_code::corrupt_data, {"not a JSON object"});
  write_file(dir / "e.safetensors", raw_safetensors(R"({"w": {"dtype": "F32"}})", ""));
  expect_open_error(dir / "e.safetensors", error_code::corrupt_data, {"'w'", "no shape"});
  write_file(dir / "meta.safetensors", raw_safetensors(R"({"__metadata__": {"n": 1}})", ""));
  expect_open_error(dir / "meta.safetensors", error_code::corrupt_data, {"__metadata__"});
}

TEST(Safetensors, ADeeplyNestedHeaderIsCorruptData) {
  scratch_dir dir;
  const std::size_t deep = 100'000;
  const std::string header = R"({"w": {"dtype": "F32", "shape": )" + std::string(deep, '[') + std::string(deep, ']') +
                             R"(, "data_offsets": [0, 8]}})";
  write_file(dir / "m.safetensors", raw_safetensors(header, std::string(8, '\0')));
  expect_open_error(dir / "m.safetensors", error_code::corrupt_data, {"m.safetensors", "nested"});
}

// A FIFO where the weights should be: refused, not waited on for a writer forever.
TEST(Safetensors, AFifoInPlaceOfTheFileIsNotARegularFile) {
  scratch_dir dir;
  ASSERT_EQ(::mkfifo((dir / "m.safetensors").c_str(), 0600), 0);
  expect_open_error(dir / "m.safetensors", error_code::not_found, {"m.safetensors", "not a regular file"});
}

TEST(Safetensors, OffsetsPastTheEnd) {
  scratch_dir dir;
  write_file(dir / "m.safetensors",
             raw_safetensors(one_tensor_header("F32", {4}, {0, 16}), std::string(8, '\0')));
  expect_open_error(dir / "m.safetensors", error_code::corrupt_data,
                    {"m.safetensors", "'w'", "[0, 16]", "past the end of the data region (8"});
  write_file(dir / "rev.safetensors",
             raw_safetensors(one_tensor_header("F32", {0}, {8, 4}), std::string(8, '\0')));
  expect_open_error(dir / "rev.safetensors", error_code::corrupt_data, {"'w'", "end before"});
  write_file(dir / "neg.safetensors",
             raw_safetensors(one_tensor_header("F32", {1}, {-4, 0}), std::string(8, '\0')));
  expect_open_error(dir / "neg.safetensors", error_code::corrupt_data, {"'w'", "data_offsets"});
}

TEST(Safetensors, OverlappingTensors) {
  scratch_dir dir;
  const json header = {
      {"a", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}},
      {"b", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {4, 12}}}}};
  write_file(dir / "m.safetensors", raw_safetensors(header.dump(), std::string(12, '\0')));
  expect_open_error(dir / "m.safetensors", error_code::corrupt_data,
                    {"m.safetensors", "'b'", "overlaps", "'a'"});
}

TEST(Safetensors, SizeNotMatchingShapeTimesDtype) {
  scratch_dir dir;
  write_file(dir / "m.safetensors",
             raw_safetensors(one_tensor_header("BF16", {3}, {0, 8}), std::string(8, '\0')));
  expect_open_error(dir / "m.safetensors", error_code::corrupt_data,
                    {"m.safetensors", "'w'", "holds 8 bytes", "[3] of BF16 needs 6"});
}

TEST(Safetensors, BadShapes) {
  scratch_dir dir;
  write_file(dir / "neg.safetensors",
             raw_safetensors(one_tensor_header("F32", {-2}, {0, 8}), std::string(8, '\0')));
  expect_open_error(dir / "neg.safetensors", error_code::corrupt_data, {"'w'", "shape [-2]"});
  write_file(dir / "rank.safetensors",
             raw_safetensors(one_tensor_header("F32", json::array({1, 1, 1, 1, 1, 1, 1, 1, 1}),
                                               {0, 4}),
                             std::string(4, '\0')));
  expect_open_error(dir / "rank.safetensors", error_code::corrupt_data, {"'w'", "rank 9"});
  write_file(dir / "big.safetensors",
             raw_safetensors(one_tensor_header("F32", {1ull << 40, 1ull << 40}, {0, 4}),
                             std::string(4, '\0')));
  expect_open_error(dir / "big.safetensors", error_code::corrupt_data, {"'w'", "too large"});
}

TEST(Safetensors, Dtypes) {
  scratch_dir dir;
  write_file(dir / "i64.safetensors",
             raw_safetensors(one_tensor_header("I64", {1}, {0, 8}), std::string(8, '\0')));
  expect_open_error(dir / "i64.safetensors", error_code::unsupported,
                    {"i64.safetensors", "'w'", "I64"});
  write_file(dir / "xyz.safetensors",
             raw_safetensors(one_tensor_header("XYZ", {1}, {0, 8}), std::string(8, '\0')));
  expect_open_error(dir / "xyz.safetensors", error_code::corrupt_data,
                    {"xyz.safetensors", "'w'", "unknown dtype 'XYZ'"});
}

TEST(WeightStore, SingleFile) {
  scratch_dir dir;
  ASSERT_TRUE(write_safetensors(dir / "model.safetensors",
                                {f32_tensor("a", {2}), f32_tensor("b", {3})})
                  .ok());
  auto store = weight_store::open(dir.path());
  ASSERT_TRUE(store.ok()) << store.err().to_string();
  EXPECT_EQ(store->all().size(), 2u);
  ASSERT_NE(store->find("b"), nullptr);
  EXPECT_EQ(store->find("b")->shape, (std::vector<std::int64_t>{3}));
  EXPECT_EQ(store->find("c"), nullptr);
  EXPECT_EQ(store->total_bytes(), 20u);
}

class ShardedStore : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(write_safetensors(dir_ / "s1.safetensors",
                                  {f32_tensor("a", {2}), f32_tensor("b", {3}, 1.f)})
                    .ok());
    ASSERT_TRUE(write_safetensors(dir_ / "s2.safetensors", {f32_tensor("c", {4}, 2.f)}).ok());
  }
  void write_index(const json& weight_map) {
    write_file(dir_ / "model.safetensors.index.json",
               json{{"metadata", {{"total_size", 36}}}, {"weight_map", weight_map}}.dump());
  }
  void expect_store_error(error_code code, std::vector<std::string> parts) {
    auto store = weight_store::open(dir_.path());
    ASSERT_FALSE(store.ok());
    EXPECT_EQ(store.err().code, code) << store.err().to_string();
    for (const auto& p : parts) {
      EXPECT_NE(store.err().message.find(p), std::string::npos)
          << "message '" << store.err().message << "' lacks '" << p << "'";
    }
  }
  scratch_dir dir_;
};

TEST_F(ShardedStore, LoadsEveryShard) {
  write_index({{"a", "s1.safetensors"}, {"b", "s1.safetensors"}, {"c", "s2.safetensors"}});
  auto store = weight_store::open(dir_.path());
  ASSERT_TRUE(store.ok()) << store.err().to_string();
  EXPECT_EQ(store->all().size(), 3u);
  EXPECT_EQ(store->find("c")->file, dir_ / "s2.safetensors");
  float c1 = 0;
  std::memcpy(&c1, static_cast<const char*>(store->find("c")->data) + 4, 4);
  EXPECT_FLOAT_EQ(c1, 2.001f);
  EXPECT_EQ(store->total_bytes(), 36u);
}

TEST_F(ShardedStore, MissingShard) {
  write_index({{"a", "s1.safetensors"}, {"c", "s3.safetensors"}});
  expect_store_error(error_code::not_found, {"model.safetensors.index.json", "s3.safetensors"});
}

TEST_F(ShardedStore, TensorMissingFromItsShard) {
  write_index({{"a", "s1.safetensors"}, {"c", "s1.safetensors"}, {"x", "s2.safetensors"}});
  expect_store_error(error_code::corrupt_data, {"'c'", "missing from shard", "s1.safetensors"});
}

TEST_F(ShardedStore, TensorInTwoShards) {
  ASSERT_TRUE(write_safetensors(dir_ / "s2.safetensors", {f32_tensor("a", {2})}).ok());
  write_index({{"a", "s1.safetensors"}, {"b", "s2.safetensors"}});
  expect_store_error(error_code::corrupt_data, {"'a'", "s1.safetensors", "s2.safetensors"});
}

TEST_F(ShardedStore, BadIndex) {
  write_file(dir_ / "model.safetensors.index.json", "{\"weight_map\": ");
  expect_store_error(error_code::corrupt_data, {"model.safetensors.index.json", "not valid JSON"});
  write_file(dir_ / "model.safetensors.index.json", "{\"metadata\": {}}");
  expect_store_error(error_code::corrupt_data, {"no weight_map"});
  write_index({{"a", "../s1.safetensors"}});
  expect_store_error(error_code::corrupt_data, {"'a'", "not a file name"});
}

TEST_F(ShardedStore, CorruptShardIsNamed) {
  write_file(dir_ / "s2.safetensors", "garbage");
  write_index({{"a", "s1.safetensors"}, {"c", "s2.safetensors"}});
  expect_store_error(error_code::corrupt_data, {"s2.safetensors", "7 bytes"});
}

TEST(WeightStore, NoWeights) {
  scratch_dir dir;
  auto store = weight_store::open(dir.path());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.err().code, error_code::not_found);
  EXPECT_NE(store.err().message.find("model.safetensors"), std::string::npos)
      << store.err().message;
}

}  // namespace
}  // namespace dsrt::model
