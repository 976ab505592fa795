// One file of tokens, read through mmap: llm.c shards (uint16 and uint32) and Megatron datasets;
// llm.c shards written atomically.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#include "io/file_util.h"
#include "io/token_formats.h"
#include "tessera/data.h"
#include "tessera/error.h"

namespace tessera {

namespace {

constexpr int64_t kHeaderBytes = int64_t(kShardHeaderInts) * int64_t(sizeof(int32_t));
const char* kShardHint = "regenerate the shard with tessera-prepare-data, tools/prepare_data.py or llm.c's data scripts";

// Reads an llm.c header; returns the token format and count after checking them and the size.
TokenFormat read_llmc_header(const io::ReadOnlyMapping& mapping, const std::string& path, int64_t* count_out) {
  const int64_t file_bytes = int64_t(mapping.size);
  if (file_bytes < kHeaderBytes)
    throw data_error("token shard is truncated: " + std::to_string(file_bytes) + " bytes, smaller than the " +
                         std::to_string(kHeaderBytes) + "-byte header",
                     path, kShardHint);
  int32_t header[3];
  std::memcpy(header, mapping.data, sizeof header);
  TokenFormat format;
  int32_t version;
  if (header[0] == kShardMagic) {
    format = TokenFormat::llmc_u16;
    version = kShardVersion;
  } else if (header[0] == kShardMagicU32) {
    format = TokenFormat::llmc_u32;
    version = kShardVersionU32;
  } else {
    throw data_error("not a token shard: wrong magic number " + std::to_string(header[0]) + " (expected " +
                         std::to_string(kShardMagic) + " for uint16 tokens or " + std::to_string(kShardMagicU32) +
                         " for uint32 tokens)",
                     path, kShardHint);
  }
  if (header[1] != version)
    throw data_error("unsupported token shard version " + std::to_string(header[1]) + " (expected " +
                         std::to_string(version) + " with magic " + std::to_string(header[0]) + ")",
                     path, kShardHint);
  const int64_t count = header[2];
  if (count < 0)
    throw data_error("token shard header has a negative token count " + std::to_string(count), path, kShardHint);
  if (count == 0) throw data_error("token shard is empty (0 tokens)", path, "remove it or regenerate it with more text");
  const int64_t expected = kHeaderBytes + (format == TokenFormat::llmc_u16 ? 2 : 4) * count;
  if (file_bytes < expected)
    throw data_error("token shard is truncated: the header says " + std::to_string(count) + " tokens (" +
                         std::to_string(expected) + " bytes) but the file has " + std::to_string(file_bytes) +
                         " bytes",
                     path, kShardHint);
  if (file_bytes > expected)
    throw data_error("token shard has " + std::to_string(file_bytes - expected) +
                         " trailing bytes after its " + std::to_string(count) + " tokens",
                     path, kShardHint);
  *count_out = count;
  return format;
}

// The first index in [begin, end) whose id, read as unsigned (a negative int32 becomes >= 2^31),
// is >= vocab; -1 if none. Blocks are first reduced to their maximum, which vectorizes.
template <class Stored>
int64_t first_at_least(const Stored* tokens, int64_t begin, int64_t end, uint64_t vocab) {
  using Unsigned = std::make_unsigned_t<Stored>;
  const auto* p = reinterpret_cast<const Unsigned*>(tokens);
  constexpr int64_t kBlock = int64_t(1) << 14;
  for (int64_t block = begin; block < end; block += kBlock) {
    const int64_t stop = std::min(end, block + kBlock);
    Unsigned largest = 0;
    for (int64_t i = block; i < stop; ++i) largest = std::max(largest, p[i]);
    if (uint64_t(largest) < vocab) continue;
    for (int64_t i = block; i < stop; ++i)
      if (uint64_t(p[i]) >= vocab) return i;
  }
  return -1;
}

template <class Stored>
void widen(const Stored* tokens, int64_t offset, int64_t count, int32_t* out) {
  for (int64_t i = 0; i < count; ++i) out[i] = int32_t(tokens[offset + i]);
}

template <class Token>
void write_llmc_shard(const std::string& path, const Token* tokens, int64_t count, int32_t magic, int32_t version) {
  if (count <= 0)
    throw config_error("cannot write an empty token shard", "give it at least one token", path);
  if (count > std::numeric_limits<int32_t>::max())
    throw config_error("too many tokens for one shard: " + std::to_string(count) + " (the header holds an int32)",
                       "split the tokens over several shards", path);
  int32_t header[kShardHeaderInts] = {};
  header[0] = magic;
  header[1] = version;
  header[2] = int32_t(count);
  io::AtomicFileWriter out(path, "token shard");
  out.write(header, sizeof header);
  out.write(tokens, size_t(count) * sizeof(Token));
  out.commit();
}

}  // namespace

const char* token_format_name(TokenFormat f) {
  switch (f) {
    case TokenFormat::llmc_u16: return "llm.c uint16";
    case TokenFormat::llmc_u32: return "llm.c uint32";
    case TokenFormat::megatron_u16: return "Megatron uint16";
    case TokenFormat::megatron_i32: return "Megatron int32";
  }
  return "?";
}

TokenShard::TokenShard(const std::string& path) : path_(path) {
  std::string bin_path, idx_path;
  if (io::megatron_paths(path, &bin_path, &idx_path)) {
    io::ReadOnlyMapping mapping = io::map_file(bin_path, "Megatron data file");
    const io::MegatronIndex index = io::read_megatron_index(idx_path, bin_path, int64_t(mapping.size));
    path_ = bin_path;
    index_path_ = idx_path;
    format_ = index.format;
    count_ = index.tokens;
    documents_ = index.documents;
    data_offset_ = 0;
    map_ = mapping.release(&map_bytes_);
  } else {
    io::ReadOnlyMapping mapping = io::map_file(path, "token shard");
    format_ = read_llmc_header(mapping, path, &count_);
    data_offset_ = kHeaderBytes;
    map_ = mapping.release(&map_bytes_);
  }
  tokens_ = static_cast<const unsigned char*>(map_) + data_offset_;
}

TokenShard::~TokenShard() { release(); }

void TokenShard::release() {
  if (map_) io::unmap(map_, map_bytes_);
  map_ = nullptr;
  map_bytes_ = 0;
  tokens_ = nullptr;
  count_ = 0;
}

TokenShard::TokenShard(TokenShard&& other) noexcept { *this = std::move(other); }

TokenShard& TokenShard::operator=(TokenShard&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    index_path_ = std::move(other.index_path_);
    format_ = other.format_;
    map_ = other.map_;
    map_bytes_ = other.map_bytes_;
    tokens_ = other.tokens_;
    data_offset_ = other.data_offset_;
    count_ = other.count_;
    documents_ = other.documents_;
    other.map_ = nullptr;
    other.map_bytes_ = 0;
    other.tokens_ = nullptr;
    other.count_ = 0;
  }
  return *this;
}

int TokenShard::token_bytes() const {
  return format_ == TokenFormat::llmc_u16 || format_ == TokenFormat::megatron_u16 ? 2 : 4;
}

int64_t TokenShard::token(int64_t i) const {
  switch (format_) {
    case TokenFormat::llmc_u16:
    case TokenFormat::megatron_u16: return reinterpret_cast<const uint16_t*>(tokens_)[i];
    case TokenFormat::llmc_u32: return reinterpret_cast<const uint32_t*>(tokens_)[i];
    case TokenFormat::megatron_i32: return reinterpret_cast<const int32_t*>(tokens_)[i];
  }
  return 0;
}

void TokenShard::read(int64_t offset, int64_t count, int32_t* out) const {
  switch (format_) {
    case TokenFormat::llmc_u16:
    case TokenFormat::megatron_u16: return widen(reinterpret_cast<const uint16_t*>(tokens_), offset, count, out);
    case TokenFormat::llmc_u32: return widen(reinterpret_cast<const uint32_t*>(tokens_), offset, count, out);
    case TokenFormat::megatron_i32: return widen(reinterpret_cast<const int32_t*>(tokens_), offset, count, out);
  }
}

int64_t TokenShard::find_bad_token(int64_t begin, int64_t end, int vocab_size) const {
  const uint64_t vocab = uint64_t(std::max(vocab_size, 0));
  switch (format_) {
    case TokenFormat::llmc_u16:
    case TokenFormat::megatron_u16: return first_at_least(reinterpret_cast<const uint16_t*>(tokens_), begin, end, vocab);
    case TokenFormat::llmc_u32: return first_at_least(reinterpret_cast<const uint32_t*>(tokens_), begin, end, vocab);
    case TokenFormat::megatron_i32: return first_at_least(reinterpret_cast<const int32_t*>(tokens_), begin, end, vocab);
  }
  return -1;
}

void TokenShard::throw_bad_token(int64_t i, int vocab_size) const {
  std::string where = "token offset " + std::to_string(i) + " (byte " + std::to_string(byte_offset(i)) + ")";
  if (!index_path_.empty()) {
    const std::string located = io::megatron_locate(index_path_, i);
    if (!located.empty()) where += ", " + located + " of " + index_path_;
  }
  throw data_error("token id " + std::to_string(token(i)) + " at " + where + " is outside the vocabulary (size " +
                       std::to_string(vocab_size) + ")",
                   path_, "the data was tokenized for another vocabulary; regenerate it or use the matching model");
}

void write_token_shard(const std::string& path, const uint16_t* tokens, int64_t count) {
  write_llmc_shard(path, tokens, count, kShardMagic, kShardVersion);
}

void write_token_shard(const std::string& path, const uint32_t* tokens, int64_t count) {
  write_llmc_shard(path, tokens, count, kShardMagicU32, kShardVersionU32);
}

}  // namespace tessera
