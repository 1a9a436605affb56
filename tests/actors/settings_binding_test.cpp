// The runtime's settings binding (actors/runtime_settings.h): every default is the struct's,
// every key writes its own field, the file comes before the overrides, a bad value is
// refused naming its key and changes nothing, and docs/CONFIGURATION.md shows the table the
// binding generates.
#include "actors/runtime_settings.h"
#include "actors/system_config.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace dsrt::actors {
namespace {

using nlohmann::json;

// Every bound field by its key, written out by hand from the structs: the reference the
// binding is held against (a key bound to the wrong field, or a field left out, shows up).
json expected_json(const runtime_options& o, const engine::model_options& m) {
  const auto& sc = o.supervisor.scheduler;
  const auto& ad = o.router.policy.admission;
  const auto& br = o.router.policy.breaker;
  const auto& rc = o.router.response_cache;
  json j;
  j["runtime"] = {{"replicas", o.replicas},
                  {"scheduler_threads", o.scheduler_threads},
                  {"ask_timeout_ms", o.ask_timeout_ms.count()}};
  j["model"] = {{"kv_block_tokens", m.kv_block_tokens},
                {"kv_cache_bytes_max", m.kv_cache_bytes_max},
                {"step_tokens_max", m.step_tokens_max}};
  j["batcher"] = {{"step_tokens_max", sc.step_tokens_max},
                  {"sequences_max", sc.sequences_max},
                  {"prefill_chunk_tokens", sc.prefill_chunk_tokens},
                  {"waiting_sequences_max", sc.waiting_sequences_max},
                  {"priority_classes", sc.priority_classes},
                  {"aging_ms", sc.aging_ms.count()},
                  {"batch_wait_ms", sc.batch_wait_ms.count()},
                  {"batch_fill_sequences", sc.batch_fill_sequences},
                  {"prefix_cached_blocks_max", sc.prefix_cached_blocks_max},
                  {"prefix_cache", sc.prefix_cache},
                  {"stream_interval_tokens", sc.stream_interval_tokens}};
  j["admission"] = {{"queue_requests_max", ad.queue_requests_max},
                    {"queue_tokens_max", ad.queue_tokens_max},
                    {"tenant_queue_requests_max", ad.tenant_queue_requests_max},
                    {"tenant_queue_tokens_max", ad.tenant_queue_tokens_max},
                    {"tenants_max", ad.tenants_max},
                    {"retry_after_min_ms", ad.retry_after_min_ms.count()},
                    {"retry_after_max_ms", ad.retry_after_max_ms.count()},
                    {"drain_sample_ms", ad.drain_sample_ms.count()},
                    {"drain_halflife_ms", ad.drain_halflife_ms.count()}};
  j["breaker"] = {{"window_requests_min", br.window_requests_min},
                  {"window_ms", br.window_ms.count()},
                  {"window_buckets", br.window_buckets},
                  {"error_ratio_open", br.error_ratio_open},
                  {"open_ms", br.open_ms.count()},
                  {"half_open_probes_max", br.half_open_probes_max}};
  j["routing"] = {{"affinity_prefix_tokens", o.router.policy.choice.affinity_prefix_tokens},
                  {"affinity_load_slack_tokens", o.router.policy.choice.affinity_load_slack_tokens},
                  {"request_attempts_max", o.router.policy.request_attempts_max},
                  {"unavailable_retry_after_ms", o.router.policy.unavailable_retry_after_ms.count()},
                  {"probe_verdict_ms", o.router.policy.probe_verdict_ms.count()},
                  {"replica_wait_ms", o.router.policy.replica_wait_ms.count()},
                  {"cache_lookup_timeout_ms", o.router.cache_lookup_timeout_ms.count()},
                  {"stop_strings_max", o.router.policy.stop_strings_max},
                  {"stop_string_bytes_max", o.router.policy.stop_string_bytes_max}};
  j["response_cache"] = {{"entries_max", rc.entries_max}, {"bytes_max", rc.bytes_max}};
  j["supervisor"] = {{"restarts_max", o.supervisor.restarts.restarts_max},
                     {"restart_period_ms", o.supervisor.restarts.period_ms.count()},
                     {"watchdog_interval_ms", o.supervisor.watchdog_interval_ms.count()},
                     {"watchdog_stall_ms", o.supervisor.watchdog_stall_ms.count()}};
  return j;
}

// Every key at a value different from its default and from the other keys' values (so two
// bindings swapped would show), and consistent across fields (tenant limits under the
// all-tenants ones, window_ms a multiple of window_buckets, ...).
json every_key_changed() {
  return json::parse(R"({
    "runtime": {"replicas": 3, "scheduler_threads": 5, "ask_timeout_ms": 20001},
    "model": {"kv_block_tokens": 32, "kv_cache_bytes_max": 268435456, "step_tokens_max": 4097},
    "batcher": {"step_tokens_max": 1025, "sequences_max": 129, "prefill_chunk_tokens": 257,
                "waiting_sequences_max": 2049, "priority_classes": 6, "aging_ms": 777,
                "batch_wait_ms": 7, "batch_fill_sequences": 9,
                "prefix_cached_blocks_max": 4099, "prefix_cache": false, "stream_interval_tokens": 5},
    "admission": {"queue_requests_max": 1001, "queue_tokens_max": 500001,
                  "tenant_queue_requests_max": 101, "tenant_queue_tokens_max": 50001,
                  "tenants_max": 111, "retry_after_min_ms": 51, "retry_after_max_ms": 9001,
                  "drain_sample_ms": 151, "drain_halflife_ms": 2501},
    "breaker": {"window_requests_min": 21, "window_ms": 12000, "window_buckets": 12,
                "error_ratio_open": 0.375, "open_ms": 4001, "half_open_probes_max": 4},
    "routing": {"affinity_prefix_tokens": 33, "affinity_load_slack_tokens": 8193,
                "request_attempts_max": 2, "unavailable_retry_after_ms": 1501, "probe_verdict_ms": 20001,
                "replica_wait_ms": 1701,
                "cache_lookup_timeout_ms": 1201,
                "stop_strings_max": 17, "stop_string_bytes_max": 300},
    "response_cache": {"entries_max": 999, "bytes_max": 2097152},
    "supervisor": {"restarts_max": 13, "restart_period_ms": 30001,
                   "watchdog_interval_ms": 1101, "watchdog_stall_ms": 15001}
  })");
}

// Reports every key whose value differs, or that only one side has.
void expect_same(const json& actual, const json& expected, const std::string& what) {
  const json a = actual.flatten(), e = expected.flatten();
  for (const auto& [key, value] : e.items()) {
    if (!a.contains(key)) {
      ADD_FAILURE() << what << ": " << key << " is missing";
    } else {
      EXPECT_EQ(a[key], value) << what << ": at " << key;
    }
  }
  for (const auto& [key, value] : a.items()) {
    EXPECT_TRUE(e.contains(key)) << what << ": " << key << " is not expected";
  }
}

std::filesystem::path write_file(const std::string& name, const std::string& text) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / "dsrt_settings_binding_test";
  std::filesystem::create_directories(dir);
  const auto path = dir / name;
  std::ofstream(path) << text;
  return path;
}

// The message of a failed status; fails the test when it succeeded.
std::string failure(const status& st) {
  EXPECT_FALSE(st.ok());
  if (st.ok()) return "";
  EXPECT_EQ(st.err().code, error_code::invalid_argument) << st.err().to_string();
  return st.err().message;
}

TEST(SettingsBinding, EveryDefaultIsTheStructDefault) {
  runtime_options o;
  engine::model_options m;
  config::settings s;
  bind_runtime_settings(s, o, m);
  expect_same(s.to_json(), expected_json(runtime_options{}, engine::model_options{}),
              "fresh binding");
}

TEST(SettingsBinding, EveryKeyWritesItsOwnField) {
  const json changed = every_key_changed();
  const json defaults = expected_json(runtime_options{}, engine::model_options{});
  // The file covers every key and changes each one, or this test proves less than it says.
  const json flat = changed.flatten();
  const json flat_defaults = defaults.flatten();  // named: items() does not keep it alive
  for (const auto& [key, value] : flat_defaults.items()) {
    ASSERT_TRUE(flat.contains(key)) << key << " is not in every_key_changed()";
    EXPECT_NE(flat[key], value) << key << " is not changed by every_key_changed()";
  }

  runtime_options o;
  engine::model_options m;
  const auto path = write_file("every_key.json", changed.dump(2));
  const status st = load_runtime_settings(&path, {}, o, m);
  ASSERT_TRUE(st.ok()) << st.err().to_string();
  expect_same(expected_json(o, m), changed, "after loading every_key.json");
  // Run-time fields are left alone.
  EXPECT_EQ(o.router.policy.replicas, 1);
  EXPECT_EQ(o.supervisor.replicas, 1);
  EXPECT_EQ(o.router.policy.context_tokens_max, 4096);
  EXPECT_TRUE(o.supervisor.executors.empty());
}

TEST(SettingsBinding, OverridesApplyAfterTheFileInOrder) {
  runtime_options o;
  engine::model_options m;
  const auto path = write_file("some_keys.json", R"({
    "batcher": {"step_tokens_max": 1024, "prefix_cache": false},
    "breaker.error_ratio_open": 0.25,
    "model": {"kv_block_tokens": 32}
  })");
  const std::vector<std::string> overrides = {
      "batcher.step_tokens_max=3000", "runtime.replicas=4", "breaker.error_ratio_open=0.75",
      "batcher.step_tokens_max=4000", "supervisor.watchdog_stall_ms=2500",
      "routing.affinity_prefix_tokens=0"};
  const status st = load_runtime_settings(&path, overrides, o, m);
  ASSERT_TRUE(st.ok()) << st.err().to_string();

  json expected = expected_json(runtime_options{}, engine::model_options{});
  expected["batcher"]["step_tokens_max"] = 4000;       // the last override wins
  expected["batcher"]["prefix_cache"] = false;         // from the file
  expected["breaker"]["error_ratio_open"] = 0.75;      // an override beats the file
  expected["model"]["kv_block_tokens"] = 32;           // from the file
  expected["runtime"]["replicas"] = 4;
  expected["supervisor"]["watchdog_stall_ms"] = 2500;
  expected["routing"]["affinity_prefix_tokens"] = 0;
  expect_same(expected_json(o, m), expected, "file then overrides");

  // Without a file, the overrides alone; fields already set by the caller stay.
  runtime_options o2;
  engine::model_options m2;
  o2.router.response_cache.entries_max = 7;
  const std::vector<std::string> one = {"response_cache.bytes_max=0"};
  ASSERT_TRUE(load_runtime_settings(nullptr, one, o2, m2).ok());
  EXPECT_EQ(o2.router.response_cache.bytes_max, 0);
  EXPECT_EQ(o2.router.response_cache.entries_max, 7);
}

TEST(SettingsBinding, OutOfRangeIsRejectedNamingTheKeyAndChangesNothing) {
  const json defaults = expected_json(runtime_options{}, engine::model_options{});
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"runtime.replicas=0", "runtime.replicas"},
      {"runtime.replicas=65", "runtime.replicas"},
      {"runtime.ask_timeout_ms=0", "runtime.ask_timeout_ms"},
      {"model.kv_block_tokens=2048", "model.kv_block_tokens"},
      {"model.kv_cache_bytes_max=-1", "model.kv_cache_bytes_max"},
      {"model.step_tokens_max=0", "model.step_tokens_max"},
      {"batcher.sequences_max=0", "batcher.sequences_max"},
      {"batcher.batch_wait_ms=-1", "batcher.batch_wait_ms"},
      {"batcher.prefix_cache=maybe", "batcher.prefix_cache"},
      {"admission.queue_tokens_max=0", "admission.queue_tokens_max"},
      {"breaker.error_ratio_open=1.5", "breaker.error_ratio_open"},
      {"breaker.window_buckets=1001", "breaker.window_buckets"},
      {"routing.request_attempts_max=0", "routing.request_attempts_max"},
      {"routing.stop_string_bytes_max=12x", "routing.stop_string_bytes_max"},
      {"response_cache.entries_max=-1", "response_cache.entries_max"},
      {"supervisor.restarts_max=-1", "supervisor.restarts_max"},
      {"supervisor.watchdog_interval_ms=0", "supervisor.watchdog_interval_ms"},
  };
  for (const auto& [assignment, key] : bad) {
    runtime_options o;
    engine::model_options m;
    // A good override first: a later failure must undo it too.
    const std::vector<std::string> overrides = {"runtime.replicas=5", assignment};
    const std::string message = failure(load_runtime_settings(nullptr, overrides, o, m));
    EXPECT_NE(message.find(key), std::string::npos) << assignment << ": " << message;
    expect_same(expected_json(o, m), defaults, "after " + assignment);
  }

  // In a file: the message names the file and the key.
  runtime_options o;
  engine::model_options m;
  const auto path = write_file("out_of_range.json", R"({"admission": {"tenants_max": 0}})");
  const std::string message = failure(load_runtime_settings(&path, {}, o, m));
  EXPECT_NE(message.find(path.string()), std::string::npos) << message;
  EXPECT_NE(message.find("admission.tenants_max"), std::string::npos) << message;
  expect_same(expected_json(o, m), defaults, "after out_of_range.json");

  // A misspelt key is refused with the name meant.
  const std::vector<std::string> typo = {"batcher.step_token_max=100"};
  const std::string typo_message = failure(load_runtime_settings(nullptr, typo, o, m));
  EXPECT_NE(typo_message.find("did you mean 'batcher.step_tokens_max'"), std::string::npos)
      << typo_message;

  // Limits that relate two keys are checked after the last override, naming both.
  const std::vector<std::string> tenant_above_all = {"admission.tenant_queue_requests_max=2000"};
  const std::string cross = failure(load_runtime_settings(nullptr, tenant_above_all, o, m));
  EXPECT_NE(cross.find("admission"), std::string::npos) << cross;
  EXPECT_NE(cross.find("tenant_queue_requests_max"), std::string::npos) << cross;
  EXPECT_NE(cross.find("queue_requests_max"), std::string::npos) << cross;
  const std::vector<std::string> uneven_window = {"breaker.window_buckets=7"};
  const std::string uneven = failure(load_runtime_settings(nullptr, uneven_window, o, m));
  EXPECT_NE(uneven.find("window_buckets"), std::string::npos) << uneven;
  expect_same(expected_json(o, m), defaults, "after the cross-field failures");
}

std::string read_configuration_doc() {
  const auto path = std::filesystem::path(DSRT_SOURCE_DIR) / "docs" / "CONFIGURATION.md";
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot read " << path;
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

TEST(SettingsBinding, DocumentedExampleLoads) {
  const std::string doc = read_configuration_doc();
  const auto example = doc.find("## Example");
  ASSERT_NE(example, std::string::npos) << "docs/CONFIGURATION.md has no ## Example";
  const std::string fence = "```json\n";
  const auto begin = doc.find(fence, example);
  ASSERT_NE(begin, std::string::npos) << "no ```json block after ## Example";
  const auto end = doc.find("```", begin + fence.size());
  ASSERT_NE(end, std::string::npos);
  const auto path = write_file("example.json",
                               doc.substr(begin + fence.size(), end - begin - fence.size()));
  runtime_options o;
  engine::model_options m;
  const status st = load_runtime_settings(&path, {}, o, m);
  ASSERT_TRUE(st.ok()) << "the documented example: " << st.err().to_string();
  EXPECT_EQ(o.router.policy.admission.queue_requests_max, 512);
}

// docs/CONFIGURATION.md shows markdown_table() between these two lines, so the documented
// names, units, defaults and ranges cannot drift from the code.
constexpr std::string_view table_begin = "<!-- BEGIN GENERATED SETTINGS TABLE";
constexpr std::string_view table_end = "<!-- END GENERATED SETTINGS TABLE -->";

TEST(SettingsBinding, DocumentedTableMatchesTheBinding) {
  runtime_options o;
  engine::model_options m;
  config::settings s;
  bind_runtime_settings(s, o, m);
  const std::string table = s.markdown_table();

  const std::string doc_path = "docs/CONFIGURATION.md";
  const std::string doc = read_configuration_doc();

  const auto begin = doc.find(table_begin);
  ASSERT_NE(begin, std::string::npos) << doc_path << " has no line starting " << table_begin;
  const auto first_row = doc.find('\n', begin);
  const auto end = doc.find(table_end, begin);
  ASSERT_NE(end, std::string::npos) << doc_path << " has no line " << table_end;
  ASSERT_NE(first_row, std::string::npos);
  ASSERT_LT(first_row, end);
  std::string documented = doc.substr(first_row + 1, end - first_row - 1);
  // Blank lines around the table are allowed; the table itself must match byte for byte.
  while (!documented.empty() && documented.front() == '\n') documented.erase(0, 1);
  while (documented.size() > 1 && documented.ends_with("\n\n")) documented.pop_back();
  // Not EXPECT_EQ: its diff would print the table three times; once is enough to paste.
  EXPECT_TRUE(documented == table)
      << doc_path << " is out of date. Replace the lines between the markers with:\n\n"
      << table;
}

// Every actor system runs CAF's work stealing with the short idle polling of
// system_config.h (a key CAF does not take would leave its default in place, silently but
// for a line on stderr): work sharing's one condition variable hung nodes on Debian 12.
TEST(SystemConfig, ActorSystemsUseWorkStealingWithShortIdlePolling) {
  const auto config = make_system_config(3);
  EXPECT_EQ(caf::get<caf::atom_value>(*config, "scheduler.policy"), caf::atom("stealing"));
  EXPECT_EQ(caf::get<std::size_t>(*config, "scheduler.max-threads"), 3u);
  EXPECT_EQ(caf::get<std::size_t>(*config, "work-stealing.aggressive-poll-attempts"), scheduler_spin_polls);
  EXPECT_EQ(caf::get<std::size_t>(*config, "work-stealing.moderate-poll-attempts"), scheduler_moderate_polls);
  EXPECT_EQ(caf::get<caf::timespan>(*config, "work-stealing.moderate-sleep-duration"),
            caf::timespan{scheduler_moderate_sleep});
  EXPECT_EQ(caf::get<caf::timespan>(*config, "work-stealing.relaxed-sleep-duration"),
            caf::timespan{scheduler_idle_sleep});
  // And an actor system starts with it and runs a message.
  caf::actor_system system{*config};
  caf::scoped_actor self{system};
  auto echo = system.spawn([]() -> caf::behavior { return {[](int x) { return x + 1; }}; });
  int answer = 0;
  self->request(echo, std::chrono::seconds(10), 41).receive([&](int x) { answer = x; }, [](caf::error&) {});
  EXPECT_EQ(answer, 42);
}

}  // namespace
}  // namespace dsrt::actors
