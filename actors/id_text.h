#pragma once
// Request ids change at each link (a remote client's id, the head's, a worker's local one),
// and error texts name the id of the side that wrote them ("request 9223372036854775809
// passed its deadline"). A link that maps an id back rewrites the text too, so a client's
// errors name its own request and never another side's internal id.
#include <cstdint>
#include <optional>
#include <string_view>
#include <string>

#include "runtime/error.h"

namespace dsrt::actors {

// `text` with the id `from` replaced by `to` where it names a request: a whole decimal
// number right after "request ", "request id " or "sequence " (the forms error texts use;
// "replica 5" stays when request 5 becomes request 6).
std::string with_id_replaced(const std::string& text, std::uint64_t from, std::uint64_t to);
// The same for an error's message.
void replace_id(std::optional<error>& e, std::uint64_t from, std::uint64_t to);

}  // namespace dsrt::actors
