#include "actors/client.h"

#include <future>

namespace dsrt {
namespace {

// One request's actor: sends it to the router, hands chunks and the final to the callbacks,
// and ends with the final. If the router goes away first, it ends the stream itself.
caf::behavior request_actor(caf::event_based_actor* self, caf::actor router,
                            actors::generate_request request, client::chunk_callback on_chunk,
                            client::final_callback on_final, std::shared_ptr<client::open_requests> open) {
  const auto id = request.request_id;
  // Its final leaves the client's open requests (whether or not the client still exists).
  on_final = [on_final = std::move(on_final), open, id](const actors::final_message& f) {
    {
      std::lock_guard lock(open->mutex);
      open->actors.erase(id);
    }
    on_final(f);
  };
  const auto prompt_tokens = std::uint32_t(request.prompt.size());
  auto chunks = std::make_shared<std::uint32_t>(0);
  self->monitor(router);
  self->set_down_handler([self, id, prompt_tokens, chunks, on_final](caf::down_msg&) {
    actors::final_message f;
    f.request_id = id;
    f.chunks_sent = *chunks;
    f.prompt_tokens = prompt_tokens;
    f.failure = make_error(error_code::unavailable, "request {}: the runtime stopped", id);
    on_final(f);
    self->quit();
  });
  self->send(router, std::move(request));
  return {
      // After the request itself (one sender's messages stay in order).
      [self, router](actors::cancel_atom, std::uint64_t request_id) {
        self->send(router, actors::cancel_atom::value, request_id);
      },
      [chunks, on_chunk](const actors::token_chunk& c) {
        ++*chunks;
        if (on_chunk) on_chunk(c);
      },
      [self, on_final](const actors::final_message& f) {
        on_final(f);
        self->quit();
      },
  };
}

}  // namespace

result<actors::generate_request> client::build(const client_request& request) {
  const int forms = !request.prompt.empty() + !request.chat.empty() + !request.prompt_tokens.empty();
  if (forms != 1)
    return make_error(error_code::invalid_argument,
                      "a request needs exactly one of prompt, chat or prompt_tokens ({} given)", forms);
  actors::generate_request r;
  r.request_id = runtime_.next_request_id();
  const auto& tok = *runtime_.tokenizer();
  if (!request.prompt_tokens.empty()) {
    r.prompt = request.prompt_tokens;
  } else if (!request.chat.empty()) {
    auto text = tokenizer::format_chat(tok, request.chat, /*add_generation_prompt=*/true);
    if (!text) return make_error(error_code::invalid_argument, "chat: {}", text.err().message);
    r.prompt = tok.encode(*text, /*add_special=*/false);
  } else {
    r.prompt = tok.encode(request.prompt);
  }
  r.sampling = request.sampling;
  r.max_tokens = request.max_tokens;
  r.stop = request.stop;
  r.priority = request.priority;
  r.tenant = request.tenant;
  if (request.timeout) {
    if (request.timeout->count() < 0)
      return make_error(error_code::invalid_argument, "timeout {} ms is negative", request.timeout->count());
    if (*request.timeout < timeout_max) r.deadline = std::chrono::steady_clock::now() + *request.timeout;
  }
  return r;
}

result<std::uint64_t> client::submit(const client_request& request, chunk_callback on_chunk,
                                     final_callback on_final) {
  auto r = build(request);
  if (!r) return r.err();
  const auto id = r->request_id;
  // Registered before it can run: its final erases it.
  std::lock_guard lock(open_->mutex);
  open_->actors[id] = runtime_.system().spawn(request_actor, runtime_.router(), std::move(*r), std::move(on_chunk),
                                              std::move(on_final), open_);
  return id;
}

void client::cancel(std::uint64_t request_id) {
  caf::actor request;
  {
    std::lock_guard lock(open_->mutex);
    if (auto it = open_->actors.find(request_id); it != open_->actors.end()) request = it->second;
  }
  if (request)
    caf::anon_send(request, actors::cancel_atom::value, request_id);
  else   // finished already, or not this client's: the router ignores what it does not hold
    caf::anon_send(runtime_.router(), actors::cancel_atom::value, request_id);
}

actors::final_message client::generate(const client_request& request) {
  std::promise<actors::final_message> done;
  auto future = done.get_future();
  auto id = submit(request, {}, [&done](const actors::final_message& f) { done.set_value(f); });
  if (!id) {
    actors::final_message f;
    f.failure = id.err();
    return f;
  }
  return future.get();
}

}  // namespace dsrt
