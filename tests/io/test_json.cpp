#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>

#include "io/io_test_util.h"
#include "io/json.h"

using tessera::json::parse;
using tessera::json::Value;
using tessera::test::error_message;

TEST_CASE("json: parses every kind of value", "[io]") {
  Value v = parse(R"( {"null": null, "t": true, "f": false, "int": -42, "big": 9007199254740993,
                      "real": 2.5e-3, "s": "a\"b\\c\/\n\t\u00e9\ud83d\ude00", "arr": [1, [], {}, "x"],
                      "obj": {"z": 1, "a": 2}} )");
  REQUIRE(v.is_object());
  CHECK(v.at("null").is_null());
  CHECK(v.at("t").as_bool() == true);
  CHECK(v.at("f").as_bool() == false);
  CHECK(v.at("int").is_integer());
  CHECK(v.at("int").as_int64() == -42);
  // 2^53 + 1 is not a double: integers keep int64 exactness.
  CHECK(v.at("big").as_int64() == 9007199254740993LL);
  CHECK_FALSE(v.at("real").is_integer());
  CHECK(v.at("real").as_double() == 2.5e-3);
  CHECK(v.at("s").as_string() == "a\"b\\c/\n\t\xC3\xA9\xF0\x9F\x98\x80");
  CHECK(v.at("arr").size() == 4);
  CHECK(v.at("arr")[0].as_int64() == 1);
  CHECK(v.at("arr")[1].is_array());
  CHECK(v.at("arr")[2].is_object());
  CHECK(v.at("arr")[3].as_string() == "x");
  // Keys stay in insertion order.
  const auto& members = v.at("obj").members();
  REQUIRE(members.size() == 2);
  CHECK(members[0].key == "z");
  CHECK(members[1].key == "a");
  CHECK(v.find("missing") == nullptr);
  CHECK_FALSE(v.contains("missing"));
}

TEST_CASE("json: dump and parse round trip", "[io]") {
  Value v = Value::object();
  v.set("name", "gpt2 \"small\"\n\x01");
  v.set("n_layer", 12);
  v.set("max", std::numeric_limits<int64_t>::max());
  v.set("min", std::numeric_limits<int64_t>::min());
  v.set("lr", 0.1);
  v.set("third", 1.0 / 3.0);
  v.set("tiny", 5e-324);
  v.set("flag", true);
  v.set("nothing", nullptr);
  Value list = Value::array();
  list.push_back(1.5);
  list.push_back("two");
  list.push_back(Value::object());
  v.set("list", list);
  v["added"] = Value(int64_t(7));

  CHECK(v.dump().rfind(R"({"name":"gpt2 \"small\"\n\u0001","n_layer":12,)", 0) == 0);
  for (int indent : {-1, 0, 2}) {
    Value back = parse(v.dump(indent));
    CHECK(back == v);
    CHECK(back.at("third").as_double() == 1.0 / 3.0);  // shortest digits still round-trip
    CHECK(back.at("max").as_int64() == std::numeric_limits<int64_t>::max());
    CHECK(back.at("min").as_int64() == std::numeric_limits<int64_t>::min());
    CHECK(back.at("tiny").as_double() == 5e-324);
    CHECK(back.members().back().key == "added");
  }
  // set() on an existing key replaces in place.
  v.set("n_layer", 24);
  CHECK(v.members()[1].key == "n_layer");
  CHECK(v.at("n_layer").as_int64() == 24);
}

TEST_CASE("json: numbers beyond int64 and non-finite values", "[io]") {
  Value huge = parse("123456789012345678901234567890");
  CHECK_FALSE(huge.is_integer());
  CHECK(huge.as_double() == Approx(1.2345678901234568e29));
  CHECK(parse("1e-400").as_double() == 0.0);
  CHECK(parse("-0").as_int64() == 0);
  CHECK(parse("3.0").as_int64() == 3);  // an integral double is accepted as an integer
  CHECK(Value(std::nan("")).dump() == "null");
  CHECK(Value(std::numeric_limits<double>::infinity()).dump() == "null");
  CHECK(tessera::json::format_float(5.54f) == "5.54");
  std::string msg = error_message([] { parse("1.5").as_int64(); });
  CHECK(msg.find("not an integer") != std::string::npos);
  msg = error_message([] { parse("\"x\"").as_double(); });
  CHECK(msg.find("is a string, expected a number") != std::string::npos);
}

TEST_CASE("json: malformed input names the byte offset and the problem", "[io]") {
  struct Case {
    std::string text;
    size_t offset;
    std::string problem;
  };
  const Case cases[] = {
      {"", 0, "end of input"},
      {"   ", 3, "end of input"},
      {R"({"a" 1})", 5, "expected ':'"},
      {R"({"a":1,})", 7, "expected a string key"},
      {"[1,2", 4, "end of input"},
      {"[1 2]", 3, "expected ',' or ']'"},
      {R"("abc)", 0, "unterminated string"},
      {"01", 0, "leading zero"},
      {"-", 0, "expected a digit"},
      {"1.", 0, "after '.'"},
      {"1e+", 0, "exponent"},
      {"1e999", 0, "out of range"},
      {"tru", 0, "invalid literal"},
      {R"({"a":1} x)", 8, "after the JSON value"},
      {R"("\ud800")", 1, "low surrogate"},
      {R"("\udc00")", 1, "unpaired low surrogate"},
      {R"("\u12G4")", 5, "hex digit"},
      {R"("\x")", 1, "invalid escape"},
      {"\"a\nb\"", 2, "control character"},
      {R"({"k":1,"k":2})", 7, "duplicate key \"k\""},
      {"@", 0, "unexpected '@'"},
      {std::string(600, '['), 513, "nesting deeper"},
  };
  for (const Case& c : cases) {
    INFO("input: " << c.text.substr(0, 40));
    std::string msg = error_message([&] { parse(c.text, "config.json"); });
    CHECK(msg.find("malformed JSON at byte " + std::to_string(c.offset) + ":") != std::string::npos);
    CHECK(msg.find(c.problem) != std::string::npos);
    CHECK(msg.find("config.json") != std::string::npos);
  }
}
