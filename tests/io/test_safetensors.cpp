#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "io/io_test_util.h"
#include "io/json.h"
#include "tessera/safetensors.h"

using namespace tessera;
using tessera::test::error_message;
using tessera::test::TempDir;

namespace {

// A safetensors file built by hand from a header text and a data section.
std::string raw_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return out + header + data;
}

}  // namespace

TEST_CASE("safetensors: write and read round trip", "[io]") {
  TempDir dir;
  std::vector<float> w(6);
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.25f * float(i) - 1.0f;
  std::vector<uint16_t> bf16 = {0x3f80, 0xbf80, 0x4000, 0x0001, 0x7f80};  // odd byte count before the I32
  std::vector<int32_t> ints = {-7, 0, 123456};
  std::vector<int64_t> longs = {int64_t(1) << 40, -3};
  uint16_t half = 0x3c00;
  std::vector<SafetensorsEntry> tensors = {
      {"h.0.attn.c_attn.weight", "F32", {2, 3}, w.data(), w.size() * 4},
      {"bf16", "BF16", {5}, bf16.data(), bf16.size() * 2},
      {"ints", "I32", {3}, ints.data(), 12},
      {"longs", "I64", {1, 2}, longs.data(), 16},
      {"scalar", "F16", {}, &half, 2},
      {"empty", "F32", {0, 3}, nullptr, 0},
  };
  const std::string path = dir.file("model.safetensors");
  write_safetensors(path, tensors, {{"format", "pt"}, {"producer", "tessera"}});
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));

  // The header: length multiple of 8, metadata first, then the tensors in order with contiguous offsets.
  const std::string bytes = tessera::test::read_bytes(path);
  uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, bytes.data(), 8);
  CHECK(header_bytes % 8 == 0);
  json::Value header = json::parse(bytes.substr(8, size_t(header_bytes)));
  REQUIRE(header.members().size() == 7);
  CHECK(header.members()[0].key == "__metadata__");
  CHECK(header.members()[1].key == "h.0.attn.c_attn.weight");
  CHECK(header.at("bf16").at("data_offsets")[0].as_int64() == 24);
  CHECK(header.at("bf16").at("data_offsets")[1].as_int64() == 34);
  CHECK(bytes.size() == 8 + header_bytes + 24 + 10 + 12 + 16 + 2);

  SafetensorsReader reader(path);
  CHECK(reader.names() == std::vector<std::string>{"h.0.attn.c_attn.weight", "bf16", "ints", "longs", "scalar", "empty"});
  CHECK(reader.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"producer", "tessera"}});
  for (const SafetensorsEntry& t : tensors) {
    INFO(t.name);
    REQUIRE(reader.has(t.name));
    const SafetensorsEntry& e = reader.entry(t.name);
    CHECK(e.name == t.name);
    CHECK(e.dtype == t.dtype);
    CHECK(e.shape == t.shape);
    REQUIRE(e.bytes == t.bytes);
    if (t.bytes) CHECK(std::memcmp(e.data, t.data, t.bytes) == 0);
  }
  CHECK_FALSE(reader.has("missing"));
  std::string msg = error_message([&] { reader.entry("wpe.weight"); });
  CHECK(msg.find("no tensor named 'wpe.weight'") != std::string::npos);
  CHECK(msg.find(path) != std::string::npos);

  SafetensorsReader moved(std::move(reader));
  CHECK(std::memcmp(moved.entry("ints").data, ints.data(), 12) == 0);
}

TEST_CASE("safetensors: corrupt headers and offsets are data errors naming the file", "[io]") {
  TempDir dir;
  const std::string data(16, '\x11');
  struct Case {
    const char* name;
    std::string bytes;
    const char* problem;
  };
  const Case cases[] = {
      {"short", "abc", "too small"},
      {"length", std::string("\x64\0\0\0\0\0\0\0{}", 10), "header length 100 exceeds the file size (10 bytes)"},
      {"not_json_object", raw_file("[1, 2]  ", ""), "does not start with a JSON object"},
      {"malformed", raw_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]})", data), "malformed JSON at byte"},
      {"out_of_range", raw_file(R"({"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})", data),
       "beyond the end of the data"},
      {"size_mismatch", raw_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", data),
       "needs 12 bytes but its data offsets span 16"},
      {"overlap",
       raw_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                data),
       "overlaps"},
      {"hole",
       raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                data),
       "hole in the data"},
      {"trailing", raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data), "8 trailing bytes"},
      {"dtype", raw_file(R"({"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}})", data), "unknown dtype 'F128'"},
      {"reversed", raw_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[16,0]}})", data), "reversed"},
      {"shape", raw_file(R"({"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", data), "sizes >= 0"},
      // 2^40 x 2^40 elements: once reported as needing 0 bytes (the product wrapped).
      {"huge", raw_file(R"({"a":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,16]}})", data),
       "needs more than 2^64 bytes"},
      {"metadata", raw_file(R"({"__metadata__":{"n":1}})", ""), "is not a string"},
  };
  for (const Case& c : cases) {
    INFO("case " << c.name);
    const std::string path = dir.file(std::string(c.name) + ".safetensors");
    tessera::test::write_bytes(path, c.bytes);
    std::string msg = error_message([&] { SafetensorsReader reader(path); });
    CHECK(msg.find(c.problem) != std::string::npos);
    CHECK(msg.find(path) != std::string::npos);
  }
  // A well-formed hand-made file reads (so the cases above fail for the reason given).
  const std::string good = dir.file("good.safetensors");
  tessera::test::write_bytes(good, raw_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", data));
  CHECK(SafetensorsReader(good).entry("a").bytes == 16);
}

TEST_CASE("safetensors: the writer refuses inconsistent tensors", "[io]") {
  TempDir dir;
  float x[4] = {1, 2, 3, 4};
  const std::string path = dir.file("bad.safetensors");
  error_message([&] { write_safetensors(path, {{"x", "F32", {3}, x, 16}}); }, ExitCode::bad_config);
  error_message([&] { write_safetensors(path, {{"x", "Q4", {4}, x, 16}}); }, ExitCode::bad_config);
  error_message([&] { write_safetensors(path, {{"x", "F32", {4}, x, 16}, {"x", "F32", {4}, x, 16}}); },
                ExitCode::bad_config);
  CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("safetensors: the first non-finite element of a float tensor", "[io]") {
  std::vector<float> f32 = {1.0f, -2.0f, 0.0f, 3.0f};
  SafetensorsEntry e{"w", "F32", {4}, f32.data(), f32.size() * 4};
  CHECK(safetensors_first_non_finite(e) == -1);
  f32[2] = std::numeric_limits<float>::quiet_NaN();
  CHECK(safetensors_first_non_finite(e) == 2);
  f32[1] = -std::numeric_limits<float>::infinity();
  CHECK(safetensors_first_non_finite(e) == 1);
  std::vector<uint16_t> bf16 = {0x3f80, 0x7f7f, 0xff80};  // 1, the largest finite, -inf
  CHECK(safetensors_first_non_finite({"b", "BF16", {3}, bf16.data(), 6}) == 2);
  std::vector<uint16_t> f16 = {0x3c00, 0x7bff, 0x7e00};  // 1, the largest finite, NaN
  CHECK(safetensors_first_non_finite({"h", "F16", {3}, f16.data(), 6}) == 2);
  std::vector<int32_t> ints = {-1, 0x7f800000};  // integers are always finite
  CHECK(safetensors_first_non_finite({"i", "I32", {2}, ints.data(), 8}) == -1);
}
