// dsrun tokenize: lines of text on stdin -> one JSON array of token ids per line on
// stdout; with --decode, JSON arrays -> text lines. A bad line is reported on stderr with
// its number and skipped (an empty line is printed in its place, so output lines still
// match input lines); the exit code is 1 if any line was bad.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "apps/dsrun/commands.h"
#include "runtime/tokenizer/tokenizer.h"

namespace dsrt::apps {
namespace {

constexpr std::size_t line_bytes_max = 16u << 20;

// Reads one line without its newline, keeping at most line_bytes_max + 1 bytes of it (so an
// endless line cannot exhaust memory; the caller sees it is too long). False at the end.
bool read_line(std::istream& in, std::string& line) {
  line.clear();
  bool any = false;
  for (int ch; (ch = in.get()) != std::char_traits<char>::eof();) {
    any = true;
    if (ch == '\n') return true;
    if (line.size() <= line_bytes_max) line.push_back(char(ch));
  }
  return any;
}

struct tokenize_flags {
  std::string model_dir;
  bool decode = false;
  bool no_special = false;
};

int run_tokenize(const tokenize_flags& f) {
  auto tok = tokenizer::tokenizer::load(f.model_dir);
  if (!tok) {
    std::fprintf(stderr, "dsrt: %s\n", tok.err().to_string().c_str());
    return 1;
  }
  int bad = 0;
  std::string line;
  for (std::size_t number = 1; read_line(std::cin, line); ++number) {
    if (line.size() > line_bytes_max) {
      std::fprintf(stderr, "dsrt: line %zu: longer than %zu bytes\n", number, line_bytes_max);
      std::cout << '\n';
      ++bad;
      continue;
    }
    if (!f.decode) {
      std::cout << nlohmann::json(tok->encode(line, !f.no_special)).dump() << '\n';
      continue;
    }
    auto parsed = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    std::vector<std::int32_t> ids;
    bool ok = parsed.is_array();
    for (const auto& v : ok ? parsed : nlohmann::json::array()) {
      if (!v.is_number_integer() || v.get<std::int64_t>() < 0 ||
          v.get<std::int64_t>() >= tok->vocab_size()) {
        ok = false;
        break;
      }
      ids.push_back(v.get<std::int32_t>());
    }
    if (!ok) {
      std::fprintf(stderr, "dsrt: line %zu: expected a JSON array of token ids in [0, %d)\n",
                   number, tok->vocab_size());
      std::cout << '\n';
      ++bad;
      continue;
    }
    std::cout << tok->decode(ids, f.no_special) << '\n';
  }
  std::cout.flush();
  return bad == 0 ? 0 : 1;
}

}  // namespace

std::function<int()> add_tokenize_command(CLI::App& app) {
  auto flags = std::make_shared<tokenize_flags>();
  auto* cmd = app.add_subcommand("tokenize", "text lines on stdin -> JSON arrays of token ids (or back with --decode)");
  cmd->add_option("--model", flags->model_dir, "model directory (tokenizer.json)")->required();
  cmd->add_flag("--decode", flags->decode, "read JSON arrays of ids, print the text");
  cmd->add_flag("--no-special", flags->no_special,
                "do not add BOS when encoding; skip special tokens when decoding");
  return [flags] { return run_tokenize(*flags); };
}

}  // namespace dsrt::apps
