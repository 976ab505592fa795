#include <catch2/catch.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/crc32c.h"

namespace io = tessera::io;

namespace {

using CrcFn = std::function<uint32_t(const void*, size_t, uint32_t)>;

std::vector<std::pair<std::string, CrcFn>> implementations() {
  std::vector<std::pair<std::string, CrcFn>> fns = {
      {"software", [](const void* d, size_t n, uint32_t c) { return io::crc32c_software(d, n, c); }},
      {"dispatch", [](const void* d, size_t n, uint32_t c) { return io::crc32c(d, n, c); }},
  };
  if (io::crc32c_hardware_available())
    fns.push_back({"hardware", [](const void* d, size_t n, uint32_t c) { return io::crc32c_hardware(d, n, c); }});
  return fns;
}

std::vector<uint8_t> pseudo_random_bytes(size_t n) {
  std::vector<uint8_t> v(n);
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (auto& b : v) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = uint8_t(x >> 24);
  }
  return v;
}

}  // namespace

TEST_CASE("crc32c: RFC 3720 test vectors and the check value", "[io][crc32c][checkpoint]") {
  std::vector<uint8_t> zeros(32, 0x00), ones(32, 0xff), up(32), down(32);
  for (int i = 0; i < 32; ++i) {
    up[size_t(i)] = uint8_t(i);
    down[size_t(i)] = uint8_t(31 - i);
  }
  // An iSCSI SCSI Read (10) command PDU (RFC 3720, B.4).
  const std::vector<uint8_t> pdu = {0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                    0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
                                    0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
                                    0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  const std::string check = "123456789";
  for (const auto& [name, crc] : implementations()) {
    INFO(name);
    CHECK(crc(zeros.data(), zeros.size(), 0) == 0x8A9136AAu);
    CHECK(crc(ones.data(), ones.size(), 0) == 0x62A8AB43u);
    CHECK(crc(up.data(), up.size(), 0) == 0x46DD794Eu);
    CHECK(crc(down.data(), down.size(), 0) == 0x113FDB5Cu);
    CHECK(crc(pdu.data(), pdu.size(), 0) == 0xD9963A56u);
    CHECK(crc(check.data(), check.size(), 0) == 0xE3069283u);
    CHECK(crc(nullptr, 0, 0) == 0u);
  }
}

TEST_CASE("crc32c: every implementation agrees at every alignment, and chunks extend", "[io][crc32c][checkpoint]") {
  const std::vector<uint8_t> data = pseudo_random_bytes(4096 + 64);
  const auto fns = implementations();
  for (size_t offset = 0; offset < 16; ++offset) {
    for (size_t len : {size_t(0), size_t(1), size_t(7), size_t(8), size_t(9), size_t(63), size_t(100), size_t(1000), size_t(4096)}) {
      const uint8_t* p = data.data() + offset;
      uint32_t expected = io::crc32c_software(p, len);
      for (const auto& [name, crc] : fns) {
        INFO(name << " offset " << offset << " length " << len);
        CHECK(crc(p, len, 0) == expected);
        // Any split: the CRC of the first part extended over the rest.
        for (size_t cut : {size_t(0), len / 3, len / 2, len}) CHECK(crc(p + cut, len - cut, crc(p, cut, 0)) == expected);
      }
    }
  }
  // A single flipped bit changes the checksum.
  std::vector<uint8_t> flipped = data;
  flipped[1234] ^= 0x10;
  CHECK(io::crc32c(flipped.data(), flipped.size()) != io::crc32c(data.data(), data.size()));
}

TEST_CASE("crc32c: hex form round trips and rejects malformed text", "[io][crc32c][checkpoint]") {
  CHECK(io::crc32c_hex(0x8A9136AAu) == "8a9136aa");
  CHECK(io::crc32c_hex(0x0000000Fu) == "0000000f");
  uint32_t v = 0;
  REQUIRE(io::parse_crc32c_hex("8a9136aa", &v));
  CHECK(v == 0x8A9136AAu);
  REQUIRE(io::parse_crc32c_hex("D9963A56", &v));
  CHECK(v == 0xD9963A56u);
  CHECK_FALSE(io::parse_crc32c_hex("8a9136a", &v));
  CHECK_FALSE(io::parse_crc32c_hex("8a9136aax", &v));
  CHECK_FALSE(io::parse_crc32c_hex("8a9136ag", &v));
  CHECK_FALSE(io::parse_crc32c_hex("", &v));
}
