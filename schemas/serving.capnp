@0xb7d3c9a1e5f20c44;
# Messages between the serving actors (router, batcher, shard, supervisor) when they run in
# different processes. Inside one process the actors pass the native structs of
# actors/messages.h, one per struct here (tests/foundation/schema_correspondence_test.cpp).

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("dsrt::wire");

using Common = import "common.capnp";
using Request = import "request.capnp";

# batching::sequence_request: one request as a batcher schedules it.
struct SequenceRequest {
  id @0 :UInt64;
  tokens @1 :List(Int32);        # prompt (+ tokens already streamed, on resumption)
  promptTokens @2 :Int64;        # of which the client's prompt
  drawBase @3 :Int64;            # generated tokens before `tokens` ended
  maxNewTokens @4 :Int64;        # tokens to generate after `tokens`
  sampling @5 :Request.SamplingParams;
  priority @6 :UInt8;            # 0 = highest class
  deadlineInMs @7 :UInt64;       # 0 = none, else 1 + ms left when sent, rounded up
}

# One attempt of a request on one replica (router -> batcher).
struct ReplicaRequest {
  requestId @0 :UInt64;
  attempt @1 :UInt32;            # chunks of an older attempt are dropped
  sequence @2 :SequenceRequest;
  stopTokenIds @3 :List(Int32);
  replica @4 :Int32;             # which of the worker's replicas runs it (the router's choice)
}

# Tokens a replica generated (batcher -> router).
struct ReplicaChunk {
  requestId @0 :UInt64;
  attempt @1 :UInt32;
  replica @2 :Int32;
  tokens @3 :List(Int32);
}

# Every chunk of one step (batcher -> router), sent before that step's finals.
struct ReplicaChunks {
  chunks @0 :List(ReplicaChunk);   # at most one per sequence of the step
}

# An attempt ended on its replica (batcher -> router).
struct ReplicaFinal {
  requestId @0 :UInt64;
  attempt @1 :UInt32;
  replica @2 :Int32;
  union {
    finished @3 :Request.FinishReason;
    error @4 :Common.Error;
  }
}

struct BlockCopy {
  from @0 :Int32;
  to @1 :Int32;
}

# batching::planned_sequence: one sequence's slice of a step.
struct PlannedSequence {
  id @0 :UInt64;
  tokens @1 :List(Int32);        # the slice to compute
  firstPosition @2 :Int64;
  blockTable @3 :List(Int32);    # covers firstPosition + tokens
  sample @4 :Bool;               # the slice ends the sequence: sample a token
  drawIndex @5 :Int64;           # which generated token that sample is
  sampling @6 :Request.SamplingParams;
}

# A step for a shard (batcher -> shard); at most step_tokens_max tokens in all.
struct StepRequest {
  step @0 :UInt64;
  sequences @1 :List(PlannedSequence);
  copies @2 :List(BlockCopy);    # copy-on-write copies to apply first
}

# What a shard did with a step (shard -> batcher).
struct StepResult {
  step @0 :UInt64;
  sampled @1 :List(Int32);       # one per planned sequence with sample set, in plan order
  durationUs @2 :Int64;          # microseconds of forward pass and sampling
  error @3 :Common.Error;        # set when the step failed
  failed @4 :Bool;
}

# A batcher's progress (batcher -> supervisor's watchdog, metrics).
struct ReplicaStatus {
  replica @0 :Int32;
  steps @1 :UInt64;              # steps completed since the batcher started
  hasWork @2 :Bool;
  running @3 :Int32;
  waiting @4 :Int32;
  freeBlocks @5 :Int32;
  totalBlocks @6 :Int32;
  leakedBlocks @7 :Int32;        # always 0 unless there is a bug
  prefixHitTokens @8 :Int64;
  computedTokens @9 :Int64;
  preemptions @10 :Int64;
}

# Router -> cache: the answer of a completed deterministic (temperature 0) request.
struct ResponseKey {
  model @0 :Text;
  prompt @1 :List(Int32);
  maxTokens @2 :Int32;
  stopTokenIds @3 :List(Int32);
  stopStrings @4 :List(Text);
}
struct ResponseStore {
  key @0 :ResponseKey;
  tokens @1 :List(Int32);
  text @2 :Text;
  finished @3 :Request.FinishReason;
}

# Router -> cache, when no replica can serve: is the answer cached?
struct ResponseLookup {
  key @0 :ResponseKey;
}
struct ResponseFound {
  found @0 :Bool;
  tokens @1 :List(Int32);
  text @2 :Text;
  finished @3 :Request.FinishReason;
}

# Supervisor -> router: a replica's batcher is serving (again).
struct ReplicaUp {
  replica @0 :Int32;
  batcher @1 :Text;              # the batcher's actor address
}

# Supervisor -> router: a replica went down.
struct ReplicaDown {
  replica @0 :Int32;
  permanent @1 :Bool;            # its restart budget is spent
  reason @2 :Text;               # at most 4096 bytes
}
