@0x87c1e612c2c3c57d;
# Messages of the cluster layer (transport/): connection setup and authentication,
# liveness, request ids across the process boundary, and control. Every frame on a
# connection is one of these or one of request.capnp / serving.capnp, named by the frame's
# type (transport/frame.h).

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("dsrt::wire");

enum Role {
  head @0;      # router + cluster supervisor
  worker @1;    # batchers, shards, cache, node supervisor
  client @2;    # an app's embedded client or dsbench
}

# The first frame each side sends on a new connection.
struct Hello {
  protocolVersion @0 :UInt16;
  role @1 :Role;
  nodeId @2 :Int32;            # -1 for a client
  incarnation @3 :UInt64;      # new each time the process starts
  nonce @4 :Data;              # 32 fresh random bytes
  heartbeatIntervalMs @5 :UInt32;   # how often this side sends heartbeats (0: not said)
}

# Proof of the cluster secret, after the peer's Hello (transport/auth.h says what the MAC
# covers). Nothing but Hello and AuthProof is accepted before the peer's proof checks out.
struct AuthProof {
  mac @0 :Data;                # 32 bytes: HMAC-SHA256
}

# Liveness, both ways, every heartbeat_interval_ms.
struct Heartbeat {
  incarnation @0 :UInt64;
  sequence @1 :UInt64;
}

# Stop a request (client -> head) or an attempt (head -> worker).
struct Cancel {
  requestId @0 :UInt64;
}

# Operations (dsrun -> head, head -> workers).
struct Control {
  union {
    drain @0 :Void;            # accept nothing new; in-flight requests finish
    shutdown @1 :Void;         # stop the process
  }
}

# Why a peer closes a connection (best effort, just before closing).
struct Goodbye {
  reason @0 :Text;             # at most 4096 bytes
}

# Sent by each side once its peer has proved the secret: where to send this side the bulk
# tensors of this connection. A peer on the same host (hostKey equal to its own) that sent
# a workerAddress of its own opens a UCX endpoint from this one and sends the tensors there, each prefixed by the
# connection's token, which both sides derive from the handshake and never send
# (transport/auth.h data_token); otherwise, or with an empty workerAddress, tensors stay on
# the connection (transport/ucx_transport.h).
struct DataEndpoint {
  workerAddress @0 :Data;      # ucp_worker_get_address; at most worker_address_bytes_max
  hostKey @1 :Text;            # hostname and boot id; at most host_key_bytes_max
  pid @2 :UInt32;              # the sender's process on that host (0: not known), its
  startTicks @3 :UInt64;       # start time (/proc/PID/stat), pid and time namespaces (the
  pidNamespace @4 :UInt64;     # inodes of /proc/PID/ns/pid and .../time): a peer can tell
  timeNamespace @5 :UInt64;    # when it has ended (transport/local_process.h)
}

# Sent once on the connection by a side that has opened a data endpoint to its peer, just
# before its first message over it: from here on this side's frames (all but the session's
# own heartbeats) travel the data endpoint too, each prefixed by the token. The receiver
# holds what arrives over the data endpoint until it has read this, so frames keep the order
# they were sent in across the switch (transport/ucx_transport.h).
struct DataFrames {}

# A bulk tensor (activations, KV blocks): this header travels as the frame, the bytes as
# the payload of the same UCX active message — by rendezvous straight from the sender's
# buffer into the receiver's, never through Cap'n Proto (transport/ucx_transport.h).
struct TensorHeader {
  tag @0 :UInt64;              # what the receiver matches it to (a step, a block id)
  bytes @1 :UInt64;            # payload size; must equal what arrives
  dtype @2 :UInt8;             # kernels::dtype
  shape @3 :List(Int64);       # at most tensor_dims_max dimensions
}
