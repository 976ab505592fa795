// CRC32C (Castagnoli, the iSCSI/ext4 checksum) for checkpoint files (private).
// The SSE4.2 crc32 instruction when the CPU has it, slicing-by-8 tables otherwise; both give the
// same value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tessera::io {

// Extends `crc` (the CRC32C of the bytes before these; 0 to start) over `bytes` more bytes, so
// crc32c(b, n2, crc32c(a, n1)) == crc32c(a followed by b).
uint32_t crc32c(const void* data, size_t bytes, uint32_t crc = 0);

// The two implementations, for tests. crc32c_hardware may only be called when available.
uint32_t crc32c_software(const void* data, size_t bytes, uint32_t crc = 0);
bool crc32c_hardware_available();
uint32_t crc32c_hardware(const void* data, size_t bytes, uint32_t crc = 0);

// "8a9136aa": eight lowercase hex digits, as manifests store it.
std::string crc32c_hex(uint32_t crc);
// Parses crc32c_hex's form; false when `text` is not eight hex digits.
bool parse_crc32c_hex(const std::string& text, uint32_t* crc);

}  // namespace tessera::io
