// The token file formats' private parts: which files a path names, and Megatron's .idx.
#pragma once

#include <cstdint>
#include <string>

#include "tessera/data.h"

namespace tessera::io {

// Whether `path` names a Megatron indexed dataset (PREFIX.idx, PREFIX.bin with PREFIX.idx beside
// it, or PREFIX with PREFIX.idx); if so sets the two paths.
bool megatron_paths(const std::string& path, std::string* bin_path, std::string* idx_path);

struct MegatronIndex {
  TokenFormat format = TokenFormat::megatron_u16;
  int64_t sequences = 0;
  int64_t documents = 0;
  int64_t tokens = 0;
};

// Reads PREFIX.idx and checks it in full and against the .bin's size (data errors name the file
// and the byte offset).
MegatronIndex read_megatron_index(const std::string& idx_path, const std::string& bin_path, int64_t bin_bytes);

// "sequence S, document D" of the token at `token` (for error messages; empty if the index cannot
// be read again).
std::string megatron_locate(const std::string& idx_path, int64_t token);

}  // namespace tessera::io
