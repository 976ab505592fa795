#include "io/local_shard.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "io/crc32c.h"
#include "io/file_util.h"
#include "io/json.h"
#include "tessera/error.h"

namespace tessera::io {

namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'T', 'S', 'L', 'O', 'C', 'A', 'L', '1'};
constexpr size_t kPrefix = 16;  // magic + header length

std::string header_json(const LocalShardHeader& h) {
  json::Value v = json::Value::object();
  v.set("rank", h.rank);
  v.set("world_size", h.world_size);
  v.set("step", h.step);
  v.set("layout", h.layout);
  v.set("run_id", h.run_id);
  v.set("optimizer_step", h.optimizer_step);
  v.set("state", json::parse(h.state_json, "training state"));
  v.set("payload_bytes", int64_t(h.payload_bytes));
  return v.dump();
}

LocalShardHeader parse_header(const char* data, size_t size, const std::string& where) {
  const json::Value v = json::parse(data, size, where);
  LocalShardHeader h;
  h.rank = int(v.at("rank").as_int64());
  h.world_size = int(v.at("world_size").as_int64());
  h.step = v.at("step").as_int64();
  h.layout = v.at("layout").as_string();
  if (const json::Value* run = v.find("run_id")) h.run_id = run->as_string();  // "" in shards of no run
  h.optimizer_step = v.at("optimizer_step").as_int64();
  h.state_json = v.at("state").dump();
  h.payload_bytes = uint64_t(v.at("payload_bytes").as_int64());
  return h;
}

uint64_t read_u64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | uint8_t(p[i]);
  return v;
}

}  // namespace

std::vector<char> pack_local_shard(const LocalShardHeader& header, const std::vector<char>& payload) {
  LocalShardHeader h = header;
  h.payload_bytes = payload.size();
  const std::string text = header_json(h);
  std::vector<char> blob(kPrefix + text.size() + payload.size() + 4);
  std::memcpy(blob.data(), kMagic, 8);
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) blob[size_t(8 + i)] = char((n >> (8 * i)) & 0xff);
  std::memcpy(blob.data() + kPrefix, text.data(), text.size());
  if (!payload.empty()) std::memcpy(blob.data() + kPrefix + text.size(), payload.data(), payload.size());
  const uint32_t crc = crc32c(blob.data(), blob.size() - 4);
  for (int i = 0; i < 4; ++i) blob[blob.size() - 4 + size_t(i)] = char((crc >> (8 * i)) & 0xff);
  return blob;
}

LocalShardHeader unpack_local_shard(const std::vector<char>& blob, const std::string& where, std::vector<char>* payload) {
  const char* hint = "the local copy is damaged; the durable checkpoint is used instead";
  if (blob.size() < kPrefix + 4 || std::memcmp(blob.data(), kMagic, 8) != 0)
    throw data_error("not a local checkpoint shard (bad magic or too short)", where, hint);
  const uint64_t header_bytes = read_u64(blob.data() + 8);
  if (header_bytes > blob.size() - kPrefix - 4) throw data_error("local checkpoint shard truncated in its header", where, hint);
  uint32_t stored = 0;
  for (int i = 3; i >= 0; --i) stored = (stored << 8) | uint8_t(blob[blob.size() - 4 + size_t(i)]);
  const uint32_t crc = crc32c(blob.data(), blob.size() - 4);
  if (crc != stored)
    throw data_error("local checkpoint shard has CRC32C " + crc32c_hex(crc) + ", expected " + crc32c_hex(stored), where, hint);
  LocalShardHeader h = parse_header(blob.data() + kPrefix, size_t(header_bytes), where);
  if (kPrefix + header_bytes + h.payload_bytes + 4 != blob.size())
    throw data_error("local checkpoint shard holds " + std::to_string(blob.size()) + " bytes, its header says " +
                         std::to_string(kPrefix + header_bytes + h.payload_bytes + 4),
                     where, hint);
  if (payload) payload->assign(blob.begin() + int64_t(kPrefix + header_bytes), blob.end() - 4);
  return h;
}

LocalShardHeader peek_local_shard(const std::string& path, uint64_t* file_bytes) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw data_error("cannot open the local checkpoint shard: " + std::string(std::strerror(errno)), path);
  char prefix[kPrefix];
  std::string header;
  bool ok = std::fread(prefix, 1, kPrefix, f) == kPrefix && std::memcmp(prefix, kMagic, 8) == 0;
  const uint64_t header_bytes = ok ? read_u64(prefix + 8) : 0;
  if (ok && header_bytes < (uint64_t(1) << 24)) {
    header.resize(size_t(header_bytes));
    ok = std::fread(header.data(), 1, header.size(), f) == header.size();
  } else {
    ok = false;
  }
  std::fclose(f);
  if (!ok) throw data_error("not a local checkpoint shard", path);
  std::error_code ec;
  *file_bytes = uint64_t(fs::file_size(path, ec));
  if (ec) throw data_error("cannot stat the local checkpoint shard: " + ec.message(), path);
  return parse_header(header.data(), header.size(), path);
}

void write_local_shard(const std::string& path, const std::vector<char>& blob) {
  // No fsync: the tier protects against a process or a node dying, and a node that dies takes the
  // page cache with the files; the partner's copy covers that.
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw data_error("cannot create the local checkpoint shard: " + std::string(std::strerror(errno)), tmp);
  const bool written = blob.empty() || std::fwrite(blob.data(), 1, blob.size(), f) == blob.size();
  const int err = errno;
  if (std::fclose(f) != 0 || !written) {
    std::remove(tmp.c_str());
    throw data_error("cannot write the local checkpoint shard: " + std::string(std::strerror(err)), tmp,
                     "check the space in --local-checkpoint-dir");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    throw data_error("cannot move the local checkpoint shard into place: " + std::string(std::strerror(e)), path);
  }
}

std::vector<char> read_local_shard(const std::string& path) {
  const std::string text = read_file(path, "local checkpoint shard");
  return std::vector<char>(text.begin(), text.end());
}

}  // namespace tessera::io
