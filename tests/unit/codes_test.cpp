// Unit tests for src/protocol/codes: every reply code's codeMsg is byte for byte the upstream
// gowebsocket string (spec §2 "Codes"), and pushes use "Ok".
#include "protocol/codes.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace imgate {
namespace {

struct CodeRow {
  uint32_t number;
  Code code;
  // Expected bytes, written as UTF-8 escapes so the test does not depend on the
  // source file's encoding matching the implementation's.
  std::string message;
};

const std::vector<CodeRow>& spec_table() {
  static const std::vector<CodeRow> rows = {
      {200, Code::kOk, "Success"},
      {1000, Code::kNotLoggedIn, "\xE6\x9C\xAA\xE7\x99\xBB\xE5\xBD\x95"},  // 未登录
      {1001, Code::kParameterIllegal,
       "\xE5\x8F\x82\xE6\x95\xB0\xE4\xB8\x8D\xE5\x90\x88\xE6\xB3\x95"},  // 参数不合法
      {1002, Code::kUnauthorizedUserId,
       "\xE9\x9D\x9E\xE6\xB3\x95\xE7\x9A\x84\xE7\x94\xA8\xE6\x88\xB7ID"},   // 非法的用户ID
      {1003, Code::kUnauthorized, "\xE6\x9C\xAA\xE6\x8E\x88\xE6\x9D\x83"},  // 未授权
      {1004, Code::kServerError, "\xE7\xB3\xBB\xE7\xBB\x9F\xE9\x94\x99\xE8\xAF\xAF"},  // 系统错误
      {1005, Code::kNotData, "\xE6\xB2\xA1\xE6\x9C\x89\xE6\x95\xB0\xE6\x8D\xAE"},  // 没有数据
      {1006, Code::kModelAddError, "\xE6\xB7\xBB\xE5\x8A\xA0\xE9\x94\x99\xE8\xAF\xAF"},  // 添加错误
      {1007, Code::kModelDeleteError,
       "\xE5\x88\xA0\xE9\x99\xA4\xE9\x94\x99\xE8\xAF\xAF"},  // 删除错误
      {1008, Code::kModelStoreError,
       "\xE5\xAD\x98\xE5\x82\xA8\xE9\x94\x99\xE8\xAF\xAF"},  // 存储错误
      {1009, Code::kOperationFailure,
       "\xE6\x93\x8D\xE4\xBD\x9C\xE5\xA4\xB1\xE8\xB4\xA5"},  // 操作失败
      {1010, Code::kRoutingNotExist,
       "\xE8\xB7\xAF\xE7\x94\xB1\xE4\xB8\x8D\xE5\xAD\x98\xE5\x9C\xA8"},  // 路由不存在
  };
  return rows;
}

TEST(Codes, NumericValuesMatchTheSpec) {
  for (const auto& row : spec_table()) {
    EXPECT_EQ(static_cast<uint32_t>(row.code), row.number);
  }
}

TEST(Codes, EveryCodeMessageIsTheUpstreamStringByteForByte) {
  for (const auto& row : spec_table()) {
    SCOPED_TRACE(row.number);
    EXPECT_EQ(std::string(code_message(row.code)), row.message);
  }
}

TEST(Codes, SourceLiteralsAgreeWithTheEscapedBytes) {
  // The same strings as literals, as a reader of the spec would write them.
  const std::vector<std::pair<Code, std::string>> literal = {
      {Code::kOk, "Success"},
      {Code::kNotLoggedIn, "未登录"},
      {Code::kParameterIllegal, "参数不合法"},
      {Code::kUnauthorizedUserId, "非法的用户ID"},
      {Code::kUnauthorized, "未授权"},
      {Code::kServerError, "系统错误"},
      {Code::kNotData, "没有数据"},
      {Code::kModelAddError, "添加错误"},
      {Code::kModelDeleteError, "删除错误"},
      {Code::kModelStoreError, "存储错误"},
      {Code::kOperationFailure, "操作失败"},
      {Code::kRoutingNotExist, "路由不存在"},
  };
  for (const auto& [code, text] : literal) {
    SCOPED_TRACE(static_cast<uint32_t>(code));
    EXPECT_EQ(code_message(code), text);
  }
}

TEST(Codes, MessagesAreDistinct) {
  std::set<std::string> seen;
  for (const auto& row : spec_table()) {
    EXPECT_TRUE(seen.insert(std::string(code_message(row.code))).second) << row.number;
  }
}

TEST(Codes, PushCodeMessageIsOk) {
  EXPECT_EQ(std::string(kPushCodeMsg), "Ok");
  EXPECT_NE(kPushCodeMsg, code_message(Code::kOk));  // replies say "Success", pushes "Ok"
}

TEST(Codes, UnknownValueFallsBackToServerErrorText) {
  // Not reachable through the enum's named values, but the function must not return garbage.
  EXPECT_EQ(code_message(static_cast<Code>(4242)), code_message(Code::kServerError));
}

TEST(Codes, CloseCodesAreTheRfc6455Values) {
  EXPECT_EQ(close_code::kNormal, 1000);
  EXPECT_EQ(close_code::kGoingAway, 1001);
  EXPECT_EQ(close_code::kProtocolError, 1002);
  EXPECT_EQ(close_code::kUnsupportedData, 1003);
  EXPECT_EQ(close_code::kInvalidPayload, 1007);
  EXPECT_EQ(close_code::kPolicyViolation, 1008);
  EXPECT_EQ(close_code::kTooBig, 1009);
  EXPECT_EQ(close_code::kInternalError, 1011);
}

}  // namespace
}  // namespace imgate
