@0xe1f07c3a9b5d4e02;
# A generation request, its stream of token chunks and its one final message.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("dsrt::wire");

using Common = import "common.capnp";

struct SamplingParams {
  temperature @0 :Float32;   # 0 means greedy
  topK @1 :UInt32;           # 0 means off
  topP @2 :Float32;          # 1 means off
  minP @3 :Float32;          # 0 means off
  seed @4 :UInt64;           # per-request seed for reproducible sampling
}

struct ChatMessage {
  role @0 :Text;             # "system", "user" or "assistant"
  content @1 :Text;
}

struct GenerateRequest {
  requestId @0 :UInt64;
  prompt :union {
    text @1 :Text;                      # raw prompt, at most prompt_bytes_max bytes
    tokens @2 :List(UInt32);            # pre-tokenized prompt
    chat @3 :List(ChatMessage);         # formatted with the model's chat template
  }
  sampling @4 :SamplingParams;
  maxTokens @5 :UInt32;                 # generated tokens, at most max_tokens_max
  stop @6 :List(Text);                  # stop strings, at most stop_strings_max
  priority @7 :UInt8;                   # 0 = highest priority class
  tenant @8 :Text;
  deadlineInMs @9 :UInt64;              # 0 = none, else 1 + ms left when sent, rounded up (transport/wire.h)
}

struct TokenChunk {
  requestId @0 :UInt64;
  sequence @1 :UInt32;                  # 0, 1, 2, ... per request, never repeated
  tokens @2 :List(UInt32);
  text @3 :Text;                        # decoded text; never ends inside a UTF-8 character
}

enum FinishReason {
  stop @0;      # a stop token or stop string
  length @1;    # maxTokens reached
}

struct Usage {
  promptTokens @0 :UInt32;
  completionTokens @1 :UInt32;
}

struct Final {
  requestId @0 :UInt64;
  chunksSent @1 :UInt32;                # number of TokenChunks that precede this final
  union {
    completed :group {
      finishReason @2 :FinishReason;
      usage @3 :Usage;
    }
    error @4 :Common.Error;
  }
  # The whole output, so a client need not reassemble it from the chunks (empty when the
  # request failed before generating anything).
  tokens @5 :List(UInt32);              # every generated token, at most tokens_per_message_max
  text @6 :Text;                        # the whole decoded text
}
