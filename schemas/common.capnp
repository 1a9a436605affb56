@0xc4a2f2d5e3b1a901;
# Types shared by every dsrt wire message.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("dsrt::wire");

# The request contract's error codes (ARCHITECTURE.md, "The contract every request gets").
enum ErrorCode {
  invalidArgument @0;   # HTTP 400
  unauthenticated @1;   # HTTP 401
  overloaded @2;        # HTTP 429, carries retryAfterMs
  unavailable @3;       # HTTP 503, carries retryAfterMs
  deadlineExceeded @4;  # HTTP 504
  cancelled @5;
  internal @6;
}

struct Error {
  code @0 :ErrorCode;
  message @1 :Text;        # human-readable; at most message_text_bytes_max (4096) bytes
  retryAfterMs @2 :UInt32; # milliseconds; 0 when the code carries no retry hint
}
