// The generator as a user sees it: lengths, stop tokens, stop strings with streaming,
// request validation, and admission under a KV cache that holds only a few requests.
#include "runtime/engine/generator.h"

#include <gtest/gtest.h>

#include <iostream>

#include "tests/engine/engine_test_util.h"

namespace dsrt::engine {
namespace {

using namespace test_util;

class Generator : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = make_backend();
    model_ = load_model(tiny_llama_dir(), *backend_);
    ASSERT_TRUE(model_);
    tokenizer_.emplace(load_tokenizer(tiny_llama_dir()));
  }

  result<std::vector<generation_output>> run(std::span<const generation_request> requests,
                                             const text_callback& on_text = {}) {
    generator gen(*model_, *tokenizer_);
    return gen.run(requests, on_text);
  }
  generation_output run_one(const generation_request& request, const text_callback& on_text = {}) {
    auto out = run(std::span(&request, 1), on_text);
    if (!out || out->size() != 1) {
      ADD_FAILURE() << (out ? "wrong output count" : out.err().to_string());
      return {};
    }
    return (*out)[0];
  }

  static generation_request greedy(std::size_t prompt_length, std::uint64_t salt, int max_tokens) {
    generation_request r;
    r.prompt = make_prompt(prompt_length, salt);
    r.max_tokens = max_tokens;
    return r;
  }

  std::unique_ptr<kernels::backend> backend_;
  std::unique_ptr<causal_lm> model_;
  std::optional<tokenizer::tokenizer> tokenizer_;
};

TEST_F(Generator, StopsAtMaxTokensWithReasonLength) {
  for (int max_tokens : {1, 7, 33}) {
    const auto out = run_one(greedy(10, 1, max_tokens));
    EXPECT_EQ(out.reason, finish_reason::length) << "max_tokens " << max_tokens;
    EXPECT_EQ(int(out.tokens.size()), max_tokens) << "max_tokens " << max_tokens;
    EXPECT_EQ(out.text, tokenizer_->decode(out.tokens, /*skip_special=*/true))
        << "max_tokens " << max_tokens;
  }
}

TEST_F(Generator, StopTokenEndsWithReasonStopAndIsNotInTheOutput) {
  const auto free_run = run_one(greedy(10, 2, 24));
  ASSERT_EQ(free_run.tokens.size(), 24u);
  // The first token after the start that did not come up before it.
  std::size_t k = 1;
  while (k < free_run.tokens.size() &&
         std::find(free_run.tokens.begin(), free_run.tokens.begin() + std::ptrdiff_t(k),
                   free_run.tokens[k]) != free_run.tokens.begin() + std::ptrdiff_t(k))
    ++k;
  ASSERT_LT(k, free_run.tokens.size()) << "greedy output repeats one token; pick another prompt";
  auto request = greedy(10, 2, 24);
  request.stop_token_ids = {9999, free_run.tokens[k]};
  const auto out = run_one(request);
  EXPECT_EQ(out.reason, finish_reason::stop);
  EXPECT_EQ(out.tokens, std::vector<std::int32_t>(free_run.tokens.begin(),
                                                  free_run.tokens.begin() + std::ptrdiff_t(k)));
}

TEST_F(Generator, StopStringCutsTheTextAndIsNeverStreamed) {
  int cases = 0;
  for (std::uint64_t salt = 0; salt < 6; ++salt) {
    auto request = greedy(8, 10 + salt, 40);
    const auto free_run = run_one(request);
    const std::string& text = free_run.text;
    // A 3-byte ASCII piece from the middle whose first occurrence is where we took it.
    std::string stop;
    std::size_t at = std::string::npos;
    for (std::size_t p = text.size() / 3; p + 3 <= text.size(); ++p) {
      const std::string piece = text.substr(p, 3);
      const bool ascii = std::all_of(piece.begin(), piece.end(), [](char ch) {
        return (unsigned char)ch < 0x80;
      });
      if (ascii && text.find(piece) == p) {
        stop = piece;
        at = p;
        break;
      }
    }
    if (at == std::string::npos) continue;
    ++cases;
    request.stop_strings = {"\x01never\x02", stop};
    std::string streamed;
    int chunks = 0;
    const auto out = run_one(request, [&](std::size_t index, std::string_view piece) {
      EXPECT_EQ(index, 0u);
      streamed += piece;
      ++chunks;
      EXPECT_EQ(streamed.find(stop), std::string::npos) << "salt " << salt;
    });
    EXPECT_EQ(out.reason, finish_reason::stop) << "salt " << salt;
    EXPECT_EQ(out.text, text.substr(0, at)) << "salt " << salt << ", stop '" << stop << "'";
    EXPECT_EQ(streamed, out.text) << "salt " << salt;
    // No part of the stop string was streamed: not even its first bytes at the end.
    EXPECT_EQ(streamed.size(), at) << "salt " << salt;
    EXPECT_GT(chunks, 1) << "salt " << salt << ": the text was not streamed";
  }
  EXPECT_GE(cases, 3) << "too few outputs had a usable stop string";
}

TEST_F(Generator, StreamedTextEqualsTheFinalText) {
  const std::vector<generation_request> requests = {greedy(5, 20, 30), greedy(17, 21, 25)};
  std::vector<std::string> streamed(requests.size());
  auto out = run(requests, [&](std::size_t index, std::string_view piece) {
    ASSERT_LT(index, streamed.size());
    streamed[index] += piece;
  });
  ASSERT_TRUE(out.ok()) << out.err().to_string();
  for (std::size_t i = 0; i < requests.size(); ++i) EXPECT_EQ(streamed[i], (*out)[i].text) << "request " << i;
}

TEST_F(Generator, InvalidRequestsNameTheirIndex) {
  struct bad_case {
    const char* what;
    void (*spoil)(generation_request&);
  };
  const bad_case cases[] = {
      {"empty prompt", [](generation_request& r) { r.prompt.clear(); }},
      {"token past the vocabulary", [](generation_request& r) { r.prompt[3] = 512; }},
      {"negative token", [](generation_request& r) { r.prompt[0] = -1; }},
      {"max_tokens 0", [](generation_request& r) { r.max_tokens = 0; }},
      {"past max_position_embeddings",
       [](generation_request& r) { r.max_tokens = 4096 - int(r.prompt.size()) + 1; }},
      {"17 stop strings", [](generation_request& r) { r.stop_strings.assign(17, "x"); }},
      {"empty stop string", [](generation_request& r) { r.stop_strings = {""}; }},
      {"bad sampling", [](generation_request& r) { r.sampling.top_p = 0.0f; }},
  };
  for (const auto& c : cases) {
    std::vector<generation_request> requests = {greedy(6, 1, 4), greedy(6, 2, 4), greedy(6, 3, 4)};
    c.spoil(requests[2]);
    int calls = 0;
    auto out = run(requests, [&](std::size_t, std::string_view) { ++calls; });
    ASSERT_FALSE(out.ok()) << c.what;
    EXPECT_EQ(out.err().code, error_code::invalid_argument) << c.what << ": " << out.err().message;
    EXPECT_NE(out.err().message.find("request 2"), std::string::npos)
        << c.what << ": '" << out.err().message << "'";
    EXPECT_EQ(calls, 0) << c.what << ": nothing may run";
  }
  // Exactly at the context limit is fine.
  const auto at_limit = greedy(4094, 5, 2);
  auto out = run(std::span(&at_limit, 1));
  ASSERT_TRUE(out.ok()) << out.err().to_string();
  EXPECT_EQ((*out)[0].tokens.size(), 2u);
}

// 256 bytes of KV per token; 16-token blocks of 4 KiB.
constexpr std::int64_t block_bytes = 16 * 2 * 2 * 2 * 16 * 2;

TEST_F(Generator, BadOptionsAreInvalidArgumentNotACrash) {
  const auto request = greedy(10, 1, 4);
  for (int which = 0; which < 3; ++which) {
    generator_options options;
    if (which == 0) options.prefill_chunk_tokens = -5;
    if (which == 1) options.sequences_max = 0;
    if (which == 2) options.step_tokens_max = 0;
    generator gen(*model_, *tokenizer_, options);
    auto out = gen.run(std::span(&request, 1));
    ASSERT_FALSE(out.ok()) << "option set " << which;
    EXPECT_EQ(out.err().code, error_code::invalid_argument) << out.err().to_string();
    EXPECT_NE(out.err().message.find("generator options"), std::string::npos) << out.err().message;
  }
}

TEST_F(Generator, RequestLargerThanTheCacheIsUnavailable) {
  ASSERT_EQ(model_->kv_bytes_per_token() * 16, block_bytes);
  auto small = load_model(tiny_llama_dir(), *backend_, {.kv_cache_bytes_max = 10 * block_bytes});
  ASSERT_TRUE(small);
  ASSERT_EQ(small->kv_blocks(), 10);
  generator gen(*small, *tokenizer_);
  std::vector<generation_request> requests = {greedy(10, 1, 150), greedy(10, 2, 151)};  // 160, 161 tokens
  auto out = gen.run(requests);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.err().code, error_code::unavailable) << out.err().message;
  EXPECT_NE(out.err().message.find("request 1"), std::string::npos) << out.err().message;
  requests.pop_back();  // 160 tokens = exactly 10 blocks: runs
  auto fits = gen.run(requests);
  ASSERT_TRUE(fits.ok()) << fits.err().to_string();
  EXPECT_EQ((*fits)[0].tokens.size(), 150u);
}

TEST_F(Generator, SmallCacheAdmitsRequestsAsBlocksFreeUpWithSameOutputs) {
  // Each request: up to 48 tokens = 3 blocks; 10 blocks hold 3 requests at once.
  std::vector<generation_request> requests;
  for (int i = 0; i < 10; ++i) {
    auto r = greedy(std::size_t(12 + 2 * i), std::uint64_t(50 + i), 48 - (12 + 2 * i));
    if (i % 2) r.sampling = {.temperature = 0.9f, .top_k = 40, .seed = std::uint64_t(i)};
    requests.push_back(std::move(r));
  }
  auto small = load_model(tiny_llama_dir(), *backend_, {.kv_cache_bytes_max = 10 * block_bytes});
  ASSERT_TRUE(small);
  generator small_gen(*small, *tokenizer_), big_gen(*model_, *tokenizer_);
  auto with_small = small_gen.run(requests);
  ASSERT_TRUE(with_small.ok()) << with_small.err().to_string();
  auto with_big = big_gen.run(requests);
  ASSERT_TRUE(with_big.ok()) << with_big.err().to_string();
  for (std::size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ((*with_small)[i].tokens, (*with_big)[i].tokens) << "request " << i;
    EXPECT_EQ(int((*with_small)[i].tokens.size()), requests[i].max_tokens) << "request " << i;
  }
  // The small cache really did hold requests back: it needed more steps.
  EXPECT_GT(small_gen.steps(), 2 * big_gen.steps());
  std::cout << "steps: small cache " << small_gen.steps() << ", big cache " << big_gen.steps() << "\n";
}

// generator_options::step_tokens_max is documented as clamped to the model's, so a model
// with a smaller step than the generator's default still serves a long prompt.
TEST_F(Generator, ModelStepLimitBelowTheGeneratorsIsRespected) {
  auto narrow = load_model(tiny_llama_dir(), *backend_, {.step_tokens_max = 32});
  ASSERT_TRUE(narrow);
  generator gen(*narrow, *tokenizer_);
  const auto request = greedy(100, 3, 4);
  auto out = gen.run(std::span(&request, 1));
  ASSERT_TRUE(out.ok()) << out.err().to_string();
  EXPECT_EQ((*out)[0].tokens, run_one(request).tokens);
}

}  // namespace
}  // namespace dsrt::engine
