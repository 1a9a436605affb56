#pragma once
// dsbench transport --hop-trace: a process's hop trace (transport/hop_trace.h) as JSON, read
// back and printed as a table of steps with the path from a frame's arrival to the reply's
// send. The peer process writes its trace as JSON for the benchmark to print beside its own.
#include <nlohmann/json.hpp>

#include <string>

#include "transport/hop_trace.h"

namespace dsrt::apps {

// {"marks", "dropped", "steps": [{"from", "to", "count", "p50_ns", "p90_ns"}...],
//  "arrival_to_posted_ns": the p50s summed along the most taken steps from "arrived" to
//  "posted" (0 when the trace never got there)}.
nlohmann::json hop_trace_json(const transport::hop_trace::summary_t& summary);

// The table, headed by `who`.
void print_hop_trace(const std::string& who, const nlohmann::json& trace);

}  // namespace dsrt::apps
