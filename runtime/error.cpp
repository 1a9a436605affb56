#include "runtime/error.h"

namespace dsrt {

std::string_view error_code_name(error_code code) {
  switch (code) {
    case error_code::invalid_argument: return "INVALID_ARGUMENT";
    case error_code::unauthenticated: return "UNAUTHENTICATED";
    case error_code::overloaded: return "OVERLOADED";
    case error_code::unavailable: return "UNAVAILABLE";
    case error_code::deadline_exceeded: return "DEADLINE_EXCEEDED";
    case error_code::cancelled: return "CANCELLED";
    case error_code::internal: return "INTERNAL";
    case error_code::not_found: return "NOT_FOUND";
    case error_code::corrupt_data: return "CORRUPT_DATA";
    case error_code::unsupported: return "UNSUPPORTED";
  }
  return "UNKNOWN";
}

int to_http_status(error_code code) {
  switch (code) {
    case error_code::invalid_argument: return 400;
    case error_code::unauthenticated: return 401;
    case error_code::not_found: return 404;
    case error_code::overloaded: return 429;
    case error_code::unavailable: return 503;
    case error_code::deadline_exceeded: return 504;
    case error_code::cancelled: return 499;
    case error_code::unsupported: return 501;
    case error_code::corrupt_data:
    case error_code::internal: return 500;
  }
  return 500;
}

std::string error::to_string() const {
  return fmt::format("{}: {}", error_code_name(code), message);
}

}  // namespace dsrt
