#pragma once
// Waiting on actors from outside the actor system (the node objects' status methods and
// start-up).
#include <caf/all.hpp>

#include <chrono>
#include <optional>
#include <thread>

#include "runtime/clock.h"
#include "runtime/error.h"

namespace dsrt::actors {

// A blocking request: the answer, or unavailable when none comes within `timeout`.
template <class T, class... Ts>
result<T> blocking_ask(caf::actor_system& sys, const caf::actor& dest, milliseconds timeout, Ts... xs) {
  caf::scoped_actor self{sys};
  std::optional<result<T>> out;
  self->request(dest, timeout, xs...)
      .receive([&](T& value) { out.emplace(std::move(value)); },
               [&](caf::error& e) {
                 out.emplace(make_error(error_code::unavailable, "no answer: {}", to_string(e)));
               });
  return std::move(*out);
}

// Polls `done` every millisecond until it holds. Errors: unavailable, naming `what`, when
// `timeout` passes first.
template <class F>
status wait_until(milliseconds timeout, const char* what, F done) {
  const auto give_up = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up)
      return make_error(error_code::unavailable, "{} did not happen within {} ms", what, timeout.count());
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return ok_t{};
}

}  // namespace dsrt::actors
