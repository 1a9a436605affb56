#include "runtime/config/settings.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace dsrt::config {
namespace {

using namespace std::chrono_literals;

// Stand-ins for the config structs of the serving actors.
struct batcher_config {
  std::int64_t batch_tokens_max = 4096;
  int queue_requests_max = 64;
  std::chrono::milliseconds step_timeout_ms = 250ms;
};
struct router_config {
  double kv_free_ratio_min = 0.1;
  bool prefix_routing = true;
  std::string policy = "least_loaded";
  std::string model_path = "";
};

struct fixture : ::testing::Test {
  fixture() {
    s.add("batcher.batch_tokens_max", &batcher.batch_tokens_max, "tokens",
          "Tokens in one forward batch.", 1, 65536);
    s.add("batcher.queue_requests_max", &batcher.queue_requests_max, "requests",
          "Requests waiting before admission says overloaded.", 0, 10000);
    s.add("batcher.step_timeout_ms", &batcher.step_timeout_ms, "Longest | slowest step.", 1ms,
          60000ms);
    s.add("router.kv_free_ratio_min", &router.kv_free_ratio_min, "ratio",
          "Free KV share below which a replica is skipped.", 0.0, 1.0);
    s.add("router.prefix_routing", &router.prefix_routing, "Route by shared prompt prefix.");
    s.add("router.policy", &router.policy, "How a replica is chosen.",
          {"least_loaded", "round_robin"});
    s.add("router.model_path", &router.model_path, "Model directory.");
  }

  // Writes `text` to a fresh file under the test's temporary directory.
  std::filesystem::path write_file(const std::string& name, const std::string& text) {
    const auto dir = std::filesystem::path(::testing::TempDir()) / "dsrt_settings_test";
    std::filesystem::create_directories(dir);
    const auto path = dir / name;
    std::ofstream(path) << text;
    return path;
  }

  // The message of a failed status; fails the test when it succeeded.
  static std::string failure(const status& st, error_code code = error_code::invalid_argument) {
    EXPECT_FALSE(st.ok());
    if (st.ok()) return "";
    EXPECT_EQ(st.err().code, code) << st.err().to_string();
    return st.err().message;
  }

  batcher_config batcher;
  router_config router;
  settings s;
};

using Settings = fixture;

TEST_F(Settings, LoadsNestedJson) {
  ASSERT_TRUE(s.load_json(nlohmann::json::parse(R"({
    "batcher": {"batch_tokens_max": 8192, "step_timeout_ms": 500},
    "router": {"kv_free_ratio_min": 0.25, "prefix_routing": false, "policy": "round_robin"}
  })")).ok());
  EXPECT_EQ(batcher.batch_tokens_max, 8192);
  EXPECT_EQ(batcher.queue_requests_max, 64) << "a key left out keeps its value";
  EXPECT_EQ(batcher.step_timeout_ms, 500ms);
  EXPECT_EQ(router.kv_free_ratio_min, 0.25);
  EXPECT_FALSE(router.prefix_routing);
  EXPECT_EQ(router.policy, "round_robin");
  // A dotted key names the same setting.
  ASSERT_TRUE(s.load_json({{"batcher.queue_requests_max", 7}}).ok());
  EXPECT_EQ(batcher.queue_requests_max, 7);
}

TEST_F(Settings, OverridesAfterAFile) {
  const auto path = write_file("override.json", R"({"batcher": {"batch_tokens_max": 8192}})");
  ASSERT_TRUE(s.load_file(path).ok());
  ASSERT_TRUE(s.set("batcher.batch_tokens_max=1024").ok());
  ASSERT_TRUE(s.set("batcher.step_timeout_ms=30").ok());
  ASSERT_TRUE(s.set("router.kv_free_ratio_min=0.5").ok());
  ASSERT_TRUE(s.set("router.prefix_routing=false").ok());
  ASSERT_TRUE(s.set("router.policy=round_robin").ok());
  ASSERT_TRUE(s.set("router.model_path=/models/a=b").ok()) << "only the first '=' splits";
  EXPECT_EQ(batcher.batch_tokens_max, 1024);
  EXPECT_EQ(batcher.step_timeout_ms, 30ms);
  EXPECT_EQ(router.kv_free_ratio_min, 0.5);
  EXPECT_FALSE(router.prefix_routing);
  EXPECT_EQ(router.policy, "round_robin");
  EXPECT_EQ(router.model_path, "/models/a=b");
}

TEST_F(Settings, BoundsAreInclusive) {
  EXPECT_TRUE(s.set("batcher.batch_tokens_max=1").ok());
  EXPECT_TRUE(s.set("batcher.batch_tokens_max=65536").ok());
  EXPECT_TRUE(s.set("batcher.queue_requests_max=0").ok());
  EXPECT_TRUE(s.set("router.kv_free_ratio_min=1").ok());
  EXPECT_TRUE(s.load_json({{"batcher", {{"step_timeout_ms", 60000}}}}).ok());
  EXPECT_EQ(batcher.step_timeout_ms, 60000ms);
  EXPECT_EQ(failure(s.set("batcher.batch_tokens_max=0")),
            "batcher.batch_tokens_max: 0 is out of range [1, 65536] (tokens)");
  EXPECT_EQ(failure(s.set("batcher.batch_tokens_max=65537")),
            "batcher.batch_tokens_max: 65537 is out of range [1, 65536] (tokens)");
  EXPECT_EQ(failure(s.set("router.kv_free_ratio_min=1.5")),
            "router.kv_free_ratio_min: 1.5 is out of range [0, 1] (ratio)");
  EXPECT_EQ(failure(s.load_json({{"batcher", {{"step_timeout_ms", 0}}}})),
            "batcher.step_timeout_ms: 0 is out of range [1, 60000] (ms)");
  EXPECT_EQ(failure(s.set("batcher.queue_requests_max=99999999999999999999")),
            "batcher.queue_requests_max: 99999999999999999999 is out of range [0, 10000] "
            "(requests)");
  EXPECT_EQ(failure(s.load_json({{"batcher", {{"batch_tokens_max", UINT64_MAX}}}})),
            "batcher.batch_tokens_max: 18446744073709551615 is out of range [1, 65536] (tokens)");
  EXPECT_EQ(failure(s.set("router.kv_free_ratio_min=nan")),
            "router.kv_free_ratio_min: nan is out of range [0, 1] (ratio)");
  EXPECT_EQ(batcher.batch_tokens_max, 65536) << "a failed set changes nothing";
}

TEST_F(Settings, UnknownKeySuggestsTheClosestName) {
  EXPECT_EQ(failure(s.set("batcher.batch_token_max=5")),
            "unknown setting 'batcher.batch_token_max'; did you mean 'batcher.batch_tokens_max'?");
  EXPECT_EQ(failure(s.load_json({{"batchr", {{"batch_tokens_max", 5}}}})),
            "unknown setting 'batchr'; did you mean 'batcher'?");
  EXPECT_EQ(failure(s.load_json({{"router", {{"batch_tokens_max", 5}}}})),
            "unknown setting 'router.batch_tokens_max'; did you mean 'batcher.batch_tokens_max'?");
  EXPECT_EQ(failure(s.set("scheduler.preemption=on")), "unknown setting 'scheduler.preemption'");
  EXPECT_EQ(failure(s.set("batcher=5")), "'batcher' is a section, not a setting");
}

TEST_F(Settings, WrongTypeNamesTheKey) {
  EXPECT_EQ(failure(s.load_json({{"batcher", {{"batch_tokens_max", "4096"}}}})),
            "batcher.batch_tokens_max: expected an integer (tokens), got string \"4096\"");
  EXPECT_EQ(failure(s.load_json({{"batcher", {{"batch_tokens_max", 4096.5}}}})),
            "batcher.batch_tokens_max: expected an integer (tokens), got number 4096.5");
  EXPECT_EQ(failure(s.load_json({{"router", {{"prefix_routing", 1}}}})),
            "router.prefix_routing: expected true or false, got number 1");
  EXPECT_EQ(failure(s.load_json({{"router", {{"policy", 3}}}})),
            "router.policy: expected a string, got number 3");
  EXPECT_EQ(failure(s.load_json({{"router", {{"policy", "random"}}}})),
            "router.policy: \"random\" is not one of least_loaded, round_robin");
  EXPECT_EQ(failure(s.load_json({{"router", 5}})), "router: is a section, expected an object");
  EXPECT_EQ(failure(s.load_json({{"router", {{"policy", nullptr}}}})),
            "router.policy: expected a string, got null");
  EXPECT_EQ(failure(s.load_json(nlohmann::json::array())),
            "settings must be a JSON object, got array");
  EXPECT_EQ(failure(s.set("batcher.batch_tokens_max=4k")),
            "batcher.batch_tokens_max: expected an integer (tokens), got '4k'");
  EXPECT_EQ(failure(s.set("router.prefix_routing=yes")),
            "router.prefix_routing: expected true or false, got 'yes'");
  EXPECT_EQ(failure(s.set("router.kv_free_ratio_min=")),
            "router.kv_free_ratio_min: expected a number (ratio), got ''");
}

TEST_F(Settings, BadAssignmentSyntax) {
  EXPECT_EQ(failure(s.set("batcher.batch_tokens_max")),
            "--set expects section.name=value, got 'batcher.batch_tokens_max'");
  EXPECT_EQ(failure(s.set("=5")), "--set expects section.name=value, got '=5'");
  EXPECT_EQ(failure(s.set("")), "--set expects section.name=value, got ''");
}

TEST_F(Settings, FileErrors) {
  const auto missing = std::filesystem::path(::testing::TempDir()) / "no_such_settings.json";
  EXPECT_NE(failure(s.load_file(missing), error_code::not_found).find("no_such_settings.json"),
            std::string::npos);
  const auto malformed = write_file("malformed.json", R"({"batcher": {"batch_tokens_max": )");
  EXPECT_NE(failure(s.load_file(malformed), error_code::corrupt_data).find("not valid JSON"),
            std::string::npos);
  const auto bad_value = write_file("bad_value.json", R"({"batcher": {"batch_tokens_max": 0}})");
  EXPECT_EQ(failure(s.load_file(bad_value)),
            bad_value.string() + ": batcher.batch_tokens_max: 0 is out of range [1, 65536] (tokens)");
}

TEST_F(Settings, NothingChangesOnAFailedLoad) {
  const auto before = s.to_json();
  // Valid values first (in key order), the bad one last: none of them may land.
  const auto path = write_file("partly_bad.json", R"({
    "batcher": {"batch_tokens_max": 8192, "queue_requests_max": 8},
    "router": {"policy": "round_robin", "prefix_routing": false, "zzz_unknown": 1}
  })");
  EXPECT_FALSE(s.load_file(path).ok());
  EXPECT_FALSE(s.load_json({{"batcher", {{"batch_tokens_max", 8}, {"queue_requests_max", -1}}}})
                   .ok());
  EXPECT_EQ(failure(s.load_json({{"batcher", {{"batch_tokens_max", 8}}},
                                 {"batcher.batch_tokens_max", 9}})),
            "batcher.batch_tokens_max: given twice");
  EXPECT_EQ(s.to_json(), before);
  EXPECT_EQ(batcher.batch_tokens_max, 4096);
  EXPECT_EQ(router.policy, "least_loaded");
}

TEST_F(Settings, ToJsonRoundTrips) {
  const auto defaults = s.to_json();
  EXPECT_EQ(defaults, nlohmann::json::parse(R"({
    "batcher": {"batch_tokens_max": 4096, "queue_requests_max": 64, "step_timeout_ms": 250},
    "router": {"kv_free_ratio_min": 0.1, "model_path": "", "policy": "least_loaded",
               "prefix_routing": true}
  })"));
  ASSERT_TRUE(s.set("batcher.batch_tokens_max=100").ok());
  ASSERT_TRUE(s.set("router.policy=round_robin").ok());
  const auto changed = s.to_json();
  // Loading what to_json wrote reproduces the values, and a second table reads them back.
  ASSERT_TRUE(s.load_json(defaults).ok());
  EXPECT_EQ(batcher.batch_tokens_max, 4096);
  ASSERT_TRUE(s.load_json(nlohmann::json::parse(changed.dump())).ok());
  EXPECT_EQ(s.to_json(), changed);
  EXPECT_EQ(router.policy, "round_robin");
}

TEST_F(Settings, MarkdownTableGolden) {
  ASSERT_TRUE(s.set("batcher.batch_tokens_max=1").ok());  // the table shows defaults
  EXPECT_EQ(s.markdown_table(),
            "| name | unit | default | range | meaning |\n"
            "|---|---|---|---|---|\n"
            "| batcher.batch_tokens_max | tokens | 4096 | [1, 65536] | Tokens in one forward "
            "batch. |\n"
            "| batcher.queue_requests_max | requests | 64 | [0, 10000] | Requests waiting before "
            "admission says overloaded. |\n"
            "| batcher.step_timeout_ms | ms | 250 | [1, 60000] | Longest \\| slowest step. |\n"
            "| router.kv_free_ratio_min | ratio | 0.1 | [0, 1] | Free KV share below which a "
            "replica is skipped. |\n"
            "| router.model_path | text | \"\" | - | Model directory. |\n"
            "| router.policy | enum | \"least_loaded\" | least_loaded, round_robin | How a "
            "replica is chosen. |\n"
            "| router.prefix_routing | bool | true | true, false | Route by shared prompt "
            "prefix. |\n");
}

TEST(SettingsDeathTest, BindingMistakesAreProgrammerErrors) {
  std::int64_t a = 5;
  std::chrono::milliseconds t = 10ms;
  std::string mode = "x";
  settings s;
  s.add("section.a", &a, "count", "A.", 0, 10);
  EXPECT_DEATH(s.add("section.a", &a, "count", "A.", 0, 10), "bound twice");
  EXPECT_DEATH(s.add("section.a.b", &a, "count", "A.", 0, 10), "cannot also be a section");
  EXPECT_DEATH(s.add("Section.B", &a, "count", "A.", 0, 10), "bad setting name");
  EXPECT_DEATH(s.add("section.c", &a, "count", "A.", 6, 10), "default outside");
  EXPECT_DEATH(s.add("section.d", &a, "", "A.", 0, 10), "unit and doc");
  EXPECT_DEATH(s.add("section.timeout", &t, "T.", 1ms, 100ms), "named \\*_ms");
  EXPECT_DEATH(s.add("section.mode", &mode, "M.", {"y", "z"}), "not one of the allowed");
}

}  // namespace
}  // namespace dsrt::config
