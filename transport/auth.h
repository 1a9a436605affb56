#pragma once
// Peer authentication with the cluster secret (ARCHITECTURE.md, "Messages and transport").
// Every connection starts with each side sending a Hello that carries a fresh 32-byte
// nonce; each side then proves it knows the secret with
//
//   mac = HMAC-SHA256(secret, "dsrt-auth-v1" | direction | peer's nonce | own nonce)
//
// where direction is "connector" for the side that opened the connection and "acceptor"
// for the other (so a proof cannot be reflected back at the side that made it), and the
// nonces are the raw 32 bytes. A side checks the peer's proof against its own fresh nonce
// (no replay) in constant time. No frame other than Hello and AuthProof reaches anything
// before that check passes.
//
// The secret is 32 random bytes kept as 64 hex characters (and a newline) in a file only
// its owner may read: create_secret_file() makes it with mode 0600, read_secret_file()
// refuses one that group or others can read.
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>

#include "runtime/error.h"

namespace dsrt::transport {

inline constexpr std::size_t secret_bytes = 32;
inline constexpr std::size_t nonce_bytes = 32;
inline constexpr std::size_t mac_bytes = 32;

using cluster_secret = std::array<std::byte, secret_bytes>;
using nonce = std::array<std::byte, nonce_bytes>;
using mac = std::array<std::byte, mac_bytes>;

enum class auth_direction { connector, acceptor };

// Fresh random bytes from the OS (getrandom). Errors: internal when the OS has none.
result<nonce> make_nonce();
result<cluster_secret> make_secret();

// The proof a side sends (direction: that side's own role in the connection).
mac make_proof(const cluster_secret& secret, auth_direction direction, const nonce& peer_nonce,
               const nonce& own_nonce);
// Checks the proof the peer sent: `peer_direction` is the peer's role, `own_nonce` the
// nonce this side sent. Constant time in the MAC bytes.
bool check_proof(const cluster_secret& secret, auth_direction peer_direction, const nonce& own_nonce,
                 const nonce& peer_nonce, std::span<const std::byte> proof);

// The token that names a connection in the tensors sent over a data endpoint
// (ucx_transport.h) to the side whose role is `receiver`: the first 8 bytes of
//   HMAC-SHA256(secret, "dsrt-data-v1" | receiver's direction | receiver's nonce | sender's nonce).
// Both sides compute it once the handshake is done; it never travels, so only a holder of
// the secret who saw both nonces can name the connection.
std::uint64_t data_token(const cluster_secret& secret, auth_direction receiver, const nonce& receiver_nonce,
                         const nonce& sender_nonce);

// Writes a new secret to `path` (which must not exist) with mode 0600. Errors:
// invalid_argument when the file exists, internal when it cannot be written.
result<cluster_secret> create_secret_file(const std::filesystem::path& path);
// Reads a secret file. Errors: not_found; unauthenticated when group or others may read
// it; corrupt_data when it does not hold 64 hex characters (an optional trailing newline)
// or is not a regular file; internal when it cannot be opened or read.
result<cluster_secret> read_secret_file(const std::filesystem::path& path);

}  // namespace dsrt::transport
