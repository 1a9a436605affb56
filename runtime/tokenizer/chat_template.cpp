// format_chat: renders the chat templates of the model families dsrt serves. Rather than
// a Jinja engine, each family's template is recognised by its fixed text and rendered by
// hand; the few places where the official variants differ (default system prompt,
// generation prompt, R1's </think> stripping) are read from the template itself.
#include <optional>

#include "runtime/tokenizer/tokenizer_impl.h"
#include "runtime/tokenizer/unicode.h"

namespace dsrt::tokenizer {
namespace {

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

// The value of a single-quoted Jinja string literal starting at text[open] == '\''.
std::optional<std::string> jinja_literal(std::string_view text, std::size_t open) {
  if (open >= text.size() || text[open] != '\'') return std::nullopt;
  std::string out;
  for (std::size_t i = open + 1; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\'') return out;
    if (c != '\\') {
      out.push_back(c);
      continue;
    }
    if (++i >= text.size()) return std::nullopt;
    switch (text[i]) {
      case 'n': out.push_back('\n'); break;
      case 't': out.push_back('\t'); break;
      case 'r': out.push_back('\r'); break;
      default: out.push_back(text[i]); break;  // \\ \' \"
    }
  }
  return std::nullopt;
}

// The literal printed right after `marker` ("...{{'" or "{{ '" follows it).
std::optional<std::string> literal_after(std::string_view text, std::string_view marker) {
  const std::size_t at = text.find(marker);
  if (at == std::string_view::npos) return std::nullopt;
  const std::size_t quote = text.find('\'', at + marker.size());
  if (quote == std::string_view::npos || quote > at + marker.size() + 4) return std::nullopt;
  return jinja_literal(text, quote);
}

// Python's str.strip(), which Jinja's trim filter calls.
std::string python_strip(std::string_view s) {
  const std::u32string chars = unicode::decode_utf8(s);
  const auto space = [](char32_t c) {
    return unicode::is_white_space(c) || (c >= 0x1C && c <= 0x1F);
  };
  std::size_t b = 0, e = chars.size();
  while (b < e && space(chars[b])) ++b;
  while (e > b && space(chars[e - 1])) --e;
  return unicode::encode_utf8(std::u32string_view(chars).substr(b, e - b));
}

error unsupported_template(std::string_view why) {
  return make_error(error_code::unsupported,
                    "chat template not supported ({}); dsrt renders the DeepSeek-V3/R1, "
                    "Qwen2/Qwen2.5 and Llama-3 templates",
                    why);
}

// DeepSeek-V3 and R1 (and the R1-Distill models, which reuse R1's template).
result<std::string> render_deepseek(const tokenizer_data& d, std::string_view tpl,
                                    std::span<const chat_message> messages, bool add_generation) {
  const std::string user = "<\xEF\xBD\x9CUser\xEF\xBD\x9C>";
  const std::string assistant = "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>";
  const std::string end = "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>";
  const std::string outputs_begin = "<\xEF\xBD\x9Ctool\xE2\x96\x81outputs\xE2\x96\x81" "begin\xEF\xBD\x9C>";
  const std::string outputs_end = "<\xEF\xBD\x9Ctool\xE2\x96\x81outputs\xE2\x96\x81" "end\xEF\xBD\x9C>";
  const std::string output_begin = "<\xEF\xBD\x9Ctool\xE2\x96\x81output\xE2\x96\x81" "begin\xEF\xBD\x9C>";
  const std::string output_end = "<\xEF\xBD\x9Ctool\xE2\x96\x81output\xE2\x96\x81" "end\xEF\xBD\x9C>";

  auto generation = literal_after(tpl, "{% if add_generation_prompt and not ns.is_tool %}{{");
  if (!generation) return unsupported_template("DeepSeek template without its generation prompt");
  // Later tool outputs are separated by the literal before <｜tool▁output▁begin｜>.
  std::string tool_separator;
  const std::string later_output = "<\xEF\xBD\x9Ctool\xE2\x96\x81output\xE2\x96\x81" "begin\xEF\xBD\x9C>' + message['content']";
  const std::size_t first = tpl.find(later_output);
  const std::size_t second = first == std::string_view::npos ? first : tpl.find(later_output, first + 1);
  if (second != std::string_view::npos) {
    const std::size_t open = tpl.rfind("{{'", second);
    if (auto lit = jinja_literal(tpl, open + 2); lit && lit->size() >= output_begin.size()) {
      tool_separator = lit->substr(0, lit->size() - output_begin.size());
    }
  }
  const bool strip_thinking = contains(tpl, "content.split('</think>')[-1]");
  const bool join_system = contains(tpl, "is_first_sp");

  std::string system;
  bool first_system = true;
  for (const auto& m : messages) {
    if (m.role != "system") continue;
    if (!join_system || first_system) {
      system = join_system ? system + m.content : m.content;
    } else {
      system += "\n\n" + m.content;
    }
    first_system = false;
  }
  std::string out = d.bos_token + system;
  bool is_tool = false, output_first = true;
  for (const auto& m : messages) {
    if (m.role == "user") {
      is_tool = false;
      out += user + m.content;
    } else if (m.role == "assistant") {
      if (is_tool) {
        out += outputs_end + m.content + end;
        is_tool = false;
      } else {
        std::string content = m.content;
        if (strip_thinking) {
          if (const auto at = content.rfind("</think>"); at != std::string::npos) {
            content = content.substr(at + 8);
          }
        }
        out += assistant + content + end;
      }
    } else if (m.role == "tool") {
      is_tool = true;
      out += (output_first ? outputs_begin : tool_separator) + output_begin + m.content + output_end;
      output_first = false;
    }
  }
  if (is_tool) out += outputs_end;
  if (add_generation && !is_tool) out += *generation;
  return out;
}

// Qwen2 (ChatML with a default system turn) and Qwen2.5 (the same without tools, with
// tool results folded into user turns).
result<std::string> render_qwen(std::string_view tpl, std::span<const chat_message> messages,
                                bool add_generation) {
  const bool qwen25 = contains(tpl, "<tool_response>");
  const auto turn = [](const std::string& role, const std::string& content) {
    return "<|im_start|>" + role + "\n" + content + "<|im_end|>\n";
  };
  std::string out;
  if (!qwen25) {
    auto system = literal_after(tpl, "messages[0]['role'] != 'system' %}{{");
    if (!system) return unsupported_template("Qwen2 template without its default system turn");
    for (std::size_t i = 0; i < messages.size(); ++i) {
      if (i == 0 && messages[0].role != "system") out += *system;
      out += turn(messages[i].role, messages[i].content);
    }
  } else {
    // The default system turn: the first complete "<|im_start|>system...<|im_end|>\n"
    // literal (the tools branch prints its system turn in pieces).
    std::optional<std::string> system;
    for (std::size_t at = tpl.find("'<|im_start|>system"); at != std::string_view::npos && !system;
         at = tpl.find("'<|im_start|>system", at + 1)) {
      auto lit = jinja_literal(tpl, at);
      if (lit && lit->ends_with("<|im_end|>\n")) system = std::move(lit);
    }
    if (!system) {
      return unsupported_template("Qwen2.5 template without its default system turn");
    }
    if (messages.empty()) return unsupported_template("Qwen2.5 needs at least one message");
    out += messages[0].role == "system" ? turn("system", messages[0].content) : *system;
    for (std::size_t i = 0; i < messages.size(); ++i) {
      const auto& m = messages[i];
      if (m.role == "user" || (m.role == "system" && i != 0) || m.role == "assistant") {
        out += turn(m.role, m.content);
      } else if (m.role == "tool") {
        if (i == 0 || messages[i - 1].role != "tool") out += "<|im_start|>user";
        out += "\n<tool_response>\n" + m.content + "\n</tool_response>";
        if (i + 1 == messages.size() || messages[i + 1].role != "tool") out += "<|im_end|>\n";
      }
    }
  }
  if (add_generation) out += "<|im_start|>assistant\n";
  return out;
}

// Llama-3 (3.0): header, trimmed content, <|eot_id|>; BOS before the first message.
std::string render_llama3(const tokenizer_data& d, std::span<const chat_message> messages,
                          bool add_generation) {
  std::string out;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (i == 0) out += d.bos_token;
    out += "<|start_header_id|>" + messages[i].role + "<|end_header_id|>\n\n" +
           python_strip(messages[i].content) + "<|eot_id|>";
  }
  if (add_generation) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

}  // namespace

result<std::string> format_chat(const tokenizer& t, std::span<const chat_message> messages,
                                bool add_generation_prompt) {
  const tokenizer_data& d = t.data();
  const std::string_view tpl = d.chat_template;
  if (tpl.empty()) {
    return make_error(error_code::unsupported,
                      "the model has no chat template (tokenizer_config.json chat_template)");
  }
  if (contains(tpl, "<\xEF\xBD\x9CUser\xEF\xBD\x9C>") && contains(tpl, "ns.system_prompt")) {
    return render_deepseek(d, tpl, messages, add_generation_prompt);
  }
  if (contains(tpl, "<|im_start|>") && contains(tpl, "'<|im_start|>' + message") &&
      !contains(tpl, "enable_thinking") && !contains(tpl, "reasoning_content")) {
    return render_qwen(tpl, messages, add_generation_prompt);
  }
  // The newlines inside the Jinja string literal may be written as the escape \n (as in a
  // .jinja file) or as real newlines (as tokenizer_config.json's JSON decodes them); Jinja
  // renders both the same.
  if (contains(tpl, "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>'") ||
      contains(tpl, "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>'")) {
    return render_llama3(d, messages, add_generation_prompt);
  }
  return unsupported_template("unrecognised template");
}

}  // namespace dsrt::tokenizer
