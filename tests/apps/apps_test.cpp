// The tools as a user runs them: real processes, real files, exit codes and output checked.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

namespace {

namespace fs = std::filesystem;

const std::string bin = DSRT_BINARY_DIR "/apps";

struct command_result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Runs a shell command with stdout and stderr captured to files; `input` goes to stdin.
command_result run(const std::string& command, const std::string& input = "") {
  static int counter = 0;
  const fs::path dir = fs::temp_directory_path() / ("dsrt-apps-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string id = std::to_string(counter++);
  const fs::path in = dir / (id + ".in"), out = dir / (id + ".out"), err = dir / (id + ".err");
  std::ofstream(in, std::ios::binary) << input;
  const std::string full = command + " < " + in.string() + " > " + out.string() + " 2> " + err.string();
  const int status = std::system(full.c_str());
  command_result r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

class Apps : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = fs::temp_directory_path() / ("dsrt-apps-model-" + std::to_string(::getpid()));
    const auto r = run(bin + "/dsgen/dsgen --preset tiny-llama --seed 3 --force --out " + model_.string());
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(model_, ec);
    fs::remove_all(fs::temp_directory_path() / ("dsrt-apps-test-" + std::to_string(::getpid())), ec);
  }
  static fs::path model_;
};
fs::path Apps::model_;

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

// Connecting to a cluster takes its secret: without --secret-file the tool says so.
TEST_F(Apps, ConnectingToAClusterNeedsItsSecretFile) {
  for (const std::string cmd : {"dsrun/dsrun ask --prompt x", "dsbench/dsbench load --requests 1"}) {
    const auto r = run(bin + "/" + cmd + " --model " + model_.string() + " --connect dsrt://127.0.0.1:1");
    EXPECT_NE(r.exit_code, 0) << cmd;
    EXPECT_NE((r.out + r.err).find("--connect requires --secret-file"), std::string::npos) << cmd << ": " << r.out << r.err;
  }
}

// dsrun refuses what it cannot honour before it starts a node: a --node-arg naming a flag it
// gives the nodes itself (the node would refuse it twice; a head-only or worker-only one
// would stop the other kind), and nodes on other hosts without a run directory they share.
TEST_F(Apps, DsrunClusterRefusesNodeArgsItSetsAndRemoteNodesWithoutARunDirectory) {
  const std::string cluster = bin + "/dsrun/dsrun cluster --model " + model_.string() + " --prompt x";
  for (const std::string arg : {"--threads=4", "--node-id=3", "--replicas", "--drain-timeout-ms=10"}) {
    const auto r = run(cluster + " --nodes 2 --node-arg=" + arg);
    EXPECT_EQ(r.exit_code, 2) << arg << ": " << r.err;
    EXPECT_NE(r.err.find("--node-arg=" + arg + ": dsrun sets"), std::string::npos) << r.err;
    EXPECT_EQ(r.out.find("cluster ready"), std::string::npos) << r.out;
  }
  const fs::path hosts = fs::temp_directory_path() / ("dsrt-apps-hosts-" + std::to_string(::getpid()));
  std::ofstream(hosts) << "127.0.0.1\n127.0.0.1\n";
  const auto r = run(cluster + " --hostfile " + hosts.string() + " --ssh false");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--hostfile needs --run-dir"), std::string::npos) << r.err;
  fs::remove(hosts);
}

// A node's replicas come from --replicas: settings naming another count are refused before
// anything loads, not half applied (the worker used to load the settings' count of models
// and then fail on the mismatch; the head ignored it).
TEST_F(Apps, DsnodeRefusesSettingsWithAnotherReplicaCount) {
  for (const std::string kind : {"head", "worker"}) {
    const auto r = run(bin + "/dsnode/dsnode " + kind + " --model " + model_.string() +
                       " --secret-file /nonexistent --replicas 1 --set runtime.replicas=2");
    EXPECT_EQ(r.exit_code, 2) << kind << ": " << r.err;
    EXPECT_NE(r.err.find("runtime.replicas is 2 in the settings but --replicas is 1"), std::string::npos) << r.err;
  }
}

// A port nothing listens on (the kernel's choice, released at once).
int unused_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    return 1;
  ::close(fd);
  return ntohs(a.sin_port);
}

// A worker whose head cannot be reached says so (once, then every 10 s) and keeps trying
// until it is stopped; it also runs with heartbeats faster than the transport's 20 ms tick
// (which used to refuse them with a message about a field no flag sets).
TEST_F(Apps, ADsnodeWorkerThatCannotReachItsHeadSaysSoAndKeepsTrying) {
  const fs::path secret = fs::temp_directory_path() / ("dsrt-apps-secret-" + std::to_string(::getpid()));
  std::ofstream(secret) << std::string(64, 'a') << "\n";
  fs::permissions(secret, fs::perms::owner_read | fs::perms::owner_write);
  const std::string head = "127.0.0.1:" + std::to_string(unused_port());
  const auto r = run("timeout -s TERM 8 " + bin + "/dsnode/dsnode worker --model " + model_.string() +
                     " --null-backend --secret-file " + secret.string() + " --head " + head +
                     " --heartbeat-interval-ms 10 --heartbeat-timeout-ms 100");
  EXPECT_EQ(r.exit_code, 124) << r.out << r.err;   // still trying when timeout stopped it
  const std::string log = r.out + r.err;
  EXPECT_EQ(count_of(log, "cannot reach the head at " + head), 1u) << log;
  EXPECT_NE(log.find("(1 tries; trying again every 200 ms)"), std::string::npos) << log;
  EXPECT_NE(log.find("stopping"), std::string::npos) << log;
  fs::remove(secret);
}

}  // namespace
