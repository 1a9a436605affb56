#pragma once
// Running the tools as a user does, for tests/apps: a shell command with its output and exit
// code, and the Apps fixture, whose suite shares one tiny-llama model.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace dsrt::test {

namespace fs = std::filesystem;

inline const std::string bin = DSRT_BINARY_DIR "/apps";

struct command_result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Runs a shell command with stdout and stderr captured to files; `input` goes to stdin.
inline command_result run(const std::string& command, const std::string& input = "") {
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
  inline static fs::path model_;
};

}  // namespace dsrt::test
