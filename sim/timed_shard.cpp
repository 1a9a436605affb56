#include "sim/timed_shard.h"

#include <algorithm>
#include <map>

#include "actors/messages.h"

namespace dsrt::sim {
namespace {

using deliver_atom = caf::atom_constant<caf::atom("deliver")>;

struct timed_shard_state {
  std::map<std::uint64_t, std::pair<caf::response_promise, actors::step_result>> pending;
  std::uint64_t next = 0;
};

caf::behavior timed_shard(caf::stateful_actor<timed_shard_state>* self, std::shared_ptr<serving::step_executor> executor,
                          std::shared_ptr<actors::shard_faults> faults, device_profile profile,
                          std::shared_ptr<device_state> device) {
  return {
      [=](const actors::step_request& request) {
        actors::step_result out;
        out.step = request.step;
        const auto& plan = *request.plan;
        if (faults->fail_steps.load()) {
          executor->skip(plan);
          out.failure = make_error(error_code::internal, "step {} failed: injected fault", request.step);
        } else if (device->fail_next) {
          executor->skip(plan);
          device->fail_next = false;
          out.failure = make_error(error_code::internal, "step {} failed: out of device memory", request.step);
        } else if (auto sampled = executor->run(plan); sampled) {
          out.sampled = std::move(*sampled);
        } else {
          out.failure = sampled.err();
        }
        std::int64_t context = 0;
        for (const auto& p : plan.sequences)
          context += (p.first_position + std::int64_t(p.tokens.size())) * std::int64_t(p.tokens.size());
        const auto step = std::chrono::duration_cast<std::chrono::microseconds>(
            profile.step_time(plan.tokens, context) * device->slow);
        out.duration_us = step.count();
        const auto now = self->clock().now();
        const auto start = std::max(now, device->busy_until);
        device->busy_until = start + step;
        auto& st = self->state;
        const auto id = st.next++;
        auto rp = self->make_response_promise();
        st.pending.emplace(id, std::make_pair(rp, std::move(out)));
        self->delayed_send(self, device->busy_until - now, deliver_atom::value, id);
        return rp;
      },
      [=](deliver_atom, std::uint64_t id) {
        auto it = self->state.pending.find(id);
        if (it == self->state.pending.end()) return;
        it->second.first.deliver(std::move(it->second.second));
        self->state.pending.erase(it);
      },
  };
}

}  // namespace

caf::actor spawn_timed_shard(caf::actor_system& system, std::shared_ptr<serving::step_executor> executor,
                             std::shared_ptr<actors::shard_faults> faults, device_profile profile,
                             std::shared_ptr<device_state> device) {
  return system.spawn(timed_shard, std::move(executor), std::move(faults), std::move(profile), std::move(device));
}

}  // namespace dsrt::sim
