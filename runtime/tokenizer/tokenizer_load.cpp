// tokenizer::load: reads tokenizer.json and tokenizer_config.json into tokenizer_data.
#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "runtime/json_file.h"
#include "runtime/tokenizer/tokenizer_impl.h"
#include "runtime/tokenizer/unicode.h"

namespace dsrt::tokenizer {
namespace {

using json = nlohmann::json;

// Vocabulary ids beyond this are treated as corrupt: no model we serve comes close, and
// ids index arrays.
constexpr std::int64_t token_id_max = (std::int64_t{1} << 24) - 1;
// How far beyond twice its token count a vocabulary's ids may reach (gaps, added tokens).
constexpr std::int64_t sparse_ids_slack = 65536;
// Nesting limit for Sequence normalizers / pre-tokenizers / decoders.
constexpr int sequence_depth_max = 8;

// The GPT-2 pre-tokenizer pattern ByteLevel uses when use_regex is set.
constexpr std::u32string_view gpt2_pattern_text =
    U"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// tokenizer.json of the largest vocabularies we serve is ~10 MB; far above that is not a
// tokenizer.
constexpr std::uint64_t tokenizer_file_bytes_max = 256ull << 20;

result<json> read_json(const std::filesystem::path& path) {
  return read_json_file(path, tokenizer_file_bytes_max);
}

// Wraps nlohmann type errors (a field of the wrong type) into corrupt_data.
template <class F>
auto guarded(const std::filesystem::path& file, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const json::exception& e) {
    return make_error(error_code::corrupt_data, "{}: unexpected structure: {}", file.string(),
                      e.what());
  }
}

std::string byte_level_string(std::string_view bytes) {
  std::string out;
  for (unsigned char b : bytes) unicode::append_utf8(out, byte_to_char()[b]);
  return out;
}

std::string raw_bytes(std::string_view byte_level) {
  std::string out;
  for (char32_t c : unicode::decode_utf8(byte_level)) {
    const int b = char_to_byte(c);
    if (b >= 0) {
      out.push_back(static_cast<char>(b));
    } else {
      unicode::append_utf8(out, c);  // not a byte-level character: keep it as text
    }
  }
  return out;
}

status load_normalizer(const json& n, tokenizer_data& d, const std::string& file, int depth) {
  if (n.is_null()) return ok_status();
  if (depth > sequence_depth_max) {
    return make_error(error_code::corrupt_data, "{}: normalizers nested too deeply", file);
  }
  const std::string type = n.value("type", "");
  if (type == "Sequence") {
    for (const auto& inner : n.at("normalizers")) DSRT_TRY(load_normalizer(inner, d, file, depth + 1));
    return ok_status();
  }
  if (type == "NFC") {
    d.normalize_nfc = true;
    return ok_status();
  }
  return make_error(error_code::unsupported, "{}: normalizer type '{}' is not supported", file,
                    type);
}

result<split_behavior> parse_behavior(const std::string& b, const std::string& file) {
  if (b == "Removed") return split_behavior::removed;
  if (b == "Isolated") return split_behavior::isolated;
  if (b == "MergedWithPrevious") return split_behavior::merged_with_previous;
  if (b == "MergedWithNext") return split_behavior::merged_with_next;
  if (b == "Contiguous") return split_behavior::contiguous;
  return make_error(error_code::corrupt_data, "{}: unknown Split behavior '{}'", file, b);
}

status load_pre_tokenizer(const json& p, tokenizer_data& d, const std::string& file, int depth) {
  if (p.is_null()) return ok_status();
  if (depth > sequence_depth_max) {
    return make_error(error_code::corrupt_data, "{}: pre-tokenizers nested too deeply", file);
  }
  const std::string type = p.value("type", "");
  if (type == "Sequence") {
    for (const auto& inner : p.at("pretokenizers")) {
      DSRT_TRY(load_pre_tokenizer(inner, d, file, depth + 1));
    }
    return ok_status();
  }
  if (type == "ByteLevel") {
    byte_level_step step;
    step.add_prefix_space = p.value("add_prefix_space", false);
    step.use_regex = p.value("use_regex", true);
    pre_tokenizer_step wrapped;
    wrapped.is_byte_level = true;
    wrapped.byte_level = step;
    d.pre_tokenizer.push_back(std::move(wrapped));
    return ok_status();
  }
  if (type == "Split") {
    split_step step;
    const json& pattern = p.at("pattern");
    if (pattern.contains("Regex")) {
      const auto text = unicode::decode_utf8(pattern.at("Regex").get<std::string>());
      auto compiled = regex::compile(text);
      if (!compiled.ok()) {
        return make_error(compiled.err().code, "{}: Split pre-tokenizer: {}", file,
                          compiled.err().message);
      }
      step.pattern = std::move(compiled.value());
    } else if (pattern.contains("String")) {
      step.literal = unicode::decode_utf8(pattern.at("String").get<std::string>());
      if (step.literal.empty()) {
        return make_error(error_code::corrupt_data, "{}: Split with an empty String pattern", file);
      }
    } else {
      return make_error(error_code::corrupt_data, "{}: Split pattern is neither Regex nor String",
                        file);
    }
    auto behavior = parse_behavior(p.value("behavior", "Isolated"), file);
    if (!behavior.ok()) return behavior.err();
    step.behavior = *behavior;
    step.invert = p.value("invert", false);
    pre_tokenizer_step wrapped;
    wrapped.split = std::move(step);
    d.pre_tokenizer.push_back(std::move(wrapped));
    return ok_status();
  }
  return make_error(error_code::unsupported, "{}: pre-tokenizer type '{}' is not supported", file,
                    type);
}

status check_decoder(const json& dec, const std::string& file, int depth) {
  if (dec.is_null()) return ok_status();
  if (depth > sequence_depth_max) {
    return make_error(error_code::corrupt_data, "{}: decoders nested too deeply", file);
  }
  const std::string type = dec.value("type", "");
  if (type == "ByteLevel") return ok_status();
  if (type == "Sequence") {
    for (const auto& inner : dec.at("decoders")) DSRT_TRY(check_decoder(inner, file, depth + 1));
    return ok_status();
  }
  return make_error(error_code::unsupported, "{}: decoder type '{}' is not supported", file, type);
}

// TemplateProcessing's "single" template: special tokens around sequence A.
status load_post_processor(const json& p, tokenizer_data& d, const std::string& file, int depth) {
  if (p.is_null()) return ok_status();
  if (depth > sequence_depth_max) {
    return make_error(error_code::corrupt_data, "{}: post-processors nested too deeply", file);
  }
  const std::string type = p.value("type", "");
  if (type == "ByteLevel") return ok_status();  // adjusts offsets only
  if (type == "Sequence") {
    for (const auto& inner : p.at("processors")) {
      DSRT_TRY(load_post_processor(inner, d, file, depth + 1));
    }
    return ok_status();
  }
  if (type != "TemplateProcessing") {
    return make_error(error_code::unsupported, "{}: post-processor type '{}' is not supported",
                      file, type);
  }
  bool seen_sequence = false;
  for (const auto& item : p.at("single")) {
    if (item.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    const std::string name = item.at("SpecialToken").at("id").get<std::string>();
    const json& special = p.at("special_tokens");
    if (!special.contains(name)) {
      return make_error(error_code::corrupt_data,
                        "{}: TemplateProcessing uses special token '{}' it does not define", file,
                        name);
    }
    for (const auto& id : special.at(name).at("ids")) {
      if (!id.is_number_integer() || id.get<std::int64_t>() < 0 || id.get<std::int64_t>() > token_id_max)
        return make_error(error_code::corrupt_data, "{}: special token '{}' has id {} out of range [0, {}]", file,
                          name, id.dump(), token_id_max);
      (seen_sequence ? d.suffix_ids : d.prefix_ids).push_back(static_cast<std::int32_t>(id.get<std::int64_t>()));
    }
  }
  return ok_status();
}

status load_model(const json& m, tokenizer_data& d, const std::string& file) {
  const std::string type = m.value("type", m.contains("merges") ? "BPE" : "");
  if (type != "BPE") {
    return make_error(error_code::unsupported,
                      "{}: model type '{}' is not supported (only byte-level BPE)", file, type);
  }
  if (m.value("byte_fallback", false)) {
    return make_error(error_code::unsupported, "{}: BPE with byte_fallback is not supported", file);
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (m.contains(key) && m[key].is_string() && !m[key].get<std::string>().empty()) {
      return make_error(error_code::unsupported, "{}: BPE {} is not supported", file, key);
    }
  }
  d.ignore_merges = m.value("ignore_merges", false);
  const json& vocab = m.at("vocab");
  if (!vocab.is_object()) return make_error(error_code::corrupt_data, "{}: model.vocab is not an object", file);
  std::int64_t max_id = -1;
  for (const auto& [token, id_json] : vocab.items()) {
    const std::int64_t id = id_json.get<std::int64_t>();
    if (id < 0 || id > token_id_max) {
      return make_error(error_code::corrupt_data, "{}: token '{}' has id {} out of range", file,
                        token, id);
    }
    max_id = std::max(max_id, id);
    d.vocab.emplace(token, static_cast<std::int32_t>(id));
  }
  // Ids may leave gaps, but a table of max_id + 1 entries for a handful of tokens is a
  // hostile file's way to make us allocate: ids stay within a few times the token count.
  if (max_id >= 2 * std::int64_t(vocab.size()) + sparse_ids_slack)
    return make_error(error_code::corrupt_data, "{}: ids run up to {} for {} tokens (at most 2 x tokens + {})", file,
                      max_id, vocab.size(), sparse_ids_slack);
  d.id_to_bytes.assign(static_cast<std::size_t>(max_id + 1), {});
  d.id_in_vocab.assign(static_cast<std::size_t>(max_id + 1), false);
  for (const auto& [token, id] : d.vocab) {
    d.id_to_bytes[static_cast<std::size_t>(id)] = raw_bytes(token);
    d.id_in_vocab[static_cast<std::size_t>(id)] = true;
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = d.vocab.find(byte_level_string(std::string(1, static_cast<char>(b))));
    d.byte_ids[static_cast<std::size_t>(b)] = it == d.vocab.end() ? -1 : it->second;
  }
  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    if (auto it = d.vocab.find(m["unk_token"].get<std::string>()); it != d.vocab.end()) {
      d.unk_id = it->second;
    }
  }
  std::int32_t rank = 0;
  for (const auto& merge : m.at("merges")) {
    std::string left, right;
    if (merge.is_array() && merge.size() == 2) {
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    } else {
      const std::string text = merge.get<std::string>();
      const auto space = text.find(' ');
      if (space == std::string::npos) {
        return make_error(error_code::corrupt_data, "{}: merge {} is not 'a b'", file, rank);
      }
      left = text.substr(0, space);
      right = text.substr(space + 1);
    }
    const auto l = d.vocab.find(left), r = d.vocab.find(right), lr = d.vocab.find(left + right);
    if (l == d.vocab.end() || r == d.vocab.end() || lr == d.vocab.end()) {
      return make_error(error_code::corrupt_data, "{}: merge {} ('{}' '{}') uses a token not in the vocabulary",
                        file, rank, left, right);
    }
    const std::uint64_t key = (std::uint64_t(std::uint32_t(l->second)) << 32) | std::uint32_t(r->second);
    d.merges.emplace(key, merge_rule{rank, lr->second});  // the first (best) rank wins
    ++rank;
  }
  d.vocab_size = static_cast<int>(max_id + 1);
  return ok_status();
}

status load_added_tokens(const json& list, tokenizer_data& d, const std::string& file) {
  if (list.is_null()) return ok_status();
  for (const auto& t : list) {
    added_token a;
    a.content = t.at("content").get<std::string>();
    const std::int64_t id = t.at("id").get<std::int64_t>();
    if (id < 0 || id > token_id_max || a.content.empty()) {
      return make_error(error_code::corrupt_data, "{}: added token '{}' with id {} is invalid", file,
                        a.content, id);
    }
    a.id = static_cast<std::int32_t>(id);
    a.special = t.value("special", false);
    a.lstrip = t.value("lstrip", false);
    a.rstrip = t.value("rstrip", false);
    a.single_word = t.value("single_word", false);
    const std::size_t index = d.added_tokens.size();
    d.added_by_id[a.id] = index;
    d.added_by_content[a.content] = index;
    d.added_trie.insert(a.content, static_cast<std::int32_t>(index));
    if (a.special) d.special_ids.insert(a.id);
    d.vocab_size = std::max(d.vocab_size, a.id + 1);
    d.added_tokens.push_back(std::move(a));
  }
  return ok_status();
}

// A token in tokenizer_config.json: a string, or an AddedToken object with "content".
std::optional<std::string> config_token(const json& config, const char* key) {
  if (!config.contains(key)) return std::nullopt;
  const json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  return std::nullopt;
}

std::optional<std::int32_t> lookup(const tokenizer_data& d, const std::string& token) {
  if (auto it = d.added_by_content.find(token); it != d.added_by_content.end()) {
    return d.added_tokens[it->second].id;
  }
  if (auto it = d.vocab.find(token); it != d.vocab.end()) return it->second;
  return std::nullopt;
}

// End-of-turn tokens of the families we serve; generation_config.json lists them as
// stop tokens next to eos_token.
void add_end_of_turn_tokens(tokenizer_data& d) {
  for (const char* extra : {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|im_end|>",
                            "<|endoftext|>", "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"}) {
    auto it = d.added_by_content.find(extra);
    if (it == d.added_by_content.end()) continue;
    const std::int32_t id = d.added_tokens[it->second].id;
    if (std::find(d.eos_ids.begin(), d.eos_ids.end(), id) == d.eos_ids.end()) d.eos_ids.push_back(id);
  }
}

status load_config(const json& c, tokenizer_data& d, const std::string& file) {
  if (auto bos = config_token(c, "bos_token")) {
    d.bos_token = *bos;
    d.bos_id = lookup(d, *bos);
  }
  if (auto eos = config_token(c, "eos_token")) {
    d.eos_token = *eos;
    if (auto id = lookup(d, *eos)) d.eos_ids.push_back(*id);
  }
  if (c.contains("additional_special_tokens") && c["additional_special_tokens"].is_array()) {
    for (const auto& t : c["additional_special_tokens"]) {
      std::optional<std::string> content;
      if (t.is_string()) content = t.get<std::string>();
      if (t.is_object() && t.contains("content")) content = t["content"].get<std::string>();
      if (content) {
        if (auto id = lookup(d, *content)) d.special_ids.insert(*id);
      }
    }
  }
  d.clean_up_tokenization_spaces = c.value("clean_up_tokenization_spaces", false);
  if (c.contains("chat_template")) {
    const json& t = c["chat_template"];
    if (t.is_string()) {
      d.chat_template = t.get<std::string>();
    } else if (t.is_array()) {  // named templates: use "default"
      for (const auto& named : t) {
        if (named.value("name", "") == "default") d.chat_template = named.at("template").get<std::string>();
      }
    }
  }
  // Special tokens encode() adds, following transformers: LlamaTokenizer(Fast) adds
  // BOS/EOS per add_bos_token (default true) / add_eos_token (default false) and replaces
  // the tokenizer.json post-processor; other classes keep tokenizer.json's
  // TemplateProcessing, or honour an explicit add_bos_token when there is none.
  const std::string cls = c.value("tokenizer_class", "");
  const bool llama_class = cls.starts_with("LlamaTokenizer") || cls.starts_with("CodeLlamaTokenizer");
  const bool has_template = !d.prefix_ids.empty() || !d.suffix_ids.empty();
  if (llama_class || (!has_template && (c.contains("add_bos_token") || c.contains("add_eos_token")))) {
    const auto flag = [&](const char* key, bool fallback) {
      return c.contains(key) && c[key].is_boolean() ? c[key].get<bool>() : fallback;
    };
    d.prefix_ids.clear();
    d.suffix_ids.clear();
    if (flag("add_bos_token", llama_class) && d.bos_id) d.prefix_ids.push_back(*d.bos_id);
    if (flag("add_eos_token", false) && !d.eos_ids.empty()) d.suffix_ids.push_back(d.eos_ids[0]);
  }
  (void)file;
  return ok_status();
}

}  // namespace

void added_token_trie::insert(std::string_view text, std::int32_t token) {
  std::size_t at = 0;
  for (unsigned char c : text) {
    auto it = nodes[at].next.find(c);
    if (it == nodes[at].next.end()) {
      nodes.emplace_back();
      it = nodes[at].next.emplace(c, static_cast<std::int32_t>(nodes.size() - 1)).first;
    }
    at = static_cast<std::size_t>(it->second);
  }
  nodes[at].token = token;
}

result<tokenizer> tokenizer::load(const std::filesystem::path& model_dir) {
  const auto json_path = model_dir / "tokenizer.json";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(json_path, ec)) {
    return make_error(error_code::not_found, "tokenizer.json not found in {}", model_dir.string());
  }
  auto tokenizer_json = read_json(json_path);
  if (!tokenizer_json.ok()) return tokenizer_json.err();
  const std::string file = json_path.string();
  auto data = std::make_shared<tokenizer_data>();
  auto gpt2 = regex::compile(gpt2_pattern_text);
  DSRT_ASSERT(gpt2.ok(), "the built-in GPT-2 pattern must compile");
  data->gpt2_split.pattern = std::move(gpt2.value());

  DSRT_TRY(guarded(file, [&]() -> status {
    const json& j = *tokenizer_json;
    if (!j.is_object() || !j.contains("model")) {
      return make_error(error_code::corrupt_data, "{}: no \"model\" object", file);
    }
    DSRT_TRY(load_model(j.at("model"), *data, file));
    DSRT_TRY(load_normalizer(j.value("normalizer", json()), *data, file, 0));
    DSRT_TRY(load_pre_tokenizer(j.value("pre_tokenizer", json()), *data, file, 0));
    DSRT_TRY(check_decoder(j.value("decoder", json()), file, 0));
    DSRT_TRY(load_added_tokens(j.value("added_tokens", json()), *data, file));
    DSRT_TRY(load_post_processor(j.value("post_processor", json()), *data, file, 0));
    return ok_status();
  }));
  // Byte-level BPE only: the vocabulary is over byte-level characters, so the last
  // pre-tokenizer step must map bytes to them.
  if (data->pre_tokenizer.empty() || !data->pre_tokenizer.back().is_byte_level) {
    return make_error(error_code::unsupported,
                      "{}: only byte-level BPE is supported (the pre-tokenizer must end with ByteLevel)",
                      file);
  }
  for (std::size_t i = 0; i + 1 < data->pre_tokenizer.size(); ++i) {
    if (data->pre_tokenizer[i].is_byte_level) {
      return make_error(error_code::unsupported, "{}: ByteLevel must be the last pre-tokenizer", file);
    }
  }

  const auto config_path = model_dir / "tokenizer_config.json";
  if (std::filesystem::exists(config_path, ec)) {
    auto config = read_json(config_path);
    if (!config.ok()) return config.err();
    const std::string config_file = config_path.string();
    DSRT_TRY(guarded(config_file, [&]() -> status {
      if (!config->is_object()) {
        return make_error(error_code::corrupt_data, "{}: not a JSON object", config_file);
      }
      return load_config(*config, *data, config_file);
    }));
  }
  add_end_of_turn_tokens(*data);
  return tokenizer(std::move(data));
}

}  // namespace dsrt::tokenizer
