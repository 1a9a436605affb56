// Nonces, HMAC proofs and the cluster secret file (auth.h), on getrandom(2) and OpenSSL.
#include "transport/auth.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

namespace dsrt::transport {
namespace {

constexpr std::string_view auth_label = "dsrt-auth-v1";
constexpr std::string_view data_label = "dsrt-data-v1";   // the same length as auth_label
constexpr std::size_t secret_hex_chars = 2 * secret_bytes;
// The file holds 64 hex characters and a newline; reading one more byte than that tells a
// longer file apart.
constexpr std::size_t secret_file_bytes_max = secret_hex_chars + 1;
constexpr std::size_t direction_bytes_max = 9;   // "connector"

std::string_view direction_name(auth_direction d) {
  return d == auth_direction::connector ? "connector" : "acceptor";
}

status fill_random(std::span<std::byte> out) {
  std::size_t filled = 0;
  while (filled < out.size()) {
    const ssize_t n = getrandom(out.data() + filled, out.size() - filled, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error(error_code::internal, "getrandom failed: {}", std::strerror(errno));
    }
    filled += std::size_t(n);
  }
  return ok_status();
}

// Closes a descriptor when it goes out of scope.
struct fd_closer {
  int fd;
  ~fd_closer() {
    if (fd >= 0) ::close(fd);
  }
};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

result<nonce> make_nonce() {
  nonce n;
  DSRT_TRY(fill_random(n));
  return n;
}

result<cluster_secret> make_secret() {
  cluster_secret s;
  DSRT_TRY(fill_random(s));
  return s;
}

namespace {

// HMAC-SHA256(secret, label | direction | first | second): fixed-length nonces after two
// distinct labels, so no two inputs share an encoding.
mac labelled_mac(const cluster_secret& secret, std::string_view label, auth_direction direction,
                 const nonce& first, const nonce& second) {
  const std::string_view dir = direction_name(direction);
  std::array<unsigned char, auth_label.size() + direction_bytes_max + 2 * nonce_bytes> input{};
  DSRT_ASSERT(label.size() == auth_label.size(), "label '{}'", label);
  std::size_t at = 0;
  auto append = [&](const void* p, std::size_t n) {
    std::memcpy(input.data() + at, p, n);
    at += n;
  };
  append(label.data(), label.size());
  append(dir.data(), dir.size());
  append(first.data(), first.size());
  append(second.data(), second.size());

  mac out{};
  unsigned int out_bytes = 0;
  const unsigned char* done =
      HMAC(EVP_sha256(), secret.data(), int(secret.size()), input.data(), at,
           reinterpret_cast<unsigned char*>(out.data()), &out_bytes);
  // HMAC-SHA256 over in-memory buffers fails only if OpenSSL itself is broken.
  DSRT_ASSERT(done != nullptr && out_bytes == mac_bytes, "HMAC-SHA256 failed, {} bytes", out_bytes);
  return out;
}

}  // namespace

mac make_proof(const cluster_secret& secret, auth_direction direction, const nonce& peer_nonce,
               const nonce& own_nonce) {
  return labelled_mac(secret, auth_label, direction, peer_nonce, own_nonce);
}

std::uint64_t data_token(const cluster_secret& secret, auth_direction receiver, const nonce& receiver_nonce,
                         const nonce& sender_nonce) {
  const mac m = labelled_mac(secret, data_label, receiver, receiver_nonce, sender_nonce);
  std::uint64_t token = 0;
  std::memcpy(&token, m.data(), sizeof token);
  return token;
}

bool check_proof(const cluster_secret& secret, auth_direction peer_direction, const nonce& own_nonce,
                 const nonce& peer_nonce, std::span<const std::byte> proof) {
  if (proof.size() != mac_bytes) return false;
  // The peer computed make_proof(secret, its direction, its peer's nonce = ours, its own).
  const mac expected = make_proof(secret, peer_direction, own_nonce, peer_nonce);
  return CRYPTO_memcmp(expected.data(), proof.data(), mac_bytes) == 0;
}

result<cluster_secret> create_secret_file(const std::filesystem::path& path) {
  auto secret = make_secret();
  if (!secret.ok()) return secret.err();

  const int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST)
      return make_error(error_code::invalid_argument, "secret file {} exists already; not overwriting it",
                        path.string());
    return make_error(error_code::internal, "cannot create secret file {}: {}", path.string(),
                      std::strerror(errno));
  }
  fd_closer closer{fd};
  auto fail = [&](const char* what) -> error {
    const int saved = errno;
    ::unlink(path.c_str());   // never leave a half-written secret behind
    return make_error(error_code::internal, "cannot {} secret file {}: {}", what, path.string(),
                      std::strerror(saved));
  };
  // The umask can only clear bits of 0600, but be explicit about the mode we rely on.
  if (::fchmod(fd, 0600) != 0) return fail("chmod");

  static constexpr char digits[] = "0123456789abcdef";
  std::array<char, secret_hex_chars + 1> text{};
  for (std::size_t i = 0; i < secret_bytes; ++i) {
    text[2 * i] = digits[std::to_integer<unsigned>(secret.value()[i]) >> 4];
    text[2 * i + 1] = digits[std::to_integer<unsigned>(secret.value()[i]) & 0xf];
  }
  text[secret_hex_chars] = '\n';
  std::size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      OPENSSL_cleanse(text.data(), text.size());
      return fail("write");
    }
    written += std::size_t(n);
  }
  OPENSSL_cleanse(text.data(), text.size());
  if (::fsync(fd) != 0) return fail("sync");
  return secret;
}

result<cluster_secret> read_secret_file(const std::filesystem::path& path) {
  // O_NONBLOCK: a FIFO put in the secret's place must not hang the open; the S_ISREG check
  // below refuses it.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT)
      return make_error(error_code::not_found, "secret file {} does not exist", path.string());
    return make_error(error_code::internal, "cannot open secret file {}: {}", path.string(),
                      std::strerror(errno));
  }
  fd_closer closer{fd};
  struct stat st {};
  // fstat on the open descriptor: the mode checked is the mode of the file read.
  if (::fstat(fd, &st) != 0)
    return make_error(error_code::internal, "cannot stat secret file {}: {}", path.string(),
                      std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    return make_error(error_code::corrupt_data, "secret file {} is not a regular file", path.string());
  if ((st.st_mode & 077) != 0)
    return make_error(error_code::unauthenticated,
                      "secret file {} has mode {:04o}: group or others may read it; run chmod 600 on it",
                      path.string(), unsigned(st.st_mode & 07777));

  std::array<char, secret_file_bytes_max + 1> text{};
  std::size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return make_error(error_code::internal, "cannot read secret file {}: {}", path.string(),
                        std::strerror(errno));
    if (n == 0) break;
    got += std::size_t(n);
  }
  std::size_t chars = got;
  if (chars == secret_hex_chars + 1 && text[secret_hex_chars] == '\n') --chars;
  cluster_secret secret{};
  bool valid = chars == secret_hex_chars;
  for (std::size_t i = 0; valid && i < secret_bytes; ++i) {
    const int high = hex_value(text[2 * i]), low = hex_value(text[2 * i + 1]);
    valid = high >= 0 && low >= 0;
    if (valid) secret[i] = std::byte(high << 4 | low);
  }
  OPENSSL_cleanse(text.data(), text.size());
  if (!valid) {
    OPENSSL_cleanse(secret.data(), secret.size());
    return make_error(error_code::corrupt_data,
                      "secret file {} must hold exactly {} hex characters and an optional newline ({} bytes read)",
                      path.string(), secret_hex_chars, got);
  }
  return secret;
}

}  // namespace dsrt::transport
