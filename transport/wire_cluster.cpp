// Native <-> Cap'n Proto conversions of the connection messages (cluster.capnp: Hello,
// AuthProof, Heartbeat, Control, Goodbye, DataEndpoint) and of the supervisor's replica messages
// (serving.capnp ReplicaUp, ReplicaDown, ReplicaStatus); wire.h documents them.
#include <array>
#include <cstring>

#include "schemas/cluster.capnp.h"
#include "schemas/serving.capnp.h"
#include "transport/wire.h"
#include "transport/wire_codec.h"

namespace dsrt::transport {

using detail::as_text;
using detail::build;
using detail::cut_utf8;
using detail::guarded;
using detail::out_of_range;
using detail::read_text;

// ---- supervisor -> router ---------------------------------------------------------------

frame_bytes encode(const replica_up_wire& up) {
  return build<wire::ReplicaUp>(frame_type::replica_up, [&](wire::ReplicaUp::Builder b) {
    b.setReplica(up.replica);
    b.setBatcher(as_text(up.batcher));
  });
}

result<replica_up_wire> decode_replica_up(decoded_frame& frame, const wire_limits& limits) {
  return guarded<replica_up_wire>(frame, {frame_type::replica_up}, [&]() -> result<replica_up_wire> {
    const auto r = frame.root<wire::ReplicaUp>();
    auto batcher = read_text(r.getBatcher(), limits.address_bytes_max, "batcher");
    if (!batcher.ok()) return batcher.err();
    return replica_up_wire{r.getReplica(), std::move(batcher.value())};
  });
}

frame_bytes encode(const replica_down_wire& down) {
  return build<wire::ReplicaDown>(frame_type::replica_down, [&](wire::ReplicaDown::Builder b) {
    b.setReplica(down.replica);
    b.setPermanent(down.permanent);
    b.setReason(as_text(std::string(cut_utf8(down.reason, message_text_bytes_max))));
  });
}

result<replica_down_wire> decode_replica_down(decoded_frame& frame) {
  return guarded<replica_down_wire>(frame, {frame_type::replica_down}, [&]() -> result<replica_down_wire> {
    const auto r = frame.root<wire::ReplicaDown>();
    auto reason = read_text(r.getReason(), message_text_bytes_max, "reason");
    if (!reason.ok()) return reason.err();
    return replica_down_wire{r.getReplica(), r.getPermanent(), std::move(reason.value())};
  });
}

frame_bytes encode(const tensor_header_wire& h) {
  return build<wire::TensorHeader>(frame_type::tensor, [&](wire::TensorHeader::Builder b) {
    b.setTag(h.tag);
    b.setBytes(h.bytes);
    b.setDtype(h.dtype);
    auto shape = b.initShape(unsigned(h.shape.size()));
    for (unsigned i = 0; i < h.shape.size(); ++i) shape.set(i, h.shape[i]);
  });
}

result<tensor_header_wire> decode_tensor_header(decoded_frame& frame) {
  return guarded<tensor_header_wire>(frame, {frame_type::tensor}, [&]() -> result<tensor_header_wire> {
    const auto r = frame.root<wire::TensorHeader>();
    tensor_header_wire h;
    h.tag = r.getTag();
    h.bytes = r.getBytes();
    h.dtype = r.getDtype();
    const auto shape = r.getShape();
    if (shape.size() > tensor_dims_max)
      return out_of_range("shape", fmt::format("{} dimensions, at most {}", shape.size(), tensor_dims_max));
    for (const auto d : shape) {
      if (d < 0) return out_of_range("shape", fmt::format("negative dimension {}", d));
      h.shape.push_back(d);
    }
    return h;
  });
}

frame_bytes encode(const replica_status_wire& s) {
  return build<wire::ReplicaStatus>(frame_type::replica_status, [&](wire::ReplicaStatus::Builder b) {
    b.setReplica(s.replica);
    b.setSteps(s.steps);
    b.setHasWork(s.has_work);
    b.setRunning(s.running);
    b.setWaiting(s.waiting);
    b.setFreeBlocks(s.free_blocks);
    b.setTotalBlocks(s.total_blocks);
    b.setLeakedBlocks(s.leaked_blocks);
    b.setPrefixHitTokens(s.prefix_hit_tokens);
    b.setComputedTokens(s.computed_tokens);
    b.setPreemptions(s.preemptions);
  });
}

result<replica_status_wire> decode_replica_status(decoded_frame& frame) {
  return guarded<replica_status_wire>(frame, {frame_type::replica_status}, [&]() -> result<replica_status_wire> {
    const auto r = frame.root<wire::ReplicaStatus>();
    replica_status_wire s;
    s.replica = r.getReplica();
    s.steps = r.getSteps();
    s.has_work = r.getHasWork();
    s.running = r.getRunning();
    s.waiting = r.getWaiting();
    s.free_blocks = r.getFreeBlocks();
    s.total_blocks = r.getTotalBlocks();
    s.leaked_blocks = r.getLeakedBlocks();
    s.prefix_hit_tokens = r.getPrefixHitTokens();
    s.computed_tokens = r.getComputedTokens();
    s.preemptions = r.getPreemptions();
    return s;
  });
}

// ---- connection -------------------------------------------------------------------------

namespace {
capnp::Data::Reader as_data(std::span<const std::byte> bytes) {
  return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size());
}
template <std::size_t N>
result<std::array<std::byte, N>> read_fixed(capnp::Data::Reader data, const char* field) {
  if (data.size() != N) return out_of_range(field, fmt::format("{} bytes, expected {}", data.size(), N));
  std::array<std::byte, N> out;
  std::memcpy(out.data(), data.begin(), N);
  return out;
}
}  // namespace

frame_bytes encode(const hello_wire& hello) {
  return build<wire::Hello>(frame_type::hello, [&](wire::Hello::Builder b) {
    b.setProtocolVersion(hello.protocol_version);
    b.setRole(hello.role == node_role::head     ? wire::Role::HEAD
              : hello.role == node_role::worker ? wire::Role::WORKER
                                                : wire::Role::CLIENT);
    b.setNodeId(hello.node_id);
    b.setIncarnation(hello.incarnation);
    b.setNonce(as_data(hello.nonce));
    b.setHeartbeatIntervalMs(hello.heartbeat_interval_ms);
  });
}

result<hello_wire> decode_hello(decoded_frame& frame) {
  return guarded<hello_wire>(frame, {frame_type::hello}, [&]() -> result<hello_wire> {
    const auto r = frame.root<wire::Hello>();
    hello_wire out;
    out.protocol_version = r.getProtocolVersion();
    switch (r.getRole()) {
      case wire::Role::HEAD: out.role = node_role::head; break;
      case wire::Role::WORKER: out.role = node_role::worker; break;
      case wire::Role::CLIENT: out.role = node_role::client; break;
      default: return out_of_range("role", fmt::format("unknown value {}", unsigned(r.getRole())));
    }
    out.node_id = r.getNodeId();
    out.incarnation = r.getIncarnation();
    auto n = read_fixed<nonce_bytes>(r.getNonce(), "nonce");
    if (!n.ok()) return n.err();
    out.nonce = n.value();
    out.heartbeat_interval_ms = r.getHeartbeatIntervalMs();
    if (out.heartbeat_interval_ms > heartbeat_interval_ms_max)
      return out_of_range("heartbeatIntervalMs", fmt::format("{} ms, above {}", out.heartbeat_interval_ms,
                                                              heartbeat_interval_ms_max));
    return out;
  });
}

frame_bytes encode_auth_proof(const mac& proof) {
  return build<wire::AuthProof>(frame_type::auth_proof,
                                [&](wire::AuthProof::Builder b) { b.setMac(as_data(proof)); });
}

result<mac> decode_auth_proof(decoded_frame& frame) {
  return guarded<mac>(frame, {frame_type::auth_proof},
                      [&]() -> result<mac> { return read_fixed<mac_bytes>(frame.root<wire::AuthProof>().getMac(), "mac"); });
}

frame_bytes encode(const heartbeat_wire& heartbeat) {
  return build<wire::Heartbeat>(frame_type::heartbeat, [&](wire::Heartbeat::Builder b) {
    b.setIncarnation(heartbeat.incarnation);
    b.setSequence(heartbeat.sequence);
  });
}

result<heartbeat_wire> decode_heartbeat(decoded_frame& frame) {
  return guarded<heartbeat_wire>(frame, {frame_type::heartbeat}, [&]() -> result<heartbeat_wire> {
    const auto r = frame.root<wire::Heartbeat>();
    return heartbeat_wire{r.getIncarnation(), r.getSequence()};
  });
}

frame_bytes encode_control(control_op op) {
  return build<wire::Control>(frame_type::control, [&](wire::Control::Builder b) {
    if (op == control_op::drain)
      b.setDrain();
    else
      b.setShutdown();
  });
}

result<control_op> decode_control(decoded_frame& frame) {
  return guarded<control_op>(frame, {frame_type::control}, [&]() -> result<control_op> {
    switch (frame.root<wire::Control>().which()) {
      case wire::Control::DRAIN: return control_op::drain;
      case wire::Control::SHUTDOWN: return control_op::shutdown;
    }
    return out_of_range("Control", "unknown union member");
  });
}

frame_bytes encode(const data_endpoint_wire& endpoint) {
  return build<wire::DataEndpoint>(frame_type::data_endpoint, [&](wire::DataEndpoint::Builder b) {
    b.setWorkerAddress(as_data(endpoint.worker_address));
    b.setHostKey(as_text(endpoint.host_key));
    b.setPid(endpoint.process.pid);
    b.setStartTicks(endpoint.process.start_ticks);
    b.setPidNamespace(endpoint.process.pid_namespace);
    b.setTimeNamespace(endpoint.process.time_namespace);
  });
}

result<data_endpoint_wire> decode_data_endpoint(decoded_frame& frame) {
  return guarded<data_endpoint_wire>(frame, {frame_type::data_endpoint}, [&]() -> result<data_endpoint_wire> {
    const auto r = frame.root<wire::DataEndpoint>();
    const auto address = r.getWorkerAddress();
    if (address.size() > worker_address_bytes_max)
      return out_of_range("workerAddress", fmt::format("{} bytes, at most {}", address.size(), worker_address_bytes_max));
    auto host = read_text(r.getHostKey(), host_key_bytes_max, "hostKey");
    if (!host.ok()) return host.err();
    data_endpoint_wire out;
    const auto* bytes = reinterpret_cast<const std::byte*>(address.begin());
    out.worker_address.assign(bytes, bytes + address.size());
    out.host_key = std::move(host.value());
    out.process = {r.getPid(), r.getStartTicks(), r.getPidNamespace(), r.getTimeNamespace()};
    return out;
  });
}

frame_bytes encode_data_frames() {
  return build<wire::DataFrames>(frame_type::data_frames, [](wire::DataFrames::Builder) {});
}

frame_bytes encode_goodbye(std::string_view reason) {
  return build<wire::Goodbye>(frame_type::goodbye, [&](wire::Goodbye::Builder b) {
    b.setReason(as_text(std::string(cut_utf8(reason, message_text_bytes_max))));
  });
}

result<std::string> decode_goodbye(decoded_frame& frame) {
  return guarded<std::string>(frame, {frame_type::goodbye}, [&]() -> result<std::string> {
    return read_text(frame.root<wire::Goodbye>().getReason(), message_text_bytes_max, "reason");
  });
}

}  // namespace dsrt::transport
