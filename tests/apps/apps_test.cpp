// The tools as a user runs them: real processes, real files, exit codes and output checked.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

#include "tests/apps/app_runner.h"

namespace {

using namespace dsrt::test;

TEST_F(Apps, EveryBinaryAnswersHelp) {
  for (const std::string tool : {"dsgen/dsgen", "dsrun/dsrun", "dsbench/dsbench", "dsnode/dsnode", "dssim/dssim"}) {
    const auto r = run(bin + "/" + tool + " --help");
    EXPECT_EQ(r.exit_code, 0) << tool;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << tool << ": " << r.out;
  }
  for (const std::string sub : {"dsrun/dsrun generate", "dsrun/dsrun tokenize", "dsrun/dsrun logits",
                                 "dsrun/dsrun ask", "dsrun/dsrun cluster", "dsbench/dsbench engine",
                                 "dsbench/dsbench load", "dsnode/dsnode head", "dsnode/dsnode worker"}) {
    const auto r = run(bin + "/" + sub + " --help");
    EXPECT_EQ(r.exit_code, 0) << sub;
    EXPECT_NE(r.out.find("--model"), std::string::npos) << sub << ": " << r.out;
  }
}

TEST_F(Apps, GenerateStreamsTheRequestedNumberOfTokens) {
  const auto r = run(bin + "/dsrun/dsrun generate --model " + model_.string() +
                     " --prompt 'The cat' --max-tokens 7 --temperature 0.7 --seed 5");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The random model may stop early on an end-of-turn token; it never exceeds the limit.
  const auto at = r.err.find(" generated");
  ASSERT_NE(at, std::string::npos) << r.err;
  const int generated = std::stoi(r.err.substr(r.err.rfind(' ', at - 1) + 1));
  EXPECT_GE(generated, 1) << r.err;
  EXPECT_LE(generated, 7) << r.err;
  // Same seed, same text.
  const auto again = run(bin + "/dsrun/dsrun generate --model " + model_.string() +
                         " --prompt 'The cat' --max-tokens 7 --temperature 0.7 --seed 5 --quiet");
  EXPECT_EQ(again.out, r.out);
  EXPECT_EQ(again.err, "");
}

TEST_F(Apps, GenerateWithChatTemplate) {
  const auto r = run(bin + "/dsrun/dsrun generate --model " + model_.string() +
                     " --chat --system 'Be brief' --prompt Hi --max-tokens 4");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("prompt tokens"), std::string::npos) << r.err;
}

TEST_F(Apps, GenerateReportsBadInputWithTypedErrors) {
  auto r = run(bin + "/dsrun/dsrun generate --model /nonexistent/model --prompt x");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("NOT_FOUND"), std::string::npos) << r.err;

  r = run(bin + "/dsrun/dsrun generate --model " + model_.string() + " --prompt x --top-p 0");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("INVALID_ARGUMENT"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("top_p"), std::string::npos) << r.err;

  r = run(bin + "/dsrun/dsrun generate --model " + model_.string() + " --prompt x --max-tokens 100000");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("exceeds the context"), std::string::npos) << r.err;

  r = run(bin + "/dsrun/dsrun generate --model " + model_.string() + " --prompt x --isa avx9000");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--isa avx9000"), std::string::npos) << r.err;

  for (const char* device : {"gpu0", "cuda:", "cuda:-1", "cuda:1x"}) {
    r = run(bin + "/dsrun/dsrun generate --model " + model_.string() + " --prompt x --device " + device);
    EXPECT_EQ(r.exit_code, 2) << device;
    EXPECT_NE(r.err.find("INVALID_ARGUMENT: --device " + std::string(device)), std::string::npos) << r.err;
  }
  // A CUDA device no machine has: UNAVAILABLE with the reason (no GPU, no driver, a build
  // without CUDA, or too few devices), never a crash.
  r = run(bin + "/dsrun/dsrun generate --model " + model_.string() + " --prompt x --device cuda:4096");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("UNAVAILABLE: --device cuda:4096: "), std::string::npos) << r.err;
  r = run(bin + "/dsrun/dsrun cluster --model " + model_.string() + " --device tpu");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--device tpu: expected cpu or cuda"), std::string::npos) << r.err;
}

// A tokenizer that can emit an id the model has no embedding for is refused at load, in
// process (generate) and through the runtime (ask), not left to fail every request.
TEST_F(Apps, ATokenizerWithIdsPastTheModelsVocabularyIsRefused) {
  const fs::path dir = fs::temp_directory_path() / ("dsrt-apps-bigtok-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::copy(model_, dir, fs::copy_options::recursive);
  auto j = nlohmann::json::parse(read_file(dir / "tokenizer.json"));
  j["added_tokens"].push_back({{"id", 600}, {"content", "<|past_the_table|>"}, {"special", true},
                               {"single_word", false}, {"lstrip", false}, {"rstrip", false}, {"normalized", false}});
  std::ofstream(dir / "tokenizer.json") << j.dump();
  for (const std::string command : {"generate", "ask"}) {
    const auto r = run(bin + "/dsrun/dsrun " + command + " --model " + dir.string() + " --prompt x --max-tokens 2");
    EXPECT_EQ(r.exit_code, 2) << command << ": " << r.err;
    EXPECT_NE(r.err.find("(id 600) is not below the model's vocab_size (512"), std::string::npos)
        << command << ": " << r.err;
  }
  fs::remove_all(dir);
}

TEST_F(Apps, TokenizeRoundTripsAndReportsBadLines) {
  const std::string text = "hello world\nsecond line, with 123 digits\n";
  const auto enc = run(bin + "/dsrun/dsrun tokenize --model " + model_.string(), text);
  ASSERT_EQ(enc.exit_code, 0) << enc.err;
  std::istringstream lines(enc.out);
  std::string line;
  int count = 0;
  while (std::getline(lines, line)) {
    const auto ids = nlohmann::json::parse(line);
    ASSERT_TRUE(ids.is_array()) << line;
    ASSERT_GT(ids.size(), 1u) << line;
    ++count;
  }
  EXPECT_EQ(count, 2);

  const auto dec = run(bin + "/dsrun/dsrun tokenize --decode --no-special --model " + model_.string(), enc.out);
  ASSERT_EQ(dec.exit_code, 0) << dec.err;
  EXPECT_EQ(dec.out, text);

  const auto bad = run(bin + "/dsrun/dsrun tokenize --decode --model " + model_.string(), "[1, 2]\nnot json\n[99999999]\n");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("line 2"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("line 3"), std::string::npos) << bad.err;
  EXPECT_EQ(std::count(bad.out.begin(), bad.out.end(), '\n'), 3) << "one output line per input line";
}

// Checks the documented shape of a `dsrun logits` file: one row of vocab_size finite numbers
// per token id. Returns the parsed document (null on failure, with the failure recorded).
nlohmann::json read_logits(const fs::path& path, std::size_t tokens, std::size_t vocab) {
  const auto j = nlohmann::json::parse(read_file(path), nullptr, /*allow_exceptions=*/false);
  EXPECT_TRUE(j.is_object()) << path;
  if (!j.is_object()) return nullptr;
  EXPECT_TRUE(j.at("model").is_string());
  EXPECT_EQ(j.at("token_ids").size(), tokens);
  EXPECT_EQ(j.at("vocab_size").get<std::size_t>(), vocab);
  const auto& rows = j.at("logits");
  EXPECT_EQ(rows.size(), tokens);
  for (std::size_t r = 0; r < rows.size(); ++r) {
    EXPECT_EQ(rows[r].size(), vocab) << "row " << r;
    std::size_t non_zero = 0;
    for (const auto& v : rows[r]) {
      if (!v.is_number()) {
        ADD_FAILURE() << "row " << r << " holds " << v.dump();
        return nullptr;
      }
      EXPECT_TRUE(std::isfinite(v.get<double>())) << "row " << r;
      non_zero += v.get<double>() != 0.0;
    }
    EXPECT_GT(non_zero, vocab / 2) << "row " << r;
  }
  return j;
}

TEST_F(Apps, LogitsWritesEveryPositionOfADeepSeekModelReproducibly) {
  // tiny-dsv3 (MLA + MoE, YaRN) is the model scripts/hf_reference/ compares with transformers.
  const fs::path ds = model_ / "dsv3";  // removed with model_
  const auto gen = run(bin + "/dsgen/dsgen --preset tiny-dsv3 --seed 1 --force --out " + ds.string());
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  const std::string ids = "0,5,300,42,7,511,1,2";
  const fs::path first = ds / "logits-1.json", second = ds / "logits-2.json";
  for (const auto& out : {first, second}) {
    const auto r = run(bin + "/dsrun/dsrun logits --model " + ds.string() + " --isa scalar --token-ids " +
                       ids + " --out " + out.string());
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  const auto a = read_logits(first, 8, 512);
  ASSERT_FALSE(a.is_null());
  EXPECT_EQ(a.at("token_ids"), nlohmann::json::parse("[" + ids + "]"));
  EXPECT_EQ(a.at("model").get<std::string>(), ds.string());
  EXPECT_NE(a["logits"][0], a["logits"][1]) << "positions with different tokens differ";
  // Same model, same ids: the same numbers, byte for byte.
  EXPECT_EQ(read_file(first), read_file(second));
}

TEST_F(Apps, LogitsTokenizesPromptsLikeTokenize) {
  const fs::path out = model_ / "logits-prompt.json";
  const auto r = run(bin + "/dsrun/dsrun logits --model " + model_.string() + " --prompt 'The cat' --out " +
                     out.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto enc = run(bin + "/dsrun/dsrun tokenize --model " + model_.string(), "The cat\n");
  ASSERT_EQ(enc.exit_code, 0) << enc.err;
  const auto expected = nlohmann::json::parse(enc.out);
  const auto j = read_logits(out, expected.size(), 512);
  ASSERT_FALSE(j.is_null());
  EXPECT_EQ(j.at("token_ids"), expected);

  const auto chat = run(bin + "/dsrun/dsrun logits --model " + model_.string() + " --chat --prompt Hi --out " +
                        out.string());
  ASSERT_EQ(chat.exit_code, 0) << chat.err;
  EXPECT_GT(nlohmann::json::parse(read_file(out)).at("token_ids").size(), 3u) << "the template adds tokens";
}

TEST_F(Apps, LogitsRejectsBadInputWithExitCode2) {
  const std::string cmd = bin + "/dsrun/dsrun logits --model " + model_.string();
  const std::string out = " --out " + (model_ / "logits-bad.json").string();
  std::string too_many = "1";
  for (int i = 1; i < 513; ++i) too_many += ",1";
  const std::pair<std::string, std::string> cases[] = {
      {" --token-ids 1,512" + out, "outside the vocabulary [0, 512)"},
      {" --token-ids 1,-3" + out, "outside the vocabulary"},
      {" --token-ids 1,x" + out, "'x') is not an integer"},
      {" --token-ids 1,,2" + out, "entry 1 ('') is not an integer"},
      {" --token-ids " + too_many + out, "more than 512 tokens"},
      {" --prompt x --token-ids 1" + out, "exactly one of --prompt"},
      {out, "exactly one of --prompt"},
      {" --token-ids 1 --chat" + out, "--chat"},
      {" --token-ids 1 --out /nonexistent/dir/x.json", "cannot open"},
  };
  for (const auto& [args, message] : cases) {
    const auto r = run(cmd + args);
    EXPECT_EQ(r.exit_code, 2) << args.substr(0, 80) << ": " << r.err;
    EXPECT_NE(r.err.find("INVALID_ARGUMENT"), std::string::npos) << args.substr(0, 80) << ": " << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << args.substr(0, 80) << ": " << r.err;
  }
}

// dssim's BUGGIFY flags: a point name no point has is refused with the list, the chances
// need --buggify, and the flags reach the run: with one point enabled for sure and firing
// often, the report names that point alone.
TEST_F(Apps, SimulatorBuggifyFlagsAreCheckedAndTakeEffect) {
  const std::string dssim = bin + "/dssim/dssim --scenario basic --duration 3";
  auto r = run(dssim + " --buggify --buggify-points breaker.nosuch");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("no BUGGIFY point is named breaker.nosuch"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("scheduler.small_step"), std::string::npos) << "the known points are listed: " << r.err;
  r = run(dssim + " --buggify-fire 0.5");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--buggify"), std::string::npos) << r.err;
  r = run(dssim + " --buggify --buggify-points scheduler.small_step --buggify-enable 1 --buggify-fire 0.5");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("buggify scheduler.small_step fired"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("buggify scheduler.preempt"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("buggify breaker."), std::string::npos) << r.out;
}

TEST_F(Apps, EngineBenchWritesTheDocumentedJson) {
  const fs::path json_path = model_ / "bench.json";
  const auto r = run(bin + "/dsbench/dsbench engine --model " + model_.string() +
                     " --batch 1,3 --prompt-len 8 --gen 4 --bw-buffer-mb 128 --peak-tflops 2 --json " +
                     json_path.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(read_file(json_path));
  EXPECT_GT(j.at("mem_bw_gbps").get<double>(), 0.0);
  EXPECT_EQ(j.at("bf16_peak_tflops").get<double>(), 2.0);
  for (const auto& row : j.at("results"))
    EXPECT_DOUBLE_EQ(row.at("prefill_peak_ratio").get<double>(),
                     row.at("prefill_gflops").get<double>() / 2000.0);
  ASSERT_EQ(j.at("results").size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& row = j["results"][i];
    EXPECT_EQ(row.at("batch").get<int>(), i == 0 ? 1 : 3);
    for (const char* field : {"prefill_tokens_per_s", "decode_tokens_per_s", "roofline_tokens_per_s",
                              "roofline_ratio", "mem_bw_gbps"})
      EXPECT_GT(row.at(field).get<double>(), 0.0) << field << " of batch row " << i;
  }
}

// Real processes over UCX on 127.0.0.1 (no ucx_perftest: figures are the benchmark's, not a
// test's). The peer's port sits below the kernel's ephemeral range, in a band no other test uses.
TEST_F(Apps, TransportBenchMeasuresActorsAndBareCallbacksBesideIdlePeers) {
  const int port = 18000 + int(::getpid() % 500) * 2;
  for (const bool actors : {true, false}) {
    const fs::path json_path = model_ / (actors ? "transport-actors.json" : "transport-callbacks.json");
    const auto r = run(bin + "/dsbench/dsbench transport --no-perftest --port " + std::to_string(port) +
                       " --round-trips 200 --warmup 20 --tensor-mb 1 --tensors 2 --tensor-warmup 1" +
                       (actors ? "" : " --no-actors --idle-peers 3") + " --json " + json_path.string());
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
    EXPECT_NE(r.out.find(actors ? "dsrt actors: round trip p50" : "dsrt transport callbacks: round trip p50"),
              std::string::npos) << r.out;
    const auto j = nlohmann::json::parse(read_file(json_path));
    EXPECT_EQ(j.at("actors").get<bool>(), actors);
    EXPECT_EQ(j.at("round_trips").get<int>(), 200);
    EXPECT_EQ(j.at("idle_peers").get<int>(), actors ? 0 : 3);   // all up before the round trips (or an error)
    EXPECT_GT(j.at("rtt_us").at("p50").get<double>(), 0.0);
    EXPECT_EQ(j.contains("tensor_mib_per_s"), actors);   // tensors go only between actors
    for (const char* part : {"encode", "decode", "actor_hop"})
      EXPECT_GT(j.at("hop_costs_us").at(part).get<double>(), 0.0) << part;
    EXPECT_FALSE(j.contains("floor_ratio"));   // it needs ucx_perftest
    if (actors) {
      EXPECT_GT(j.at("tensor_mib_per_s").get<double>(), 0.0);
      EXPECT_EQ(j.at("tensors_over_data_endpoint").get<int>(), 3);   // both peers share this host
    }
  }
}

// --hop-trace: both processes time each frame's stages; the peer's trace comes back to the
// benchmark as it is stopped. It cannot go with --idle-peers (their threads would mark too).
TEST_F(Apps, TransportBenchHopTraceTimesEachStageInBothProcesses) {
  const int port = 18000 + int(::getpid() % 500) * 2 + 1;   // odd: beside the test above under ctest -j
  const fs::path json_path = model_ / "transport-hop-trace.json";
  const auto r = run(bin + "/dsbench/dsbench transport --no-perftest --hop-trace --port " + std::to_string(port) +
                     " --round-trips 300 --warmup 20 --tensor-mb 1 --tensors 1 --tensor-warmup 0 --json " +
                     json_path.string());
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("hop trace, the peer"), std::string::npos) << r.out;
  const auto j = nlohmann::json::parse(read_file(json_path));
  for (const char* who : {"this_process", "peer"}) {
    const auto& trace = j.at("hop_trace").at(who);
    EXPECT_EQ(trace.at("dropped").get<int>(), 0) << who;
    EXPECT_GT(trace.at("arrival_to_posted_ns").get<double>(), 0.0) << who;
    // The actor's path: the link runs in after_callbacks (CAF dispatches to the pinger's or
    // echo's handler, which marks "handler") and replies from there.
    for (const auto& [from, to] : {std::pair{"callbacks", "handler"}, std::pair{"handler", "sending"}}) {
      bool found = false;
      for (const auto& step : trace.at("steps"))
        if (step.at("from") == from && step.at("to") == to) {
          found = true;
          EXPECT_GE(step.at("count").get<int>(), 300) << who << " " << from;
          EXPECT_GT(step.at("p50_ns").get<double>(), 0.0) << who << " " << from;
        }
      EXPECT_TRUE(found) << who << ": no step " << from << " -> " << to << " in " << trace.dump();
    }
  }

  for (const char* other : {"--idle-peers 1", "--link-on-scheduler"}) {
    const auto refused = run(bin + "/dsbench/dsbench transport --hop-trace " + other);
    EXPECT_NE(refused.exit_code, 0) << other;
    EXPECT_NE((refused.out + refused.err).find("excludes"), std::string::npos) << refused.out << refused.err;
  }
}

// An empty prompt is refused by name, not as a request with nothing in it.
TEST_F(Apps, AnEmptyPromptIsRefusedByName) {
  const auto r = run(bin + "/dsrun/dsrun ask --model " + model_.string() + " --prompt ''");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE((r.out + r.err).find("the prompt is empty"), std::string::npos) << r.out << r.err;
}

// --timeout-s ends a run whose requests are still open: it cancels them, counts their
// finals, says so (exit 4) and stops cleanly (their callbacks used to outlive what they
// write to: the process died of a segmentation fault).
TEST_F(Apps, ALoadRunPastItsTimeoutReportsItsOpenRequestsAndStopsCleanly) {
  const auto r = run(bin + "/dsbench/dsbench load --inproc --null-backend --ignore-eos --model " + model_.string() +
                     " --replicas 1 --requests 200000 --concurrency 2 --prompt-len 1 --gen 2000 --timeout-s 1");
  EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
  EXPECT_NE(r.err.find("--timeout-s 1 ended the run"), std::string::npos) << r.err;
  // The two open at the timeout (a final submits the next at once) were cancelled.
  EXPECT_NE(r.out.find("error CANCELLED: 2\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("duplicate_chunks 0 missing_chunks 0 kv_blocks_leaked 0 extra_finals 0"), std::string::npos)
      << r.out;
}

// A --fault names a replica of the runtime that runs, whose count the settings may change:
// one past it, or a negative one, is refused before the load starts (it used to throw
// inside the fault thread and end the process).
TEST_F(Apps, ALoadFaultNamesAReplicaTheRuntimeHas) {
  const std::string load = bin + "/dsbench/dsbench load --inproc --null-backend --model " + model_.string() +
                           " --requests 4 --replicas 2 ";
  auto r = run(load + "--set runtime.replicas=1 --fault fail-steps:1@100");
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("replica outside 0..0"), std::string::npos) << r.err;
  r = run(load + "--fault kill-shard:-1@5");
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("a replica is a number from 0"), std::string::npos) << r.err;
  r = run(load + "--set runtime.replicas=1 --fault fail-steps:0@1-2");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("1 replicas"), std::string::npos) << r.out;
}

}  // namespace
