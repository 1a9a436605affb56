#include "runtime/buggify.h"

#include <algorithm>
#include <string_view>

#include "runtime/error.h"

namespace dsrt {

buggify_scope::buggify_scope(std::uint64_t seed, const buggify_config& config)
    : seed_(seed), config_(config), rng_(seed ^ 0xb0661f7ull) {
  DSRT_ASSERT(current_ == nullptr, "buggify scopes do not nest");
  current_ = this;
}

buggify_scope::buggify_scope(std::uint64_t seed, const buggify_config& config, std::uint64_t stream, detached_t)
    : seed_(seed), config_(config), rng_(seed ^ 0xb0661f7ull ^ splitmix64(stream)), attached_(false) {}

buggify_scope::~buggify_scope() {
  if (attached_) current_ = nullptr;
}

bool buggify_scope::evaluate(const char* point) {
  auto it = points_.find(std::string_view(point));
  if (it == points_.end()) {
    // Enabled from the seed and the name only, so adding a point elsewhere does not change
    // which of the others are on.
    std::uint64_t h = seed_;
    for (const char* p = point; *p != '\0'; ++p) {
      h ^= std::uint64_t(static_cast<unsigned char>(*p));
      h = splitmix64(h);
    }
    const bool listed = config_.only.empty() ||
                        std::find(config_.only.begin(), config_.only.end(), std::string_view(point)) != config_.only.end();
    const bool enabled = listed && double(splitmix64(h) >> 11) * 0x1.0p-53 < config_.enable_probability;
    it = points_.emplace(point, point_state{enabled}).first;
  }
  if (!it->second.enabled) return false;
  if (rng_.uniform() >= config_.fire_probability) return false;
  ++fired_[it->first];
  return true;
}

}  // namespace dsrt
