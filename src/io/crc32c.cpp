#include "io/crc32c.h"

#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TESSERA_CRC32C_X86 1
#else
#define TESSERA_CRC32C_X86 0
#endif

namespace tessera::io {

namespace {

// The reflected Castagnoli polynomial.
constexpr uint32_t kPolynomial = 0x82F63B78u;

// table[k][b]: the CRC of byte b followed by k zero bytes, so eight bytes fold in one step.
struct SlicingTables {
  uint32_t table[8][256];
};

constexpr SlicingTables make_tables() {
  SlicingTables t{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t c = b;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ kPolynomial : c >> 1;
    t.table[0][b] = c;
  }
  for (int k = 1; k < 8; ++k)
    for (uint32_t b = 0; b < 256; ++b) {
      uint32_t prev = t.table[k - 1][b];
      t.table[k][b] = (prev >> 8) ^ t.table[0][prev & 0xffu];
    }
  return t;
}

constexpr SlicingTables kTables = make_tables();

inline uint32_t fold_byte(uint32_t crc, uint8_t byte) { return (crc >> 8) ^ kTables.table[0][(crc ^ byte) & 0xffu]; }

#if TESSERA_CRC32C_X86
__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(uint32_t crc, const uint8_t* p, size_t n) {
  uint32_t c = ~crc;
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7u) != 0) {
    c = _mm_crc32_u8(c, *p++);
    --n;
  }
#if defined(__x86_64__)
  uint64_t c64 = c;
  while (n >= 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    c64 = _mm_crc32_u64(c64, word);
    p += 8;
    n -= 8;
  }
  c = uint32_t(c64);
#endif
  while (n >= 4) {
    uint32_t word;
    std::memcpy(&word, p, 4);
    c = _mm_crc32_u32(c, word);
    p += 4;
    n -= 4;
  }
  while (n > 0) {
    c = _mm_crc32_u8(c, *p++);
    --n;
  }
  return ~c;
}
#endif

}  // namespace

uint32_t crc32c_software(const void* data, size_t bytes, uint32_t crc) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~crc;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  while (bytes > 0 && (reinterpret_cast<uintptr_t>(p) & 7u) != 0) {
    c = fold_byte(c, *p++);
    --bytes;
  }
  const auto& t = kTables.table;
  while (bytes >= 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    word ^= c;
    c = t[7][word & 0xff] ^ t[6][(word >> 8) & 0xff] ^ t[5][(word >> 16) & 0xff] ^ t[4][(word >> 24) & 0xff] ^
        t[3][(word >> 32) & 0xff] ^ t[2][(word >> 40) & 0xff] ^ t[1][(word >> 48) & 0xff] ^ t[0][word >> 56];
    p += 8;
    bytes -= 8;
  }
#endif
  while (bytes > 0) {
    c = fold_byte(c, *p++);
    --bytes;
  }
  return ~c;
}

bool crc32c_hardware_available() {
#if TESSERA_CRC32C_X86
  static const bool available = __builtin_cpu_supports("sse4.2");
  return available;
#else
  return false;
#endif
}

uint32_t crc32c_hardware(const void* data, size_t bytes, uint32_t crc) {
#if TESSERA_CRC32C_X86
  return crc32c_sse42(crc, static_cast<const uint8_t*>(data), bytes);
#else
  return crc32c_software(data, bytes, crc);
#endif
}

uint32_t crc32c(const void* data, size_t bytes, uint32_t crc) {
  return crc32c_hardware_available() ? crc32c_hardware(data, bytes, crc) : crc32c_software(data, bytes, crc);
}

std::string crc32c_hex(uint32_t crc) {
  static const char digits[] = "0123456789abcdef";
  std::string s(8, '0');
  for (int i = 7; i >= 0; --i, crc >>= 4) s[size_t(i)] = digits[crc & 0xfu];
  return s;
}

bool parse_crc32c_hex(const std::string& text, uint32_t* crc) {
  if (text.size() != 8) return false;
  uint32_t v = 0;
  for (char ch : text) {
    uint32_t d;
    if (ch >= '0' && ch <= '9') d = uint32_t(ch - '0');
    else if (ch >= 'a' && ch <= 'f') d = uint32_t(ch - 'a' + 10);
    else if (ch >= 'A' && ch <= 'F') d = uint32_t(ch - 'A' + 10);
    else return false;
    v = (v << 4) | d;
  }
  *crc = v;
  return true;
}

}  // namespace tessera::io
