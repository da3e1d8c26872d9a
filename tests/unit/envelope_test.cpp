// Unit tests for src/protocol/envelope: parsing request frames (spec §2, samples.md "Details
// observed") and the exact bytes of responses and pushes (field order as Go's encoder writes it).
#include "protocol/envelope.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <string>

namespace imgate {
namespace {

namespace json = boost::json;

// --- parse_request ---

TEST(ParseRequest, ValidRequest) {
  Request r;
  ASSERT_TRUE(parse_request(R"({"seq":"1565336219141-266129","cmd":"login",)"
                            R"("data":{"userID":"马远","appID":101}})",
                            r));
  EXPECT_EQ(r.seq, "1565336219141-266129");
  EXPECT_EQ(r.cmd, "login");
  ASSERT_TRUE(r.data.is_object());
  EXPECT_EQ(r.data.at("userID").as_string(), "马远");
  EXPECT_EQ(r.data.at("appID").to_number<int64_t>(), 101);
}

TEST(ParseRequest, FieldOrderDoesNotMatter) {
  Request r;
  ASSERT_TRUE(parse_request(R"({"data":{},"cmd":"ping","seq":"7"})", r));
  EXPECT_EQ(r.seq, "7");
  EXPECT_EQ(r.cmd, "ping");
  EXPECT_TRUE(r.data.is_object());
}

TEST(ParseRequest, MissingSeqIsEmpty) {
  Request r;
  ASSERT_TRUE(parse_request(R"({"cmd":"ping","data":{}})", r));
  EXPECT_EQ(r.seq, "");
  EXPECT_EQ(r.cmd, "ping");
}

TEST(ParseRequest, MissingCmdIsEmpty) {
  Request r;
  ASSERT_TRUE(parse_request(R"({"seq":"3","data":{}})", r));
  EXPECT_EQ(r.seq, "3");
  EXPECT_EQ(r.cmd, "");
}

TEST(ParseRequest, MissingDataIsNull) {
  Request r;
  ASSERT_TRUE(parse_request(R"({"seq":"3","cmd":"ping"})", r));
  EXPECT_TRUE(r.data.is_null());
}

TEST(ParseRequest, DataOfAnyTypeIsKept) {
  Request r;
  ASSERT_TRUE(parse_request(R"({"seq":"1","cmd":"x","data":"text"})", r));
  EXPECT_EQ(r.data, json::value("text"));
  ASSERT_TRUE(parse_request(R"({"seq":"1","cmd":"x","data":[1,2]})", r));
  EXPECT_TRUE(r.data.is_array());
}

TEST(ParseRequest, NumericSeqIsRejectedButCmdIsStillRead) {
  Request r;
  EXPECT_FALSE(parse_request(R"({"seq":5,"cmd":"ping","data":{}})", r));
  EXPECT_EQ(r.seq, "");
  EXPECT_EQ(r.cmd, "ping");
}

TEST(ParseRequest, NonStringCmdIsRejectedButSeqIsStillRead) {
  Request r;
  EXPECT_FALSE(parse_request(R"({"seq":"9","cmd":["ping"]})", r));
  EXPECT_EQ(r.seq, "9");
  EXPECT_EQ(r.cmd, "");
}

TEST(ParseRequest, NullSeqIsRejected) {
  Request r;
  EXPECT_FALSE(parse_request(R"({"seq":null,"cmd":"ping"})", r));
  EXPECT_EQ(r.cmd, "ping");
}

TEST(ParseRequest, NonObjectJsonIsRejected) {
  for (const char* text :
       {"42", "\"ping\"", "true", "null", "[]", R"([{"seq":"1","cmd":"ping"}])"}) {
    SCOPED_TRACE(text);
    Request r;
    r.seq = "stale";
    r.cmd = "stale";
    EXPECT_FALSE(parse_request(text, r));
    EXPECT_EQ(r.seq, "");  // nothing readable: previous contents are not left behind
    EXPECT_EQ(r.cmd, "");
    EXPECT_TRUE(r.data.is_null());
  }
}

TEST(ParseRequest, EmptyAndInvalidTextIsRejected) {
  for (const char* text : {"", " ", "not json", "{", R"({"seq":"1","cmd":"ping")",
                           R"({"seq":"1","cmd":"ping"} trailing)"}) {
    SCOPED_TRACE(text);
    Request r;
    EXPECT_FALSE(parse_request(text, r));
    EXPECT_EQ(r.seq, "");
    EXPECT_EQ(r.cmd, "");
  }
}

TEST(ParseRequest, ResetsOutputBetweenCalls) {
  Request r;
  ASSERT_TRUE(parse_request(R"({"seq":"1","cmd":"login","data":{"a":1}})", r));
  ASSERT_TRUE(parse_request(R"({"cmd":"ping"})", r));
  EXPECT_EQ(r.seq, "");
  EXPECT_TRUE(r.data.is_null());
}

// --- make_response ---

TEST(MakeResponse, PingPongExactBytes) {
  EXPECT_EQ(
      make_response("1", "ping", Code::kOk, "pong"),
      R"({"seq":"1","cmd":"ping","response":{"code":200,"codeMsg":"Success","data":"pong"}})");
}

TEST(MakeResponse, NullDataByDefault) {
  EXPECT_EQ(make_response("1565336219141-266129", "login", Code::kOk),
            R"({"seq":"1565336219141-266129","cmd":"login","response":)"
            R"({"code":200,"codeMsg":"Success","data":null}})");
}

TEST(MakeResponse, SampleErrorResponsesExactBytes) {
  EXPECT_EQ(make_response("2", "login", Code::kUnauthorized),
            R"({"seq":"2","cmd":"login","response":{"code":1003,"codeMsg":"未授权","data":null}})");
  EXPECT_EQ(
      make_response("3", "login", Code::kUnauthorizedUserId),
      R"({"seq":"3","cmd":"login","response":{"code":1002,"codeMsg":"非法的用户ID","data":null}})");
  EXPECT_EQ(
      make_response("4", "login", Code::kOperationFailure),
      R"({"seq":"4","cmd":"login","response":{"code":1009,"codeMsg":"操作失败","data":null}})");
  EXPECT_EQ(
      make_response("5", "heartbeat", Code::kNotLoggedIn),
      R"({"seq":"5","cmd":"heartbeat","response":{"code":1000,"codeMsg":"未登录","data":null}})");
  EXPECT_EQ(
      make_response("8", "dance", Code::kRoutingNotExist),
      R"({"seq":"8","cmd":"dance","response":{"code":1010,"codeMsg":"路由不存在","data":null}})");
}

TEST(MakeResponse, EmptySeqAndCmd) {
  EXPECT_EQ(make_response("", "", Code::kParameterIllegal),
            R"({"seq":"","cmd":"","response":{"code":1001,"codeMsg":"参数不合法","data":null}})");
}

TEST(MakeResponse, ObjectDataKeepsItsFields) {
  json::object data;
  data["b"] = 1;
  data["a"] = "x";
  EXPECT_EQ(make_response("s", "c", Code::kOk, data),
            R"({"seq":"s","cmd":"c","response":{"code":200,"codeMsg":"Success",)"
            R"("data":{"b":1,"a":"x"}}})");
}

TEST(MakeResponse, SpecialCharactersInSeqAreEscapedAndRoundTrip) {
  const std::string seq = "a\"b\\c\nd\x01";
  std::string text = make_response(seq, "ping", Code::kOk, "pong");
  json::value v = json::parse(text);  // throws if the escaping is wrong
  EXPECT_EQ(v.at("seq").as_string(), seq);
  EXPECT_EQ(v.at("cmd").as_string(), "ping");
}

// --- make_push ---

TEST(MakePush, EnterSampleExactBytes) {
  Frame f = make_push("123456789", "enter", kEnterText, "马远");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->payload(), R"({"seq":"123456789","cmd":"enter","response":{"code":200,"codeMsg":"Ok",)"
                R"("data":{"target":"","type":"text","msg":"哈喽~","from":"马远"}}})");
}

TEST(MakePush, ExitSampleExactBytes) {
  Frame f = make_push("123456790", "exit", kExitText, "马远");
  EXPECT_EQ(f->payload(), R"({"seq":"123456790","cmd":"exit","response":{"code":200,"codeMsg":"Ok",)"
                R"("data":{"target":"","type":"text","msg":"用户已经离开~","from":"马远"}}})");
}

TEST(MakePush, MsgSampleExactBytes) {
  Frame f = make_push("m1", "msg", "hello", "马超");
  EXPECT_EQ(f->payload(), R"({"seq":"m1","cmd":"msg","response":{"code":200,"codeMsg":"Ok",)"
                R"("data":{"target":"","type":"text","msg":"hello","from":"马超"}}})");
}

TEST(MakePush, PresenceTextsAreUpstreams) {
  EXPECT_EQ(std::string(kEnterText), "\xE5\x93\x88\xE5\x96\xBD~");  // 哈喽~
  EXPECT_EQ(
      std::string(kExitText),
      "\xE7\x94\xA8\xE6\x88\xB7\xE5\xB7\xB2\xE7\xBB\x8F\xE7\xA6\xBB\xE5\xBC\x80~");  // 用户已经离开~
}

TEST(MakePush, HtmlCharactersAreRawOrGoEscaped) {
  // Go writes \u003c \u003e \u0026; imgate may write them raw. Either way the decoded text is
  // equal.
  Frame f = make_push("1", "msg", "<b>a&b</b>", "x");
  const std::string text(f->payload());
  const bool raw = text.find(R"("msg":"<b>a&b</b>")") != std::string::npos;
  const bool go = text.find(R"("msg":"\u003cb\u003ea\u0026b\u003c/b\u003e")") != std::string::npos;
  EXPECT_TRUE(raw || go) << text;
  EXPECT_EQ(json::parse(text).at("response").at("data").at("msg").as_string(), "<b>a&b</b>");
}

TEST(MakePush, QuotesInMessageRoundTrip) {
  const std::string msg = "say \"hi\"\\ \t\n";
  Frame f = make_push("1", "msg", msg, "u\"1");
  json::value v = json::parse(f->payload());
  EXPECT_EQ(v.at("response").at("data").at("msg").as_string(), msg);
  EXPECT_EQ(v.at("response").at("data").at("from").as_string(), "u\"1");
}

}  // namespace
}  // namespace imgate
