// The tools as a user runs them: real processes, real files, exit codes and output checked.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace {

namespace fs = std::filesystem;

const std::string bin = DSRT_BINARY_DIR "/apps";

struct command_result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs a shell command with stdout and stderr captured to files; `input` goes to stdin.
command_result run(const std::string& command, const std::string& input = "") {
  static int counter = 0;
  const fs::path dir = fs::temp_directory_path() / ("dsrt-apps-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string id = std::to_string(counter++);
  const fs::path in = dir / (id + ".in"), out = dir / (id + ".out"), err = dir / (id + ".err");
  std::ofstream(in, std::ios::binary) << input;
  const std::string full = command + " < " + in.string() + " > " + out.string() + " 2> " + err.string();
  const int status = std::system(full.c_str());
  command_result r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

class Apps : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = fs::temp_directory_path() / ("dsrt-apps-model-" + std::to_string(::getpid()));
    const auto r = run(bin + "/dsgen/dsgen --preset tiny-llama --seed 3 --force --out " + model_.string());
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(model_, ec);
    fs::remove_all(fs::temp_directory_path() / ("dsrt-apps-test-" + std::to_string(::getpid())), ec);
  }
  static fs::path model_;
};
fs::path Apps::model_;

TEST_F(Apps, EveryBinaryAnswersHelp) {
  for (const std::string tool : {"dsgen/dsgen", "dsrun/dsrun", "dsbench/dsbench"}) {
    const auto r = run(bin + "/" + tool + " --help");
    EXPECT_EQ(r.exit_code, 0) << tool;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << tool << ": " << r.out;
  }
  for (const std::string sub : {"dsrun/dsrun generate", "dsrun/dsrun tokenize", "dsbench/dsbench engine"}) {
    const auto r = run(bin + "/" + sub + " --help");
    EXPECT_EQ(r.exit_code, 0) << sub;
    EXPECT_NE(r.out.find("--model"), std::string::npos) << sub << ": " << r.out;
  }
}

TEST_F(Apps, GenerateStreamsTheRequestedNumberOfTokens) {
  const auto r = run(bin + "/dsrun/dsrun generate --model " + model_.string() +
                     " --prompt 'The cat' --max-tokens 7 --temperature 0.7 --seed 5");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The random model may stop early on an end-of-turn token; it never exceeds the limit.
  const auto at = r.err.find(" generated");
  ASSERT_NE(at, std::string::npos) << r.err;
  const int generated = std::stoi(r.err.substr(r.err.rfind(' ', at - 1) + 1));
  EXPECT_GE(generated, 1) << r.err;
  EXPECT_LE(generated, 7) << r.err;
  // Same seed, same text.
  const auto again = run(bin + "/dsrun/dsrun generate --model " + model_.string() +
                         " --prompt 'The cat' --max-tokens 7 --temperature 0.7 --seed 5 --quiet");
  EXPECT_EQ(again.out, r.out);
  EXPECT_EQ(again.err, "");
}

TEST_F(Apps, GenerateWithChatTemplate) {
  const auto r = run(bin + "/dsrun/dsrun generate --model " + model_.string() +
                     " --chat --system 'Be brief' --prompt Hi --max-tokens 4");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("prompt tokens"), std::string::npos) << r.err;
}

TEST_F(Apps, GenerateReportsBadInputWithTypedErrors) {
  auto r = run(bin + "/dsrun/dsrun generate --model /nonexistent/model --prompt x");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("NOT_FOUND"), std::string::npos) << r.err;

  r = run(bin + "/dsrun/dsrun generate --model " + model_.string() + " --prompt x --top-p 0");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("INVALID_ARGUMENT"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("top_p"), std::string::npos) << r.err;

  r = run(bin + "/dsrun/dsrun generate --model " + model_.string() + " --prompt x --max-tokens 100000");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("exceeds the context"), std::string::npos) << r.err;

  r = run(bin + "/dsrun/dsrun generate --model " + model_.string() + " --prompt x --isa avx9000");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--isa avx9000"), std::string::npos) << r.err;
}

TEST_F(Apps, TokenizeRoundTripsAndReportsBadLines) {
  const std::string text = "hello world\nsecond line, with 123 digits\n";
  const auto enc = run(bin + "/dsrun/dsrun tokenize --model " + model_.string(), text);
  ASSERT_EQ(enc.exit_code, 0) << enc.err;
  std::istringstream lines(enc.out);
  std::string line;
  int count = 0;
  while (std::getline(lines, line)) {
    const auto ids = nlohmann::json::parse(line);
    ASSERT_TRUE(ids.is_array()) << line;
    ASSERT_GT(ids.size(), 1u) << line;
    ++count;
  }
  EXPECT_EQ(count, 2);

  const auto dec = run(bin + "/dsrun/dsrun tokenize --decode --no-special --model " + model_.string(), enc.out);
  ASSERT_EQ(dec.exit_code, 0) << dec.err;
  EXPECT_EQ(dec.out, text);

  const auto bad = run(bin + "/dsrun/dsrun tokenize --decode --model " + model_.string(), "[1, 2]\nnot json\n[99999999]\n");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("line 2"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("line 3"), std::string::npos) << bad.err;
  EXPECT_EQ(std::count(bad.out.begin(), bad.out.end(), '\n'), 3) << "one output line per input line";
}

TEST_F(Apps, EngineBenchWritesTheDocumentedJson) {
  const fs::path json_path = model_ / "bench.json";
  const auto r = run(bin + "/dsbench/dsbench engine --model " + model_.string() +
                     " --batch 1,3 --prompt-len 8 --gen 4 --bw-buffer-mb 128 --json " + json_path.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(read_file(json_path));
  EXPECT_GT(j.at("mem_bw_gbps").get<double>(), 0.0);
  ASSERT_EQ(j.at("results").size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& row = j["results"][i];
    EXPECT_EQ(row.at("batch").get<int>(), i == 0 ? 1 : 3);
    for (const char* field : {"prefill_tokens_per_s", "decode_tokens_per_s", "roofline_tokens_per_s",
                              "roofline_ratio", "mem_bw_gbps"})
      EXPECT_GT(row.at(field).get<double>(), 0.0) << field << " of batch row " << i;
  }
}

}  // namespace
