// llm.c token shards: read through mmap, written atomically.
#include <cstdint>
#include <cstring>
#include <limits>

#include "io/file_util.h"
#include "tessera/data.h"
#include "tessera/error.h"

namespace tessera {

namespace {

constexpr int64_t kHeaderBytes = int64_t(kShardHeaderInts) * int64_t(sizeof(int32_t));
const char* kShardHint = "regenerate the shard with tessera-prepare-data (or llm.c's data scripts)";

}  // namespace

TokenShard::TokenShard(const std::string& path) : path_(path) {
  io::ReadOnlyMapping mapping = io::map_file(path, "token shard");
  const int64_t file_bytes = int64_t(mapping.size);
  if (file_bytes < kHeaderBytes)
    throw data_error("token shard is truncated: " + std::to_string(file_bytes) + " bytes, smaller than the " +
                         std::to_string(kHeaderBytes) + "-byte header",
                     path, kShardHint);
  int32_t header[3];
  std::memcpy(header, mapping.data, sizeof header);
  if (header[0] != kShardMagic)
    throw data_error("not a token shard: wrong magic number " + std::to_string(header[0]) + " (expected " +
                         std::to_string(kShardMagic) + ")",
                     path, kShardHint);
  if (header[1] != kShardVersion)
    throw data_error("unsupported token shard version " + std::to_string(header[1]) + " (expected " +
                         std::to_string(kShardVersion) + ")",
                     path, kShardHint);
  const int64_t count = header[2];
  if (count < 0)
    throw data_error("token shard header has a negative token count " + std::to_string(count), path, kShardHint);
  if (count == 0) throw data_error("token shard is empty (0 tokens)", path, "remove it or regenerate it with more text");
  const int64_t expected = kHeaderBytes + 2 * count;
  if (file_bytes < expected)
    throw data_error("token shard is truncated: the header says " + std::to_string(count) + " tokens (" +
                         std::to_string(expected) + " bytes) but the file has " + std::to_string(file_bytes) +
                         " bytes",
                     path, kShardHint);
  if (file_bytes > expected)
    throw data_error("token shard has " + std::to_string(file_bytes - expected) +
                         " trailing bytes after its " + std::to_string(count) + " tokens",
                     path, kShardHint);
  map_ = mapping.release(&map_bytes_);
  tokens_ = reinterpret_cast<const uint16_t*>(static_cast<const char*>(map_) + kHeaderBytes);
  count_ = count;
}

TokenShard::~TokenShard() { release(); }

void TokenShard::release() {
  if (map_) io::unmap(map_, map_bytes_);
  map_ = nullptr;
  map_bytes_ = 0;
  tokens_ = nullptr;
  count_ = 0;
}

TokenShard::TokenShard(TokenShard&& other) noexcept
    : path_(std::move(other.path_)),
      map_(other.map_),
      map_bytes_(other.map_bytes_),
      tokens_(other.tokens_),
      count_(other.count_) {
  other.map_ = nullptr;
  other.map_bytes_ = 0;
  other.tokens_ = nullptr;
  other.count_ = 0;
}

TokenShard& TokenShard::operator=(TokenShard&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    map_ = other.map_;
    map_bytes_ = other.map_bytes_;
    tokens_ = other.tokens_;
    count_ = other.count_;
    other.map_ = nullptr;
    other.map_bytes_ = 0;
    other.tokens_ = nullptr;
    other.count_ = 0;
  }
  return *this;
}

void write_token_shard(const std::string& path, const uint16_t* tokens, int64_t count) {
  if (count <= 0)
    throw config_error("cannot write an empty token shard", "give it at least one token", path);
  if (count > std::numeric_limits<int32_t>::max())
    throw config_error("too many tokens for one shard: " + std::to_string(count) + " (the header holds an int32)",
                       "split the tokens over several shards", path);
  int32_t header[kShardHeaderInts] = {};
  header[0] = kShardMagic;
  header[1] = kShardVersion;
  header[2] = int32_t(count);
  io::AtomicFileWriter out(path, "token shard");
  out.write(header, sizeof header);
  out.write(tokens, size_t(count) * sizeof(uint16_t));
  out.commit();
}

}  // namespace tessera
