// transport/auth.h: proofs check out only with the right secret, direction, nonces and
// length; the secret file is private, exact, and never overwritten.
#include "transport/auth.h"

#include <gtest/gtest.h>

#include <cstring>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

namespace dsrt::transport {
namespace {

struct handshake {
  cluster_secret secret = make_secret().value();
  nonce connector_nonce = make_nonce().value();
  nonce acceptor_nonce = make_nonce().value();
  // What each side sends.
  mac connector_proof() const {
    return make_proof(secret, auth_direction::connector, acceptor_nonce, connector_nonce);
  }
  mac acceptor_proof() const {
    return make_proof(secret, auth_direction::acceptor, connector_nonce, acceptor_nonce);
  }
};

TEST(Auth, NoncesAndSecretsAreFresh) {
  EXPECT_NE(make_nonce().value(), make_nonce().value());
  EXPECT_NE(make_secret().value(), make_secret().value());
}

TEST(Auth, ProofsOfBothSidesCheckOut) {
  const handshake h;
  // The acceptor checks the connector's proof against its own nonce, and vice versa.
  EXPECT_TRUE(check_proof(h.secret, auth_direction::connector, h.acceptor_nonce, h.connector_nonce,
                          h.connector_proof()));
  EXPECT_TRUE(check_proof(h.secret, auth_direction::acceptor, h.connector_nonce, h.acceptor_nonce,
                          h.acceptor_proof()));
  EXPECT_NE(h.connector_proof(), h.acceptor_proof());
}

TEST(Auth, DataTokensNameEachDirectionOfOneConnectionOnly) {
  const handshake h;
  // What the acceptor registers for tensors sent to it equals what the connector computes
  // for sending them; the other direction has its own token.
  const auto to_acceptor = data_token(h.secret, auth_direction::acceptor, h.acceptor_nonce, h.connector_nonce);
  const auto to_connector = data_token(h.secret, auth_direction::connector, h.connector_nonce, h.acceptor_nonce);
  EXPECT_NE(to_acceptor, to_connector);
  EXPECT_EQ(to_acceptor, data_token(h.secret, auth_direction::acceptor, h.acceptor_nonce, h.connector_nonce));
  // Another secret or another connection (fresh nonces) gives another token; so does the
  // proof's label (a token is not a prefix of the proof).
  EXPECT_NE(to_acceptor, data_token(make_secret().value(), auth_direction::acceptor, h.acceptor_nonce, h.connector_nonce));
  EXPECT_NE(to_acceptor, data_token(h.secret, auth_direction::acceptor, make_nonce().value(), h.connector_nonce));
  std::uint64_t proof_prefix = 0;
  const mac proof = make_proof(h.secret, auth_direction::acceptor, h.acceptor_nonce, h.connector_nonce);
  std::memcpy(&proof_prefix, proof.data(), sizeof proof_prefix);
  EXPECT_NE(to_acceptor, proof_prefix);
}

TEST(Auth, AWrongSecretFails) {
  const handshake h;
  const cluster_secret other = make_secret().value();
  const mac forged = make_proof(other, auth_direction::connector, h.acceptor_nonce, h.connector_nonce);
  EXPECT_FALSE(check_proof(h.secret, auth_direction::connector, h.acceptor_nonce, h.connector_nonce, forged));
}

TEST(Auth, AReflectedProofFails) {
  // An attacker connects to the acceptor and, to answer its nonce, echoes the acceptor's
  // own proof (as if obtained from a second connection where the roles are swapped).
  const handshake h;
  const mac reflected = make_proof(h.secret, auth_direction::acceptor, h.acceptor_nonce, h.connector_nonce);
  EXPECT_FALSE(check_proof(h.secret, auth_direction::connector, h.acceptor_nonce, h.connector_nonce, reflected));
  // The acceptor's proof sent back to the connector as the connector's own also fails.
  EXPECT_FALSE(check_proof(h.secret, auth_direction::connector, h.acceptor_nonce, h.connector_nonce,
                           h.acceptor_proof()));
}

TEST(Auth, AReplayedProofFailsAgainstAFreshNonce) {
  const handshake first;
  handshake second = first;
  second.acceptor_nonce = make_nonce().value();   // the acceptor's fresh nonce this time
  // The recorded proof from the first connection, replayed with the same connector nonce.
  EXPECT_FALSE(check_proof(second.secret, auth_direction::connector, second.acceptor_nonce,
                           second.connector_nonce, first.connector_proof()));
}

TEST(Auth, ATruncatedOrLongerProofFails) {
  const handshake h;
  const mac proof = h.connector_proof();
  for (std::size_t n = 0; n < mac_bytes; ++n)
    EXPECT_FALSE(check_proof(h.secret, auth_direction::connector, h.acceptor_nonce, h.connector_nonce,
                             std::span(proof).first(n)))
        << n << " bytes";
  std::vector<std::byte> longer(proof.begin(), proof.end());
  longer.push_back(std::byte{0});
  EXPECT_FALSE(check_proof(h.secret, auth_direction::connector, h.acceptor_nonce, h.connector_nonce, longer));
  mac flipped = proof;
  flipped[mac_bytes - 1] ^= std::byte{1};
  EXPECT_FALSE(check_proof(h.secret, auth_direction::connector, h.acceptor_nonce, h.connector_nonce, flipped));
}

// A fresh directory per test, removed afterwards.
class SecretFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("dsrt-auth-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path path(const char* name) const { return dir_ / name; }
  void write(const std::filesystem::path& p, const std::string& text, mode_t mode) {
    std::ofstream(p) << text;
    ASSERT_EQ(::chmod(p.c_str(), mode), 0);
  }
  std::filesystem::path dir_;
};

TEST_F(SecretFile, IsCreatedPrivateAndReadsBackEqual) {
  const auto p = path("secret");
  const mode_t old_umask = ::umask(0);   // the file must be 0600 whatever the umask
  auto created = create_secret_file(p);
  ::umask(old_umask);
  ASSERT_TRUE(created.ok()) << created.err().to_string();
  struct stat st {};
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(std::filesystem::file_size(p), 65u);   // 64 hex characters and a newline
  auto read = read_secret_file(p);
  ASSERT_TRUE(read.ok()) << read.err().to_string();
  EXPECT_EQ(read.value(), created.value());
}

TEST_F(SecretFile, CreateRefusesAnExistingFile) {
  const auto p = path("secret");
  write(p, "keep me", 0600);
  auto created = create_secret_file(p);
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.err().code, error_code::invalid_argument);
  std::ifstream in(p);
  std::string text;
  std::getline(in, text);
  EXPECT_EQ(text, "keep me");
}

TEST_F(SecretFile, IsRefusedWhenGroupOrOthersMayReadIt) {
  const auto p = path("secret");
  ASSERT_TRUE(create_secret_file(p).ok());
  for (mode_t mode : {0644, 0640, 0604, 0660, 0602}) {
    ASSERT_EQ(::chmod(p.c_str(), mode), 0);
    auto r = read_secret_file(p);
    ASSERT_FALSE(r.ok()) << std::oct << mode;
    EXPECT_EQ(r.err().code, error_code::unauthenticated);
    EXPECT_NE(r.err().message.find(p.string()), std::string::npos) << r.err().message;
    char mode_text[8];
    std::snprintf(mode_text, sizeof mode_text, "%04o", unsigned(mode));
    EXPECT_NE(r.err().message.find(mode_text), std::string::npos) << r.err().message;
  }
  ASSERT_EQ(::chmod(p.c_str(), 0400), 0);   // owner-only read is fine
  EXPECT_TRUE(read_secret_file(p).ok());
}

TEST_F(SecretFile, MalformedContentsAreCorruptData) {
  const std::string hex(64, 'a');
  const std::string cases[] = {
      "",                      // empty
      hex.substr(0, 63),       // one short
      hex + "a",               // one long
      hex + "\n\n",            // two newlines
      hex + " ",               // trailing space
      " " + hex.substr(1),     // not hex
      hex.substr(0, 62) + "g0",
      hex + "\r\n",
  };
  int i = 0;
  for (const std::string& text : cases) {
    const auto p = path(("bad" + std::to_string(i++)).c_str());
    write(p, text, 0600);
    auto r = read_secret_file(p);
    ASSERT_FALSE(r.ok()) << "case " << i;
    EXPECT_EQ(r.err().code, error_code::corrupt_data) << "case " << i << ": " << r.err().to_string();
  }
  // Upper case and no newline are both fine.
  const auto p = path("upper");
  write(p, std::string(64, 'F'), 0600);
  auto r = read_secret_file(p);
  ASSERT_TRUE(r.ok()) << r.err().to_string();
  for (std::byte b : r.value()) EXPECT_EQ(b, std::byte{0xFF});
}

TEST_F(SecretFile, SomethingOtherThanAFileIsRefusedWithoutHanging) {
  const auto fifo = path("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto r = read_secret_file(fifo);   // opening a FIFO for reading would block without O_NONBLOCK
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.err().code, error_code::corrupt_data);
  const auto dir = path("dir");
  std::filesystem::create_directory(dir);
  ::chmod(dir.c_str(), 0700);
  auto d = read_secret_file(dir);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.err().code, error_code::corrupt_data);
}

TEST_F(SecretFile, AMissingFileIsNotFound) {
  auto r = read_secret_file(path("absent"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.err().code, error_code::not_found);
}

}  // namespace
}  // namespace dsrt::transport
