#include <catch2/catch.hpp>

#include <functional>
#include <string>
#include <vector>

#include "io/io_test_util.h"
#include "io/token_files.h"
#include "tessera/data.h"

using namespace tessera;
using namespace tessera::test;

namespace {

const std::vector<std::vector<int64_t>> kDocuments = {{50256, 10, 11, 12}, {50256, 20}, {50256, 30, 31, 32, 33, 34}};

std::vector<int64_t> all_tokens(const TokenShard& shard) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < shard.size(); ++i) out.push_back(shard.token(i));
  return out;
}

}  // namespace

TEST_CASE("Megatron dataset: uint16 and int32 read by prefix, .bin or .idx", "[io]") {
  TempDir dir;
  const std::vector<int64_t> flat = {50256, 10, 11, 12, 50256, 20, 50256, 30, 31, 32, 33, 34};
  for (uint8_t code : {uint8_t(8), uint8_t(4)}) {
    INFO("dtype code " << int(code));
    const std::string prefix = dir.file("wiki_text_document_" + std::to_string(code));
    write_megatron(prefix, megatron_bytes(kDocuments, code));
    for (const std::string& name : {prefix, prefix + ".bin", prefix + ".idx"}) {
      TokenShard shard(name);
      CHECK(shard.path() == prefix + ".bin");
      CHECK(shard.index_path() == prefix + ".idx");
      CHECK(shard.format() == (code == 8 ? TokenFormat::megatron_u16 : TokenFormat::megatron_i32));
      CHECK(shard.token_bytes() == (code == 8 ? 2 : 4));
      CHECK(shard.byte_offset(5) == 5 * shard.token_bytes());
      CHECK(shard.documents() == 3);
      CHECK(all_tokens(shard) == flat);
    }
  }
  // A glob over the directory matches each dataset's .bin and .idx: each is read once.
  TokenDataset data(dir.file("wiki_*"));
  REQUIRE(data.shards().size() == 2);
  CHECK(data.total_tokens() == 24);
  CHECK(data.total_bytes() == 12 * 4 + 12 * 2);
  CHECK(data.formats() == "Megatron int32, Megatron uint16");
}

TEST_CASE("Megatron dataset: a damaged .idx or .bin is a data error naming the file and the byte", "[io]") {
  TempDir dir;
  const MegatronFiles good = megatron_bytes(kDocuments, 8);
  const int64_t n = 3, d = 4;
  const int64_t pointers_at = kIdxLengthsAt + 4 * n, documents_at = pointers_at + 8 * n;
  struct Case {
    const char* name;
    MegatronFiles files;
    const char* problem;
    bool names_idx;  // the error names the .idx (else the .bin)
  };
  std::vector<Case> cases;
  auto damaged = [&](const char* name, const char* problem, bool names_idx, const std::function<void(MegatronFiles&)>& change) {
    MegatronFiles f = good;
    change(f);
    cases.push_back({name, f, problem, names_idx});
  };
  damaged("magic", "does not start with MMIDIDX", true, [](MegatronFiles& f) { f.idx[0] = 'X'; });
  damaged("version", "unsupported Megatron index version 2 (expected 1) (at byte 9", true,
          [](MegatronFiles& f) { poke(f.idx, kIdxVersionAt, uint64_t(2)); });
  damaged("float dtype", "dtype code 7 (float32), not a token type", true,
          [](MegatronFiles& f) { poke(f.idx, kIdxCodeAt, uint8_t(7)); });
  damaged("short header", "smaller than the 34-byte header", true, [](MegatronFiles& f) { f.idx.resize(20); });
  damaged("huge count", "more than its", true,
          [](MegatronFiles& f) { poke(f.idx, kIdxSequencesAt, uint64_t(1) << 62); });
  damaged("truncated", "(truncated)", true, [](MegatronFiles& f) { f.idx.pop_back(); });
  damaged("trailing", "has 104 bytes; its 3 sequences and 4 document boundaries take 102", true, [](MegatronFiles& f) { f.idx += "zz"; });
  damaged("multimodal", "multimodal", true, [](MegatronFiles& f) { f.idx += std::string(3, '\0'); });
  damaged("no documents", "no document boundaries", true, [&](MegatronFiles& f) {
    poke(f.idx, kIdxDocumentsAt, uint64_t(0));
    f.idx.resize(size_t(documents_at));
  });
  damaged("negative length", "sequence 1 has a negative length -2 (at byte 38", true,
          [](MegatronFiles& f) { poke(f.idx, kIdxLengthsAt + 4, int32_t(-2)); });
  damaged("gap", "sequence 2 starts at byte 14 of the .bin, but the sequences before it end at byte 12 (at byte 62 ", true,
          [&](MegatronFiles& f) { poke(f.idx, pointers_at + 16, int64_t(14)); });
  damaged("first boundary", "(the first must be 0)", true, [&](MegatronFiles& f) { poke(f.idx, documents_at, int64_t(1)); });
  damaged("decreasing boundary", "document boundary 2 is sequence 0, outside 1..3", true,
          [&](MegatronFiles& f) { poke(f.idx, documents_at + 16, int64_t(0)); });
  damaged("last boundary", "the last document boundary is sequence 2, not the sequence count 3", true,
          [&](MegatronFiles& f) { poke(f.idx, documents_at + 8 * (d - 1), int64_t(2)); });
  damaged("short bin", "the .bin has 23 bytes, but its index's sequences take 24 (truncated)", false,
          [](MegatronFiles& f) { f.bin.pop_back(); });
  damaged("long bin", "(trailing bytes)", false, [](MegatronFiles& f) { f.bin += "x"; });
  cases.push_back({"empty", megatron_bytes({{}}, 8), "holds no tokens", false});

  for (const Case& c : cases) {
    INFO("case " << c.name);
    const std::string prefix = dir.file(std::string("d_") + std::to_string(&c - cases.data()));
    write_megatron(prefix, c.files);
    const std::string msg = error_message([&] { TokenShard shard(prefix + ".bin"); });
    CHECK(msg.find(c.problem) != std::string::npos);
    CHECK(msg.find(prefix + (c.names_idx ? ".idx" : ".bin")) != std::string::npos);
  }
  // The .idx without its .bin.
  write_bytes(dir.file("lonely.idx"), good.idx);
  const std::string msg = error_message([&] { TokenShard shard(dir.file("lonely.idx")); });
  CHECK(msg.find("does not exist") != std::string::npos);
  CHECK(msg.find(dir.file("lonely.bin")) != std::string::npos);
}

TEST_CASE("Megatron dataset: a bad id names the file, offsets, sequence and document", "[io]") {
  TempDir dir;
  std::vector<std::vector<int64_t>> docs = kDocuments;
  docs[2][3] = -7;  // token offset 6 + 3 = 9, the third document's sequence
  write_megatron(dir.file("neg"), megatron_bytes(docs, 4));
  TokenShard shard(dir.file("neg"));
  CHECK(shard.find_bad_token(0, shard.size(), 50257) == 9);
  CHECK(shard.find_bad_token(0, 9, 50257) == -1);
  const std::string msg = error_message([&] { shard.throw_bad_token(9, 50257); });
  CHECK(msg.find("token id -7 at token offset 9 (byte 36), sequence 2, document 2 of " + dir.file("neg.idx")) !=
        std::string::npos);
  CHECK(msg.find("size 50257") != std::string::npos);
  CHECK(msg.find(dir.file("neg.bin")) != std::string::npos);
  // 50256 is outside a vocabulary of 50000: the first one is the first token.
  CHECK(shard.find_bad_token(0, shard.size(), 50000) == 0);
}
