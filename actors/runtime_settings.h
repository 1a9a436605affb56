#pragma once
// The runtime's one configuration: every limit of runtime_options and model_options bound to
// a dotted name with a unit, bounds and a one-line doc (config::settings). A JSON file
// (--config FILE) is read first, then --set section.name=value overrides in order.
// docs/CONFIGURATION.md holds the generated table; test_actors SettingsBinding.* keeps it
// equal to markdown_table().
//
// Sections: runtime, model, batcher, admission, breaker, routing, response_cache,
// supervisor. Not bound, because they are not configuration: the executors and fault
// hooks (set by local_runtime::start), router/supervisor replicas (copied from
// runtime.replicas), and the router's vocab_size, context_tokens_max and stop_token_ids
// (they come from the model).
//
// Thread safety: none; configure at start-up, before the runtime reads the structs.
#include <filesystem>
#include <span>
#include <string>

#include "actors/local_runtime.h"
#include "runtime/config/settings.h"
#include "runtime/engine/causal_lm.h"
#include "runtime/error.h"

namespace dsrt::actors {

// runtime.replicas' bound: the replicas of one node (and of a cluster, whose head takes
// the cluster's count as its own).
inline constexpr int runtime_replicas_max = 64;

// Binds every configurable field of o and m to s; their current values become the defaults
// markdown_table() shows.
// REQUIRES: s has none of these names bound yet; every field of o and m is within its bounds
// (true of default-constructed structs); o and m outlive s.
void bind_runtime_settings(config::settings& s, actors::runtime_options& o,
                           engine::model_options& m);

// Binds, loads `file` when not null, applies `overrides` ("section.name=value") in order,
// then checks the limits that relate fields to each other (policy::validate and
// batching::validate, e.g. a tenant limit above its all-tenants limit).
// All or nothing: o and m are written only when every step succeeds.
// Errors: as config::settings::load_file and set (invalid_argument naming the key;
// not_found / corrupt_data for the file), and invalid_argument naming the section and
// fields when a cross-field check fails.
// REQUIRES: as bind_runtime_settings.
status load_runtime_settings(const std::filesystem::path* file,
                             std::span<const std::string> overrides, actors::runtime_options& o,
                             engine::model_options& m);

}  // namespace dsrt::actors
