#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "io/io_test_util.h"
#include "tessera/data.h"

using namespace tessera;
using tessera::test::error_message;
using tessera::test::TempDir;

namespace {

// A shard's bytes built by hand: header fields as given, then `tokens` uint16 values.
std::string raw_shard(int32_t magic, int32_t version, int32_t count, size_t tokens) {
  std::vector<int32_t> header(kShardHeaderInts, 0);
  header[0] = magic;
  header[1] = version;
  header[2] = count;
  std::string bytes(reinterpret_cast<const char*>(header.data()), header.size() * sizeof(int32_t));
  for (size_t i = 0; i < tokens; ++i) {
    uint16_t t = uint16_t(i * 31 + 7);
    bytes.append(reinterpret_cast<const char*>(&t), sizeof t);
  }
  return bytes;
}

}  // namespace

TEST_CASE("token shard: write and read round trip", "[io]") {
  TempDir dir;
  std::vector<uint16_t> tokens(1237);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = uint16_t((i * 7919 + 13) % 65536);
  const std::string path = dir.file("train.bin");
  write_token_shard(path, tokens.data(), int64_t(tokens.size()));
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));

  // llm.c's layout, byte for byte.
  std::string bytes = tessera::test::read_bytes(path);
  REQUIRE(bytes.size() == 1024 + 2 * tokens.size());
  int32_t header[kShardHeaderInts];
  std::memcpy(header, bytes.data(), sizeof header);
  CHECK(header[0] == 20240520);
  CHECK(header[1] == 1);
  CHECK(header[2] == int32_t(tokens.size()));
  for (int i = 3; i < kShardHeaderInts; ++i) CHECK(header[i] == 0);

  TokenShard shard(path);
  CHECK(shard.path() == path);
  CHECK(shard.format() == TokenFormat::llmc_u16);
  CHECK(shard.token_bytes() == 2);
  CHECK(shard.index_path().empty());
  CHECK(shard.byte_offset(3) == 1024 + 6);
  REQUIRE(shard.size() == int64_t(tokens.size()));
  std::vector<int32_t> read(tokens.size());
  shard.read(0, shard.size(), read.data());
  for (size_t i = 0; i < tokens.size(); ++i) REQUIRE(read[i] == int32_t(tokens[i]));
  CHECK(shard.token(17) == tokens[17]);

  // Moving keeps the mapping alive in the new owner.
  TokenShard moved(std::move(shard));
  CHECK(moved.size() == int64_t(tokens.size()));
  CHECK(moved.token(1236) == tokens[1236]);
  TokenShard other(path);
  other = std::move(moved);
  CHECK(other.token(5) == tokens[5]);
}

TEST_CASE("token shard: llm.c's uint32 (LLaMA-3) format round trip", "[io]") {
  TempDir dir;
  std::vector<uint32_t> tokens(777);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = uint32_t((i * 2654435761u) % 128256u);
  tokens[3] = 128255;  // LLaMA 3's last id: needs more than 16 bits
  const std::string path = dir.file("llama.bin");
  write_token_shard(path, tokens.data(), int64_t(tokens.size()));

  std::string bytes = tessera::test::read_bytes(path);
  REQUIRE(bytes.size() == 1024 + 4 * tokens.size());
  int32_t header[kShardHeaderInts];
  std::memcpy(header, bytes.data(), sizeof header);
  CHECK(header[0] == 20240801);  // llm.c dev/data/data_common.py, "llama-3"
  CHECK(header[1] == 7);
  CHECK(header[2] == int32_t(tokens.size()));
  for (int i = 3; i < kShardHeaderInts; ++i) CHECK(header[i] == 0);

  TokenShard shard(path);
  CHECK(shard.format() == TokenFormat::llmc_u32);
  CHECK(std::string(token_format_name(shard.format())) == "llm.c uint32");
  CHECK(shard.token_bytes() == 4);
  CHECK(shard.byte_offset(3) == 1024 + 12);
  REQUIRE(shard.size() == int64_t(tokens.size()));
  CHECK(shard.token(3) == 128255);
  std::vector<int32_t> read(tokens.size());
  shard.read(0, shard.size(), read.data());
  for (size_t i = 0; i < tokens.size(); ++i) REQUIRE(read[i] == int32_t(tokens[i]));
  CHECK(shard.find_bad_token(0, shard.size(), 128256) == -1);
  CHECK(shard.find_bad_token(0, shard.size(), 128255) == 3);
  std::string msg = error_message([&] { shard.throw_bad_token(3, 128000); });
  CHECK(msg.find("token id 128255 at token offset 3 (byte 1036)") != std::string::npos);
  CHECK(msg.find(path) != std::string::npos);
}

TEST_CASE("token shard: malformed files are data errors that name the problem", "[io]") {
  TempDir dir;
  struct Case {
    const char* name;
    std::string bytes;
    const char* problem;
  };
  std::string full = raw_shard(kShardMagic, kShardVersion, 100, 100);
  const Case cases[] = {
      {"magic", raw_shard(12345, kShardVersion, 100, 100), "wrong magic number 12345"},
      {"version", raw_shard(kShardMagic, 7, 100, 100), "unsupported token shard version 7"},
      {"u32_version", raw_shard(kShardMagicU32, 1, 50, 100), "unsupported token shard version 1 (expected 7"},
      {"u32_truncated", raw_shard(kShardMagicU32, kShardVersionU32, 100, 100), "truncated"},  // 2 bytes a token, 4 needed
      {"truncated", full.substr(0, full.size() - 1), "truncated"},
      {"short_header", full.substr(0, 1000), "smaller than the 1024-byte header"},
      {"trailing", full + "xyz", "3 trailing bytes"},
      {"empty", raw_shard(kShardMagic, kShardVersion, 0, 0), "empty"},
      {"negative", raw_shard(kShardMagic, kShardVersion, -5, 0), "negative token count"},
      {"zero_bytes", "", "truncated"},
  };
  for (const Case& c : cases) {
    INFO("case " << c.name);
    const std::string path = dir.file(std::string(c.name) + ".bin");
    tessera::test::write_bytes(path, c.bytes);
    std::string msg = error_message([&] { TokenShard shard(path); });
    CHECK(msg.find(c.problem) != std::string::npos);
    CHECK(msg.find(path) != std::string::npos);
  }
  const std::string missing = dir.file("missing.bin");
  std::string msg = error_message([&] { TokenShard shard(missing); });
  CHECK(msg.find("cannot open token shard") != std::string::npos);
  CHECK(msg.find("does not exist") != std::string::npos);
  CHECK(msg.find(missing) != std::string::npos);

  msg = error_message([&] { TokenShard shard(dir.path()); });
  CHECK(msg.find("not a regular file") != std::string::npos);
}

TEST_CASE("token shard: writing refuses empty shards and unwritable paths", "[io]") {
  TempDir dir;
  uint16_t t = 1;
  error_message([&] { write_token_shard(dir.file("empty.bin"), &t, 0); }, ExitCode::bad_config);
  std::string msg = error_message([&] { write_token_shard(dir.file("no/such/dir.bin"), &t, 1); },
                                  ExitCode::bad_config);
  CHECK(msg.find("cannot create token shard") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir.file("empty.bin")));
}
