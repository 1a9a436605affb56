// The wire schemas compile and round-trip through Cap'n Proto's flat-array encoding.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include "schemas/request.capnp.h"

namespace dsrt {
namespace {

TEST(Schema, FinalRoundTripsWithError) {
  capnp::MallocMessageBuilder builder;
  auto final_msg = builder.initRoot<wire::Final>();
  final_msg.setRequestId(42);
  final_msg.setChunksSent(7);
  auto e = final_msg.initError();
  e.setCode(wire::ErrorCode::OVERLOADED);
  e.setMessage("queue_requests_max reached");
  e.setRetryAfterMs(250);

  auto words = capnp::messageToFlatArray(builder);
  capnp::FlatArrayMessageReader reader(words.asPtr());
  auto read = reader.getRoot<wire::Final>();
  EXPECT_EQ(read.getRequestId(), 42u);
  EXPECT_EQ(read.getChunksSent(), 7u);
  ASSERT_TRUE(read.isError());
  EXPECT_EQ(read.getError().getCode(), wire::ErrorCode::OVERLOADED);
  EXPECT_EQ(read.getError().getRetryAfterMs(), 250u);
  EXPECT_STREQ(read.getError().getMessage().cStr(), "queue_requests_max reached");
}

TEST(Schema, RequestPromptUnion) {
  capnp::MallocMessageBuilder builder;
  auto req = builder.initRoot<wire::GenerateRequest>();
  auto chat = req.getPrompt().initChat(2);
  chat[0].setRole("system");
  chat[1].setRole("user");
  chat[1].setContent("hi");
  req.setMaxTokens(16);
  auto words = capnp::messageToFlatArray(builder);
  capnp::FlatArrayMessageReader reader(words.asPtr());
  auto read = reader.getRoot<wire::GenerateRequest>();
  ASSERT_EQ(read.getPrompt().which(), wire::GenerateRequest::Prompt::CHAT);
  EXPECT_STREQ(read.getPrompt().getChat()[1].getContent().cStr(), "hi");
  EXPECT_EQ(read.getMaxTokens(), 16u);
}

}  // namespace
}  // namespace dsrt
