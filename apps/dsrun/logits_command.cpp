// dsrun logits: one forward over a whole prompt, every position's logits written to a JSON
// file. It exists to hold the engine against other implementations (scripts/hf_reference/
// compares it with Hugging Face transformers), so it does nothing a comparison would have to
// undo: no sampling, no chunking, no generation — one step with all_logits.
//
// Output: {"model": DIR, "token_ids": [...], "vocab_size": V, "logits": [[V numbers], ...]},
// one row per prompt position, each float written in the shortest form that reads back as
// the same float. A non-finite logit cannot be a JSON number: it is written as null and the
// command fails (exit 1) after writing the file, so the file can still be inspected.
#include <nlohmann/json.hpp>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "apps/common/engine_setup.h"
#include "apps/dsrun/commands.h"
#include "runtime/engine/block_manager.h"

namespace dsrt::apps {
namespace {

// Prompt positions one run may carry. The output holds this many rows of vocab_size floats
// (for a 129,280-token vocabulary, 512 rows are ~265 MB in memory and ~600 MB of JSON).
constexpr std::size_t logits_tokens_max = 512;

struct logits_flags {
  engine_flags engine;
  std::string prompt;
  std::string token_ids;   // "1,2,3"
  bool chat = false;
  std::string out_path;
};

// "1, 2,3" -> ids, each in [0, vocab_size). Errors: invalid_argument naming the bad entry.
result<std::vector<std::int32_t>> parse_token_ids(const std::string& text, std::int64_t vocab_size) {
  std::vector<std::int32_t> ids;
  std::size_t at = 0;
  for (std::size_t index = 0; at <= text.size(); ++index) {
    std::size_t end = text.find(',', at);
    if (end == std::string::npos) end = text.size();
    std::size_t b = at, e = end;
    while (b < e && text[b] == ' ') ++b;
    while (e > b && text[e - 1] == ' ') --e;
    std::int64_t id = -1;
    const auto [ptr, ec] = std::from_chars(text.data() + b, text.data() + e, id);
    if (b == e || ec != std::errc() || ptr != text.data() + e)
      return make_error(error_code::invalid_argument,
                        "--token-ids: entry {} ('{}') is not an integer (expected e.g. 1,2,3)",
                        index, text.substr(b, e - b));
    if (id < 0 || id >= vocab_size)
      return make_error(error_code::invalid_argument,
                        "--token-ids: entry {} (id {}) is outside the vocabulary [0, {})", index,
                        id, vocab_size);
    if (ids.size() >= logits_tokens_max)
      return make_error(error_code::invalid_argument,
                        "--token-ids: more than {} tokens (logits_tokens_max)", logits_tokens_max);
    ids.push_back(std::int32_t(id));
    at = end + 1;
  }
  return ids;
}

result<std::vector<std::int32_t>> prompt_tokens(const logits_flags& f, const loaded_engine& e) {
  if (f.prompt.empty() == f.token_ids.empty())
    return make_error(error_code::invalid_argument,
                      "give exactly one of --prompt (non-empty) and --token-ids");
  if (f.chat && f.prompt.empty())
    return make_error(error_code::invalid_argument,
                      "--chat formats --prompt; it does not apply to --token-ids");
  std::vector<std::int32_t> ids;
  if (!f.token_ids.empty()) {
    auto parsed = parse_token_ids(f.token_ids, e.model->config().vocab_size);
    if (!parsed) return parsed.err();
    ids = std::move(parsed).value();
  } else if (f.chat) {
    const std::vector<tokenizer::chat_message> messages{{"user", f.prompt}};
    auto text = tokenizer::format_chat(*e.tokenizer, messages);
    if (!text) return text.err();
    ids = e.tokenizer->encode(*text, /*add_special=*/false);  // the template adds BOS itself
  } else {
    ids = e.tokenizer->encode(f.prompt);
  }
  if (ids.empty()) return make_error(error_code::invalid_argument, "the prompt has no tokens");
  if (ids.size() > logits_tokens_max)
    return make_error(error_code::invalid_argument,
                      "the prompt has {} tokens, more than logits_tokens_max ({})", ids.size(),
                      logits_tokens_max);
  const auto& c = e.model->config();
  if (std::int64_t(ids.size()) > c.max_position_embeddings)
    return make_error(error_code::invalid_argument,
                      "the prompt has {} tokens, more than the context of {} tokens", ids.size(),
                      c.max_position_embeddings);
  // The tokenizer may know ids the model's embedding lacks (a mismatched tokenizer.json).
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= c.vocab_size)
      return make_error(error_code::invalid_argument,
                        "prompt token {} (id {}) is outside the model's vocabulary [0, {})", i,
                        ids[i], c.vocab_size);
  return ids;
}

// Writes the JSON document; returns the number of non-finite logits (written as null).
result<std::int64_t> write_json(const std::string& path, const std::string& model_dir,
                                const std::vector<std::int32_t>& ids, std::int64_t vocab,
                                const std::vector<float>& logits) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!file) return make_error(error_code::invalid_argument, "--out {}: cannot open for writing", path);
  std::FILE* out = file.get();
  std::fprintf(out, "{\"model\": %s, \"token_ids\": %s, \"vocab_size\": %lld, \"logits\": [",
               nlohmann::json(model_dir).dump().c_str(), nlohmann::json(ids).dump().c_str(),
               static_cast<long long>(vocab));
  std::int64_t non_finite = 0;
  char number[32];
  for (std::size_t row = 0; row < ids.size(); ++row) {
    std::fputs(row == 0 ? "\n[" : ",\n[", out);
    for (std::int64_t col = 0; col < vocab; ++col) {
      const float v = logits[row * std::size_t(vocab) + std::size_t(col)];
      if (col > 0) std::fputc(',', out);
      if (!std::isfinite(v)) {
        ++non_finite;
        std::fputs("null", out);
        continue;
      }
      // Shortest round-trip form: "0.0123", "-1.5e-05" — all valid JSON numbers.
      const auto [end, ec] = std::to_chars(number, number + sizeof number, v);
      DSRT_ASSERT(ec == std::errc(), "to_chars of a float cannot overflow {} bytes", sizeof number);
      std::fwrite(number, 1, std::size_t(end - number), out);
    }
    std::fputc(']', out);
  }
  std::fputs("\n]}\n", out);
  if (std::ferror(out) || std::fclose(file.release()) != 0)
    return make_error(error_code::internal, "--out {}: write failed", path);
  return non_finite;
}

int run_logits(const logits_flags& f) {
  auto loaded = load_engine(f.engine);
  if (!loaded) return report(loaded.err());
  auto& e = *loaded;
  auto ids = prompt_tokens(f, e);
  if (!ids) return report(ids.err());
  const std::int64_t n = std::int64_t(ids->size());

  engine::block_manager blocks(e.model->kv_blocks(), e.model->kv_block_tokens());
  engine::sequence_blocks seq;
  std::vector<engine::block_copy> copies;
  if (!blocks.reserve(seq, n, copies))
    return report(make_error(error_code::invalid_argument,
                             "{} tokens need {} KV blocks, the cache has {} (raise --kv-cache-mb)", n,
                             blocks.blocks_needed(seq, n), e.model->kv_blocks()));
  // A fresh sequence shares no block, so there is nothing to copy.
  DSRT_ASSERT(copies.empty(), "copies={}", copies.size());

  const engine::step_sequence step{*ids, 0, seq.table, /*all_logits=*/true};
  std::vector<float> logits;
  if (auto s = e.model->forward(std::span(&step, 1), logits); !s) return report(s.err());
  const std::int64_t vocab = e.model->config().vocab_size;
  DSRT_ASSERT(std::int64_t(logits.size()) == n * vocab, "logits={} tokens={} vocab={}",
              logits.size(), n, vocab);

  auto non_finite = write_json(f.out_path, f.engine.model_dir, *ids, vocab, logits);
  if (!non_finite) return report(non_finite.err());
  if (*non_finite > 0) {
    std::fprintf(stderr, "dsrt: %lld of %lld logits are not finite (written as null to %s)\n",
                 static_cast<long long>(*non_finite), static_cast<long long>(n * vocab),
                 f.out_path.c_str());
    return 1;
  }
  return 0;
}

}  // namespace

std::function<int()> add_logits_command(CLI::App& app) {
  auto flags = std::make_shared<logits_flags>();
  auto* cmd = app.add_subcommand(
      "logits",
      "one forward over the prompt; write every position's logits to a JSON file "
      "{\"model\", \"token_ids\", \"vocab_size\", \"logits\": [[vocab_size numbers] per position]}");
  add_engine_flags(*cmd, flags->engine);
  cmd->add_option("--prompt", flags->prompt,
                  "prompt text (tokenized with the model's tokenizer, BOS added)");
  cmd->add_option("--token-ids", flags->token_ids,
                  "comma-separated token ids, used as given (no BOS added), e.g. 1,2,3");
  cmd->add_flag("--chat", flags->chat, "format --prompt as a user message with the chat template");
  cmd->add_option("--out", flags->out_path, "JSON file to write")->required();
  cmd->footer(fmt::format("Exactly one of --prompt and --token-ids; at most {} tokens. Use --isa scalar "
                          "for the f32 reference path.",
                          logits_tokens_max));
  return [flags] { return run_logits(*flags); };
}

}  // namespace dsrt::apps
