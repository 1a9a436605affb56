// format_chat against @lenml/tokenizers' Jinja rendering of the same templates: the
// DeepSeek-V3 template shipped with the tokenizer, and the Qwen2, Qwen2.5 and Llama-3
// templates kept in tests/tokenizer/data/ (loaded into a tiny tokenizer's config).
#include <gtest/gtest.h>

#include "runtime/tokenizer/tokenizer.h"
#include "tests/tokenizer/test_support.h"

namespace dsrt::tokenizer {
namespace {

using nlohmann::json;

std::vector<std::vector<chat_message>> conversations() {
  return {
      {{"user", "Hello!"}},
      {{"system", "You are terse."}, {"user", "What is 2+2?"}},
      {{"system", "S1"}, {"system", "S2"}, {"user", "u1"}, {"assistant", "a1"}, {"user", "u2"}},
      {{"user", "  padded question \n"}, {"assistant", "<think>hmm</think>\n\nIt is 4."}, {"user", "再见 👋"}},
      {{"user", "call a tool"}, {"assistant", "calling"}, {"tool", "{\"temp\": 20}"}, {"tool", "second"}},
      {{"user", "q"}, {"tool", "result"}, {"assistant", "answer"}},
      {{"assistant", "I start"}, {"user", "then me"}, {"system", "late system"}},
      {{"user", "multi\nline\n\ncontent\twith tabs"}},
  };
}

// Renders all conversations with the reference and with format_chat, both ways of
// add_generation_prompt.
void expect_matches_reference(const std::filesystem::path& model_dir, const std::string& model_arg,
                              const std::string& name) {
  auto tok = tokenizer::load(model_dir);
  ASSERT_TRUE(tok.ok()) << tok.err().to_string();
  const auto convs = conversations();
  for (bool generation : {true, false}) {
    json request = {{"template", nullptr}, {"add_generation_prompt", generation},
                    {"conversations", json::array()}};
    for (const auto& conv : convs) {
      json messages = json::array();
      for (const auto& m : conv) messages.push_back({{"role", m.role}, {"content", m.content}});
      request["conversations"].push_back(messages);
    }
    const auto dir = test::fresh_dir("chat_" + name);
    test::write_file(dir / "in.json", request.dump());
    const std::string problem = test::run_reference("chat", model_arg, dir / "in.json", dir / "out.json");
    ASSERT_TRUE(problem.empty()) << problem;
    const json expected = json::parse(test::read_file(dir / "out.json"));
    ASSERT_EQ(expected.size(), convs.size());
    for (std::size_t i = 0; i < convs.size(); ++i) {
      auto ours = format_chat(*tok, convs[i], generation);
      ASSERT_TRUE(ours.ok()) << name << ": " << ours.err().to_string();
      EXPECT_EQ(*ours, expected[i].get<std::string>())
          << name << " conversation " << i << " add_generation_prompt=" << generation;
    }
  }
}

std::filesystem::path tiny_with_template(const std::string& name, const std::string& template_file) {
  const auto dir = test::fresh_dir("chat_model_" + name);
  const json config = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                       {"bos_token", "<|begin_of_text|>"},
                       {"eos_token", "<|eot_id|>"},
                       {"chat_template", test::read_file(test::source_dir() / "tests/tokenizer/data" / template_file)}};
  test::write_tiny_tokenizer(dir, config);
  return dir;
}

TEST(ChatTemplate, DeepSeekV3MatchesJinja) {
  expect_matches_reference(test::deepseek_dir(), "deepseek_v3", "deepseek_v3");
}

TEST(ChatTemplate, DeepSeekV3KnownRendering) {
  auto tok = tokenizer::load(test::deepseek_dir());
  ASSERT_TRUE(tok.ok());
  const chat_message conv[] = {{"system", "Be brief."}, {"user", "Hi"}};
  auto out = format_chat(*tok, conv);
  ASSERT_TRUE(out.ok()) << out.err().to_string();
  EXPECT_EQ(*out, "<｜begin▁of▁sentence｜>Be brief.<｜User｜>Hi<｜Assistant｜>");
}

TEST(ChatTemplate, Qwen2MatchesJinja) {
  const auto dir = tiny_with_template("qwen2", "qwen2_chat_template.jinja");
  expect_matches_reference(dir, dir.string(), "qwen2");
}

TEST(ChatTemplate, Qwen25MatchesJinja) {
  const auto dir = tiny_with_template("qwen2_5", "qwen2_5_chat_template.jinja");
  expect_matches_reference(dir, dir.string(), "qwen2_5");
}

TEST(ChatTemplate, Llama3MatchesJinja) {
  const auto dir = tiny_with_template("llama3", "llama3_chat_template.jinja");
  expect_matches_reference(dir, dir.string(), "llama3");
}

// DeepSeek-R1's variant: </think> reasoning is dropped from earlier assistant turns and
// the generation prompt opens a <think> block. Derived from the V3 template the same way
// the R1 release changed it. The reference's Jinja cannot parse R1's
// `content.split('</think>')[-1]`, so the expected strings are written out here.
TEST(ChatTemplate, DeepSeekR1Variant) {
  const json config = json::parse(test::read_file(test::deepseek_dir() / "tokenizer_config.json"));
  std::string tpl = config["chat_template"].get<std::string>();
  const std::string plain = "{{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}";
  const std::string r1 = "{% set content = message['content'] %}{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}";
  const std::string generation = "{{'<｜Assistant｜>'}}{% endif %}";
  ASSERT_NE(tpl.find(plain), std::string::npos);
  ASSERT_NE(tpl.find(generation), std::string::npos);
  tpl.replace(tpl.find(plain), plain.size(), r1);
  tpl.replace(tpl.find(generation), generation.size(), "{{'<｜Assistant｜><think>\\n'}}{% endif %}");
  json r1_config = config;
  r1_config["chat_template"] = tpl;
  const auto dir = test::fresh_dir("chat_model_r1");
  std::filesystem::copy_file(test::deepseek_dir() / "tokenizer.json", dir / "tokenizer.json");
  test::write_file(dir / "tokenizer_config.json", r1_config.dump());
  auto tok = tokenizer::load(dir);
  ASSERT_TRUE(tok.ok());
  const chat_message conv[] = {{"user", "q"}, {"assistant", "<think>x</think>A"}, {"user", "q2"}};
  EXPECT_EQ(*format_chat(*tok, conv),
            "<｜begin▁of▁sentence｜><｜User｜>q<｜Assistant｜>A<｜end▁of▁sentence｜><｜User｜>q2<｜Assistant｜><think>\n");
  const chat_message tools[] = {{"system", "A"}, {"system", "B"}, {"user", "u"}, {"tool", "r1"},
                                {"tool", "r2"}};
  EXPECT_EQ(*format_chat(*tok, tools),
            "<｜begin▁of▁sentence｜>A\n\nB<｜User｜>u<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>r1"
            "<｜tool▁output▁end｜>\n<｜tool▁output▁begin｜>r2<｜tool▁output▁end｜><｜tool▁outputs▁end｜>");
  EXPECT_EQ(*format_chat(*tok, conv, /*add_generation_prompt=*/false),
            "<｜begin▁of▁sentence｜><｜User｜>q<｜Assistant｜>A<｜end▁of▁sentence｜><｜User｜>q2");
}

TEST(ChatTemplate, UnknownTemplateIsUnsupported) {
  const auto dir = test::fresh_dir("chat_unknown");
  test::write_tiny_tokenizer(dir, json{{"chat_template", "{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}"}});
  auto tok = tokenizer::load(dir);
  ASSERT_TRUE(tok.ok());
  const chat_message conv[] = {{"user", "hi"}};
  auto out = format_chat(*tok, conv);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.err().code, error_code::unsupported);
  EXPECT_EQ(out.err().message,
            "chat template not supported (unrecognised template); dsrt renders the DeepSeek-V3/R1, "
            "Qwen2/Qwen2.5 and Llama-3 templates");

  const auto bare = test::fresh_dir("chat_none");
  test::write_tiny_tokenizer(bare, nullptr);
  auto no_template = tokenizer::load(bare);
  ASSERT_TRUE(no_template.ok());
  out = format_chat(*no_template, conv);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.err().code, error_code::unsupported);
  EXPECT_EQ(out.err().message, "the model has no chat template (tokenizer_config.json chat_template)");
}

}  // namespace
}  // namespace dsrt::tokenizer
