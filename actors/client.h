#pragma once
// dsrt::client — the C++ API apps embed (ARCHITECTURE.md, "client"). Submit a request (a
// text prompt, chat messages or tokens; sampling, max tokens, stop strings, priority,
// tenant, deadline), receive its stream of sequence-numbered token chunks and exactly one
// final message, cancel it. Each request is a small actor that talks to the router, so
// thousands may be in flight at once.
//
//   dsrt::client c(runtime);
//   auto final = c.generate({.prompt = "Hello", .max_tokens = 32});
//   std::cout << final.text;
//
// Callbacks run on the runtime's threads: they must be quick and thread-safe. on_final is
// called exactly once per submitted request and nothing for it comes after it.
// Thread safety: every method may be called from any thread.
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "actors/messages.h"
#include "actors/router_access.h"
#include "runtime/engine/sampler.h"
#include "runtime/tokenizer/tokenizer.h"

namespace dsrt {

struct client_request {
  std::string prompt;                                  // text, encoded with special tokens
  std::vector<tokenizer::chat_message> chat;           // or chat messages (the model's template)
  std::vector<std::int32_t> prompt_tokens;             // or tokens
  engine::sampling_params sampling;
  std::int32_t max_tokens = 256;
  std::vector<std::string> stop;
  int priority = 0;                                    // 0 = highest
  std::string tenant;
  std::optional<std::chrono::milliseconds> timeout;    // deadline = now + timeout
};

class client {
 public:
  using chunk_callback = std::function<void(const actors::token_chunk&)>;
  using final_callback = std::function<void(const actors::final_message&)>;

  // runtime: a local_runtime (actors/local_runtime.h) or a remote_runtime
  // (actors/remote_runtime.h); it must outlive the client and its requests.
  explicit client(actors::router_access& runtime) : runtime_(runtime) {}

  // Starts a request; returns its id. Errors (nothing is sent, no callback runs):
  // invalid_argument when no prompt form or more than one is set, or the chat template
  // cannot format the messages.
  result<std::uint64_t> submit(const client_request& request, chunk_callback on_chunk,
                               final_callback on_final);
  // Asks the router to stop the request; its final (CANCELLED, unless it finished first)
  // still arrives through on_final. The cancel goes through the request's own actor, so the
  // router never sees it before the request, however soon after submit() it comes.
  void cancel(std::uint64_t request_id);
  // Submits and waits for the final (which holds the whole text and tokens). A request that
  // cannot be built comes back as a final carrying the error.
  actors::final_message generate(const client_request& request);

  // The wire form of a request (tokenized). Errors as for submit(), and invalid_argument
  // for a negative timeout; a timeout of timeout_max or more means no deadline.
  result<actors::generate_request> build(const client_request& request);
  static constexpr std::chrono::milliseconds timeout_max{std::chrono::hours(24 * 365)};

  // The request actors of requests whose final has not come yet, by id.
  struct open_requests {
    std::mutex mutex;
    std::unordered_map<std::uint64_t, caf::actor> actors;
  };

 private:
  actors::router_access& runtime_;
  std::shared_ptr<open_requests> open_ = std::make_shared<open_requests>();
};

}  // namespace dsrt
