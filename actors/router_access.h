#pragma once
// What dsrt::client needs of a runtime: an actor system to run its request actors in, the
// router to send requests to, the model's tokenizer, and request ids. local_runtime (the
// runtime in this process) and remote_runtime (a cluster reached over the transport)
// both provide it, so an app's code is the same whether the runtime is local or remote.
#include <caf/all.hpp>

#include <cstdint>
#include <memory>

#include "runtime/tokenizer/tokenizer.h"

namespace dsrt::actors {

class router_access {
 public:
  virtual ~router_access() = default;
  virtual caf::actor_system& system() = 0;
  // Takes generate_request (chunks and the final go to the sender) and (cancel_atom, id).
  virtual const caf::actor& router() const = 0;
  virtual const std::shared_ptr<const tokenizer::tokenizer>& tokenizer() const = 0;
  // Unique within this router_access.
  virtual std::uint64_t next_request_id() = 0;
};

}  // namespace dsrt::actors
