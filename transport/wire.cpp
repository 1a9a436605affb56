// Native <-> Cap'n Proto conversions of a request's messages (wire.h): client <-> head
// (GenerateRequest, TokenChunk, Final, Cancel) and head <-> worker (ReplicaRequest,
// ReplicaChunks, ReplicaFinal). Each encode fills a builder; each decode checks the frame
// type, reads every field under a kj::Exception guard (wire_codec.h) and checks each value
// against wire_limits before it reaches a native struct. wire_cluster.cpp has the rest.
#include "transport/wire.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <optional>

#include "schemas/cluster.capnp.h"
#include "schemas/common.capnp.h"
#include "schemas/request.capnp.h"
#include "schemas/serving.capnp.h"
#include "transport/wire_codec.h"

namespace dsrt::transport {

using detail::as_text;
using detail::build;
using detail::first_segment_words;
using detail::cut_utf8;
using detail::guarded;
using detail::out_of_range;
using detail::read_text;

namespace {

constexpr std::int64_t int32_max = std::numeric_limits<std::int32_t>::max();

// Token ids are in [0, 2^31) whether the list is UInt32 or Int32; `budget` is what is
// left of tokens_per_message_max.
template <class List>
status read_tokens(List list, std::size_t& budget, const char* field, std::vector<std::int32_t>& out) {
  if (list.size() > budget)
    return out_of_range(field, fmt::format("{} tokens, over the message's limit", list.size()));
  budget -= list.size();
  out.clear();
  out.reserve(list.size());
  for (std::int64_t token : list) {
    if (token < 0 || token > int32_max) return out_of_range(field, fmt::format("token id {}", token));
    out.push_back(std::int32_t(token));
  }
  return ok_status();
}

// Negative ids (never valid) become ids >= 2^31 on a UInt32 list, which decoding refuses.
void write_tokens(capnp::List<std::uint32_t>::Builder list, const std::vector<std::int32_t>& tokens) {
  for (unsigned i = 0; i < tokens.size(); ++i) list.set(i, static_cast<std::uint32_t>(tokens[i]));
}
void write_tokens(capnp::List<std::int32_t>::Builder list, const std::vector<std::int32_t>& tokens) {
  for (unsigned i = 0; i < tokens.size(); ++i) list.set(i, tokens[i]);
}

std::uint32_t saturate_u32(std::int64_t v) {
  return std::uint32_t(std::clamp<std::int64_t>(v, 0, std::numeric_limits<std::uint32_t>::max()));
}

void write_sampling(wire::SamplingParams::Builder b, const engine::sampling_params& p) {
  b.setTemperature(p.temperature);
  b.setTopK(saturate_u32(p.top_k));
  b.setTopP(p.top_p);
  b.setMinP(p.min_p);
  b.setSeed(p.seed);
}

result<engine::sampling_params> read_sampling(wire::SamplingParams::Reader r) {
  engine::sampling_params p;
  p.temperature = r.getTemperature();
  p.top_p = r.getTopP();
  p.min_p = r.getMinP();
  p.seed = r.getSeed();
  // Ranges are engine::validate()'s business; NaN and infinities never make sense.
  if (!std::isfinite(p.temperature) || !std::isfinite(p.top_p) || !std::isfinite(p.min_p))
    return out_of_range("sampling", "a non-finite temperature, topP or minP");
  if (r.getTopK() > int32_max) return out_of_range("sampling.topK", fmt::format("{}", r.getTopK()));
  p.top_k = int(r.getTopK());
  return p;
}

wire::FinishReason to_wire(serving::finish_reason r) {
  return r == serving::finish_reason::stop ? wire::FinishReason::STOP : wire::FinishReason::LENGTH;
}
result<serving::finish_reason> read_finish(wire::FinishReason r) {
  switch (r) {
    case wire::FinishReason::STOP: return serving::finish_reason::stop;
    case wire::FinishReason::LENGTH: return serving::finish_reason::length;
  }
  return out_of_range("finishReason", fmt::format("unknown value {}", unsigned(r)));
}

wire::ErrorCode to_wire(error_code c) {
  switch (c) {
    case error_code::invalid_argument: return wire::ErrorCode::INVALID_ARGUMENT;
    case error_code::unauthenticated: return wire::ErrorCode::UNAUTHENTICATED;
    case error_code::overloaded: return wire::ErrorCode::OVERLOADED;
    case error_code::unavailable: return wire::ErrorCode::UNAVAILABLE;
    case error_code::deadline_exceeded: return wire::ErrorCode::DEADLINE_EXCEEDED;
    case error_code::cancelled: return wire::ErrorCode::CANCELLED;
    // Local codes the request contract does not have: to a client they are our fault.
    case error_code::internal:
    case error_code::not_found:
    case error_code::corrupt_data:
    case error_code::unsupported: return wire::ErrorCode::INTERNAL;
  }
  return wire::ErrorCode::INTERNAL;
}

void write_error(wire::Error::Builder b, const error& e, std::uint32_t retry_after_ms) {
  b.setCode(to_wire(e.code));
  b.setMessage(as_text(std::string(cut_utf8(e.message, message_text_bytes_max))));
  b.setRetryAfterMs(retry_after_ms);
}

struct wire_error {
  error value;
  std::uint32_t retry_after_ms;
};
result<wire_error> read_error(wire::Error::Reader r) {
  static constexpr error_code codes[] = {
      error_code::invalid_argument, error_code::unauthenticated, error_code::overloaded,
      error_code::unavailable,      error_code::deadline_exceeded, error_code::cancelled,
      error_code::internal};
  const auto code = static_cast<std::uint16_t>(r.getCode());
  if (code >= std::size(codes)) return out_of_range("error.code", fmt::format("unknown value {}", code));
  auto message = read_text(r.getMessage(), message_text_bytes_max, "error.message");
  if (!message.ok()) return message.err();
  return wire_error{error{codes[code], std::move(message.value())}, r.getRetryAfterMs()};
}

// a - b, clamped to [-max, max] (a deadline of clock_time::max() must not overflow).
template <class Duration>
Duration clamped_distance(Duration a, Duration b, Duration max) {
  typename Duration::rep diff = 0;
  if (__builtin_sub_overflow(a.count(), b.count(), &diff)) return a > b ? max : -max;
  return std::clamp(Duration(diff), -max, max);
}

}  // namespace

clock_anchor clock_anchor::now() {
  return clock_anchor{std::chrono::steady_clock::now()};
}

std::uint64_t deadline_to_wire(const std::optional<clock_time>& deadline, const clock_anchor& now) {
  if (!deadline) return 0;
  const auto far = std::chrono::duration_cast<clock_time::duration>(wire_limits{}.deadline_distance_max);
  const auto ahead = clamped_distance(deadline->time_since_epoch(), now.steady.time_since_epoch(), far);
  // Rounded up, so the receiver never stops a request before its deadline; 1 = due now.
  return 1 + std::uint64_t(std::max<std::int64_t>(std::chrono::ceil<milliseconds>(ahead).count(), 0));
}

std::optional<clock_time> deadline_from_wire(std::uint64_t in_ms, const clock_anchor& now, const wire_limits& limits) {
  if (in_ms == 0) return std::nullopt;
  // Clamped before the arithmetic (in_ms may be anything a peer sends).
  const auto ahead = std::min<std::uint64_t>(in_ms - 1, std::uint64_t(limits.deadline_distance_max.count()));
  return now.steady + milliseconds(std::int64_t(ahead));
}

// ---- client <-> head --------------------------------------------------------------------

frame_bytes encode(const serving::generate_request& request, const clock_anchor& now) {
  return build<wire::GenerateRequest>(frame_type::generate, [&](wire::GenerateRequest::Builder b) {
    b.setRequestId(request.request_id);
    write_tokens(b.getPrompt().initTokens(unsigned(request.prompt.size())), request.prompt);
    write_sampling(b.initSampling(), request.sampling);
    b.setMaxTokens(saturate_u32(request.max_tokens));
    auto stop = b.initStop(unsigned(request.stop.size()));
    for (unsigned i = 0; i < request.stop.size(); ++i) stop.set(i, as_text(request.stop[i]));
    // Only a few priority classes exist; anything beyond the UInt8 is the lowest anyway.
    b.setPriority(std::uint8_t(std::clamp(request.priority, 0, 255)));
    b.setTenant(as_text(request.tenant));
    b.setDeadlineInMs(deadline_to_wire(request.deadline, now));
  }, first_segment_words(request.prompt.size(), 4 + request.stop.size()));
}

result<serving::generate_request> decode_generate_request(decoded_frame& frame, const clock_anchor& now,
                                                          const wire_limits& limits) {
  return guarded<serving::generate_request>(frame, {frame_type::generate}, [&]() -> result<serving::generate_request> {
    const auto r = frame.root<wire::GenerateRequest>();
    serving::generate_request out;
    out.request_id = r.getRequestId();
    switch (r.getPrompt().which()) {
      case wire::GenerateRequest::Prompt::TOKENS: break;
      case wire::GenerateRequest::Prompt::TEXT:
      case wire::GenerateRequest::Prompt::CHAT:
        return make_error(error_code::invalid_argument,
                          "the head takes token prompts only: send a tokenized prompt");
      default: return out_of_range("prompt", "unknown union member");
    }
    std::size_t budget = limits.tokens_per_message_max;
    DSRT_TRY(read_tokens(r.getPrompt().getTokens(), budget, "prompt.tokens", out.prompt));
    auto sampling = read_sampling(r.getSampling());
    if (!sampling.ok()) return sampling.err();
    out.sampling = sampling.value();
    if (r.getMaxTokens() > int32_max) return out_of_range("maxTokens", fmt::format("{}", r.getMaxTokens()));
    out.max_tokens = std::int32_t(r.getMaxTokens());
    const auto stop = r.getStop();
    if (stop.size() > limits.stop_strings_max)
      return out_of_range("stop", fmt::format("{} stop strings, at most {}", stop.size(), limits.stop_strings_max));
    for (auto s : stop) {
      auto text = read_text(s, limits.stop_string_bytes_max, "stop");
      if (!text.ok()) return text.err();
      out.stop.push_back(std::move(text.value()));
    }
    out.priority = r.getPriority();
    auto tenant = read_text(r.getTenant(), limits.tenant_bytes_max, "tenant");
    if (!tenant.ok()) return tenant.err();
    out.tenant = std::move(tenant.value());
    out.deadline = deadline_from_wire(r.getDeadlineInMs(), now, limits);
    return out;
  });
}

frame_bytes encode(const serving::token_chunk& chunk) {
  return build<wire::TokenChunk>(frame_type::token_chunk, [&](wire::TokenChunk::Builder b) {
    b.setRequestId(chunk.request_id);
    b.setSequence(chunk.sequence);
    write_tokens(b.initTokens(unsigned(chunk.tokens.size())), chunk.tokens);
    b.setText(as_text(chunk.text));
  }, first_segment_words(chunk.tokens.size() + chunk.text.size() / 4));
}

result<serving::token_chunk> decode_token_chunk(decoded_frame& frame, const wire_limits& limits) {
  return guarded<serving::token_chunk>(frame, {frame_type::token_chunk}, [&]() -> result<serving::token_chunk> {
    const auto r = frame.root<wire::TokenChunk>();
    serving::token_chunk out;
    out.request_id = r.getRequestId();
    out.sequence = r.getSequence();
    std::size_t budget = limits.tokens_per_message_max;
    DSRT_TRY(read_tokens(r.getTokens(), budget, "tokens", out.tokens));
    auto text = read_text(r.getText(), limits.output_text_bytes_max, "text");
    if (!text.ok()) return text.err();
    out.text = std::move(text.value());
    return out;
  });
}

frame_bytes encode(const serving::final_message& final) {
  return build<wire::Final>(frame_type::final, [&](wire::Final::Builder b) {
    b.setRequestId(final.request_id);
    b.setChunksSent(final.chunks_sent);
    if (final.failure) {
      write_error(b.initError(), *final.failure, final.retry_after_ms);
    } else {
      auto completed = b.initCompleted();
      completed.setFinishReason(to_wire(final.reason));
      auto usage = completed.initUsage();
      usage.setPromptTokens(final.prompt_tokens);
      usage.setCompletionTokens(final.completion_tokens);
    }
    write_tokens(b.initTokens(unsigned(final.tokens.size())), final.tokens);
    b.setText(as_text(final.text));
  });
}

result<serving::final_message> decode_final(decoded_frame& frame, const wire_limits& limits) {
  return guarded<serving::final_message>(frame, {frame_type::final}, [&]() -> result<serving::final_message> {
    const auto r = frame.root<wire::Final>();
    serving::final_message out;
    out.request_id = r.getRequestId();
    out.chunks_sent = r.getChunksSent();
    switch (r.which()) {
      case wire::Final::COMPLETED: {
        const auto completed = r.getCompleted();
        auto reason = read_finish(completed.getFinishReason());
        if (!reason.ok()) return reason.err();
        out.reason = reason.value();
        out.prompt_tokens = completed.getUsage().getPromptTokens();
        out.completion_tokens = completed.getUsage().getCompletionTokens();
        break;
      }
      case wire::Final::ERROR: {
        auto e = read_error(r.getError());
        if (!e.ok()) return e.err();
        out.failure = std::move(e.value().value);
        out.retry_after_ms = e.value().retry_after_ms;
        break;
      }
      default: return out_of_range("Final", "unknown union member");
    }
    std::size_t budget = limits.tokens_per_message_max;
    DSRT_TRY(read_tokens(r.getTokens(), budget, "tokens", out.tokens));
    auto text = read_text(r.getText(), limits.output_text_bytes_max, "text");
    if (!text.ok()) return text.err();
    out.text = std::move(text.value());
    return out;
  });
}

frame_bytes encode_cancel(frame_type type, std::uint64_t request_id) {
  DSRT_ASSERT(type == frame_type::cancel || type == frame_type::replica_cancel, "type={}",
              frame_type_name(type));
  return build<wire::Cancel>(type, [&](wire::Cancel::Builder b) { b.setRequestId(request_id); });
}

result<std::uint64_t> decode_generate_request_id(decoded_frame& frame) {
  return guarded<std::uint64_t>(frame, {frame_type::generate}, [&]() -> result<std::uint64_t> {
    return frame.root<wire::GenerateRequest>().getRequestId();
  });
}

result<std::uint64_t> decode_cancel(decoded_frame& frame) {
  return guarded<std::uint64_t>(frame, {frame_type::cancel, frame_type::replica_cancel},
                                [&]() -> result<std::uint64_t> { return frame.root<wire::Cancel>().getRequestId(); });
}

// ---- head <-> worker --------------------------------------------------------------------

frame_bytes encode(const serving::replica_request& request, const clock_anchor& now) {
  return build<wire::ReplicaRequest>(frame_type::replica_request, [&](wire::ReplicaRequest::Builder b) {
    b.setRequestId(request.request_id);
    b.setAttempt(request.attempt);
    b.setReplica(request.replica);
    const batching::sequence_request& s = request.sequence;
    auto seq = b.initSequence();
    seq.setId(s.id);
    write_tokens(seq.initTokens(unsigned(s.tokens.size())), s.tokens);
    seq.setPromptTokens(s.prompt_tokens);
    seq.setDrawBase(s.draw_base);
    seq.setMaxNewTokens(s.max_new_tokens);
    write_sampling(seq.initSampling(), s.sampling);
    seq.setPriority(std::uint8_t(std::clamp(s.priority, 0, 255)));
    seq.setDeadlineInMs(deadline_to_wire(s.deadline, now));
    write_tokens(b.initStopTokenIds(unsigned(request.stop_token_ids.size())), request.stop_token_ids);
    b.setReplica(request.replica);
  }, first_segment_words(request.sequence.tokens.size() + request.stop_token_ids.size(), 3));
}

result<serving::replica_request> decode_replica_request(decoded_frame& frame, const clock_anchor& now,
                                                        const wire_limits& limits) {
  return guarded<serving::replica_request>(frame, {frame_type::replica_request}, [&]() -> result<serving::replica_request> {
    const auto r = frame.root<wire::ReplicaRequest>();
    serving::replica_request out;
    out.request_id = r.getRequestId();
    out.attempt = r.getAttempt();
    out.replica = r.getReplica();
    const auto seq = r.getSequence();
    batching::sequence_request& s = out.sequence;
    s.id = seq.getId();
    if (s.id != out.request_id)
      return out_of_range("sequence.id", fmt::format("{} differs from requestId {}", s.id, out.request_id));
    std::size_t budget = limits.tokens_per_message_max;
    DSRT_TRY(read_tokens(seq.getTokens(), budget, "sequence.tokens", s.tokens));
    s.prompt_tokens = seq.getPromptTokens();
    if (s.prompt_tokens < 0 || s.prompt_tokens > std::int64_t(s.tokens.size()))
      return out_of_range("sequence.promptTokens",
                          fmt::format("{} of {} tokens", s.prompt_tokens, s.tokens.size()));
    s.draw_base = seq.getDrawBase();
    if (s.draw_base < 0 || s.draw_base > int32_max)
      return out_of_range("sequence.drawBase", fmt::format("{}", s.draw_base));
    s.max_new_tokens = seq.getMaxNewTokens();
    if (s.max_new_tokens < 0 || s.max_new_tokens > int32_max)
      return out_of_range("sequence.maxNewTokens", fmt::format("{}", s.max_new_tokens));
    auto sampling = read_sampling(seq.getSampling());
    if (!sampling.ok()) return sampling.err();
    s.sampling = sampling.value();
    s.priority = seq.getPriority();
    s.deadline = deadline_from_wire(seq.getDeadlineInMs(), now, limits);
    DSRT_TRY(read_tokens(r.getStopTokenIds(), budget, "stopTokenIds", out.stop_token_ids));
    out.replica = r.getReplica();   // the worker checks it against the replicas it holds
    return out;
  });
}

namespace {
std::size_t chunk_tokens(const serving::replica_chunks& chunks) {
  std::size_t tokens = 0;
  for (const serving::replica_chunk& c : chunks.chunks) tokens += c.tokens.size();
  return tokens;
}
}  // namespace

frame_bytes encode(const serving::replica_chunks& chunks) {
  return build<wire::ReplicaChunks>(frame_type::replica_chunks, [&](wire::ReplicaChunks::Builder b) {
    auto list = b.initChunks(unsigned(chunks.chunks.size()));
    for (unsigned i = 0; i < chunks.chunks.size(); ++i) {
      const serving::replica_chunk& c = chunks.chunks[i];
      auto w = list[i];
      w.setRequestId(c.request_id);
      w.setAttempt(c.attempt);
      w.setReplica(c.replica);
      write_tokens(w.initTokens(unsigned(c.tokens.size())), c.tokens);
    }
  }, first_segment_words(chunk_tokens(chunks), chunks.chunks.size()));
}

result<serving::replica_chunks> decode_replica_chunks(decoded_frame& frame, const wire_limits& limits) {
  return guarded<serving::replica_chunks>(frame, {frame_type::replica_chunks}, [&]() -> result<serving::replica_chunks> {
    const auto list = frame.root<wire::ReplicaChunks>().getChunks();
    if (list.size() > limits.chunks_per_message_max)
      return out_of_range("chunks", fmt::format("{} chunks, at most {}", list.size(), limits.chunks_per_message_max));
    serving::replica_chunks out;
    out.chunks.reserve(list.size());
    std::size_t budget = limits.tokens_per_message_max;
    for (const auto w : list) {
      serving::replica_chunk& c = out.chunks.emplace_back();
      c.request_id = w.getRequestId();
      c.attempt = w.getAttempt();
      c.replica = w.getReplica();
      DSRT_TRY(read_tokens(w.getTokens(), budget, "chunks.tokens", c.tokens));
    }
    return out;
  });
}

frame_bytes encode(const serving::replica_final& final) {
  return build<wire::ReplicaFinal>(frame_type::replica_final, [&](wire::ReplicaFinal::Builder b) {
    b.setRequestId(final.request_id);
    b.setAttempt(final.attempt);
    b.setReplica(final.replica);
    if (final.failure)
      write_error(b.initError(), *final.failure, 0);
    else
      b.setFinished(to_wire(final.reason));
  });
}

result<serving::replica_final> decode_replica_final(decoded_frame& frame) {
  return guarded<serving::replica_final>(frame, {frame_type::replica_final}, [&]() -> result<serving::replica_final> {
    const auto r = frame.root<wire::ReplicaFinal>();
    serving::replica_final out;
    out.request_id = r.getRequestId();
    out.attempt = r.getAttempt();
    out.replica = r.getReplica();
    switch (r.which()) {
      case wire::ReplicaFinal::FINISHED: {
        auto reason = read_finish(r.getFinished());
        if (!reason.ok()) return reason.err();
        out.reason = reason.value();
        break;
      }
      case wire::ReplicaFinal::ERROR: {
        auto e = read_error(r.getError());
        if (!e.ok()) return e.err();
        out.failure = std::move(e.value().value);
        break;
      }
      default: return out_of_range("ReplicaFinal", "unknown union member");
    }
    return out;
  });
}

}  // namespace dsrt::transport
