#include <catch2/catch.hpp>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <string>
#include <vector>

#include "io/checkpoint_layout.h"
#include "io/io_test_util.h"
#include "io/json.h"
#include "support/test_support.h"
#include "tessera/checkpoint.h"
#include "tessera/fault_injection.h"

using namespace tessera;
namespace fs = std::filesystem;
using test::error_message;
using test::TempDir;

namespace {

// Runs one rank's background write to completion.
CheckpointWriteResult write_rank(const std::string& root, int64_t step, int rank, CheckpointSnapshot snapshot,
                                 const std::string& metadata = "{}") {
  AsyncCheckpointWriter writer;
  writer.start(root, step, rank, std::move(snapshot), metadata);
  CheckpointWriteResult r = writer.wait();
  INFO(r.error);
  REQUIRE(r.ok);
  return r;
}

CheckpointPiece rect(const std::string& name, DType dtype, std::vector<int64_t> global, std::vector<int64_t> offset,
                     std::vector<int64_t> shape, const void* data, int replica = 0) {
  CheckpointPiece p;
  p.name = name;
  p.dtype = dtype;
  p.global_shape = std::move(global);
  p.offset = std::move(offset);
  p.shape = std::move(shape);
  p.data = data;
  p.replica = replica;
  return p;
}

// Rows [r0, r0+nr) and columns [c0, c0+nc) of a row-major matrix with `cols` columns.
template <class T>
std::vector<T> block(const std::vector<T>& full, int64_t cols, int64_t r0, int64_t c0, int64_t nr, int64_t nc) {
  std::vector<T> out;
  for (int64_t r = r0; r < r0 + nr; ++r)
    for (int64_t c = c0; c < c0 + nc; ++c) out.push_back(full[size_t(r * cols + c)]);
  return out;
}

template <class T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// A small checkpoint of `world` ranks: tensor "w" (4 x 3, f32) split by rows, values step*100 + i.
void save_simple(const std::string& root, int64_t step, int keep, int world = 2) {
  std::vector<float> w(12);
  for (size_t i = 0; i < w.size(); ++i) w[i] = float(step * 100 + int64_t(i));
  int64_t rows_per_rank = 4 / world;
  for (int r = 0; r < world; ++r) {
    CheckpointSnapshot s;
    s.add_copy(rect("w", DType::f32, {4, 3}, {r * rows_per_rank, 0}, {rows_per_rank, 3}, w.data() + r * rows_per_rank * 3));
    write_rank(root, step, r, std::move(s), "{\"rank\":" + std::to_string(r) + "}");
  }
  commit_checkpoint(root, step, world, "{\"step\":" + std::to_string(step) + "}", keep);
}

std::string latest_of(const std::string& root) { return io::ckpt::read_latest(root); }

// The invariant that must hold at every moment: `latest` names a committed directory that verifies.
void require_latest_valid(const std::string& root, const std::string& expected_name) {
  std::string latest = latest_of(root);
  CHECK(latest == expected_name);
  REQUIRE(fs::is_directory(root + "/" + latest));
  auto problems = verify_checkpoint(root + "/" + latest);
  for (const auto& p : problems) UNSCOPED_INFO(p.message());
  CHECK(problems.empty());
}

}  // namespace

TEST_CASE("checkpoint: saved under one layout, read under others, bitwise", "[io][checkpoint]") {
  TempDir dir;
  const std::string root = dir.file("ckpt");
  // w (6 x 10): rank 0 holds rows 0..2, rank 1 rows 3..5. b (10): replicated on both ranks.
  // e (4 x 5 x 3): split along dim 1 (rank 0: 0..1, rank 1: 2..4). x (8 x 4) bf16, by rows. ids (5) i32 on rank 1.
  std::vector<float> w = test::random_uniform(60, 1), b = test::random_uniform(10, 2), e = test::random_uniform(60, 3);
  std::vector<bf16> x(32);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float_to_bf16(test::random_uniform(32, 4)[i]);
  std::vector<int32_t> ids = {7, -3, 1 << 30, 0, 42};
  auto e_part = [&](int64_t j0, int64_t nj) {
    std::vector<float> out;
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = j0; j < j0 + nj; ++j)
        for (int64_t k = 0; k < 3; ++k) out.push_back(e[size_t((i * 5 + j) * 3 + k)]);
    return out;
  };
  std::vector<float> e0 = e_part(0, 2), e1 = e_part(2, 3);

  for (int rank = 0; rank < 2; ++rank) {
    CheckpointSnapshot s;
    s.add_copy(rect("w", DType::f32, {6, 10}, {3 * rank, 0}, {3, 10}, w.data() + 30 * rank));
    s.add_copy(rect("b", DType::f32, {10}, {0}, {10}, b.data(), /*replica=*/rank));
    s.add_copy(rect("e", DType::f32, {4, 5, 3}, {0, rank == 0 ? 0 : 2, 0}, {4, rank == 0 ? 2 : 3, 3},
                    rank == 0 ? e0.data() : e1.data()));
    // x through add(): the snapshot owns the memory and the caller fills it (the device-to-host copy).
    void* xs = s.add(rect("x", DType::bf16, {8, 4}, {4 * rank, 0}, {4, 4}, nullptr));
    std::memcpy(xs, x.data() + 16 * rank, 16 * sizeof(bf16));
    if (rank == 1) s.add_borrowed(rect("ids", DType::i32, {5}, {0}, {5}, ids.data()));
    write_rank(root, 10, rank, std::move(s));
  }
  auto commit = commit_checkpoint(root, 10, 2, "{}", 0);
  CHECK(commit.dir == root + "/step-00000010");

  CheckpointReader reader(commit.dir);
  CHECK(reader.step() == 10);
  CHECK(reader.world_size() == 2);
  CHECK(reader.tensor_names() == std::vector<std::string>{"w", "b", "e", "x", "ids"});
  CHECK(reader.has("e"));
  CHECK_FALSE(reader.has("nope"));
  CHECK(reader.global_shape("e") == std::vector<int64_t>{4, 5, 3});
  CHECK(reader.dtype("x") == DType::bf16);

  SECTION("whole tensors") {
    std::vector<float> got(60);
    reader.read_all("w", DType::f32, got.data());
    CHECK(bitwise_equal(got, w));
    std::vector<float> gb(10);
    reader.read_all("b", DType::f32, gb.data());
    CHECK(bitwise_equal(gb, b));
    reader.read_all("e", DType::f32, got.data());
    CHECK(bitwise_equal(got, e));
    std::vector<int32_t> gi(5);
    reader.read_all("ids", DType::i32, gi.data());
    CHECK(gi == ids);
  }
  SECTION("w as three column slabs and as a rectangle across both ranks' rows") {
    int64_t c0 = 0;
    for (int64_t width : {4, 3, 3}) {
      std::vector<float> got(size_t(6 * width));
      reader.read("w", {0, c0}, {6, width}, DType::f32, got.data());
      CHECK(bitwise_equal(got, block(w, 10, 0, c0, 6, width)));
      c0 += width;
    }
    std::vector<float> got(4 * 7);
    reader.read("w", {1, 2}, {4, 7}, DType::f32, got.data());
    CHECK(bitwise_equal(got, block(w, 10, 1, 2, 4, 7)));
  }
  SECTION("e as row slabs of its first dimension and a rectangle across the split") {
    for (int64_t i0 : {0, 2}) {
      std::vector<float> got(2 * 5 * 3);
      reader.read("e", {i0, 0, 0}, {2, 5, 3}, DType::f32, got.data());
      CHECK(bitwise_equal(got, std::vector<float>(e.begin() + i0 * 15, e.begin() + (i0 + 2) * 15)));
    }
    std::vector<float> got(2 * 3 * 2), want;
    for (int64_t i = 1; i < 3; ++i)
      for (int64_t j = 1; j < 4; ++j)
        for (int64_t k = 1; k < 3; ++k) want.push_back(e[size_t((i * 5 + j) * 3 + k)]);
    reader.read("e", {1, 1, 1}, {2, 3, 2}, DType::f32, got.data());
    CHECK(bitwise_equal(got, want));
  }
  SECTION("dtype conversion between f32 and bf16") {
    std::vector<bf16> xb(32);
    reader.read_all("x", DType::bf16, xb.data());
    for (size_t i = 0; i < 32; ++i) CHECK(xb[i].bits == x[i].bits);
    std::vector<float> xf(32);
    reader.read_all("x", DType::f32, xf.data());
    for (size_t i = 0; i < 32; ++i) CHECK(xf[i] == bf16_to_float(x[i]));
    std::vector<bf16> wb(60);
    reader.read_all("w", DType::bf16, wb.data());
    for (size_t i = 0; i < 60; ++i) CHECK(wb[i].bits == float_to_bf16(w[i]).bits);
  }
  SECTION("errors name the tensor") {
    std::vector<float> got(60);
    CHECK_THAT(error_message([&] { reader.read_all("nope", DType::f32, got.data()); }),
               Catch::Contains("no tensor 'nope'"));
    CHECK_THAT(error_message([&] { reader.read_all("ids", DType::f32, got.data()); }),
               Catch::Contains("saved as i32"));
    CHECK_THAT(error_message([&] { reader.read("w", {5, 0}, {2, 10}, DType::f32, got.data()); }, ExitCode::bad_config),
               Catch::Contains("does not fit"));
    CHECK_THAT(error_message([&] { reader.read("w", {0}, {6}, DType::f32, got.data()); }, ExitCode::bad_config),
               Catch::Contains("dimensions"));
  }
}

TEST_CASE("checkpoint: ZeRO-style flat ranges become rectangles that read back under any layout", "[io][checkpoint]") {
  const std::vector<int64_t> shape = {3, 4, 5};  // 60 elements
  std::vector<float> t = test::random_uniform(60, 7);

  // The decomposition itself: rectangles in memory order, covering the range exactly.
  auto pieces = flat_range_pieces("t", DType::f32, shape, 7, 41, t.data() + 7);
  CHECK(pieces.size() <= 5);
  const float* next = t.data() + 7;
  int64_t total = 0;
  for (const auto& p : pieces) {
    CHECK(p.data == next);
    // The first element of each piece sits where the flat position says.
    int64_t flat = (p.offset[0] * 4 + p.offset[1]) * 5 + p.offset[2];
    CHECK(flat == (static_cast<const float*>(p.data) - t.data()));
    next += p.numel();
    total += p.numel();
  }
  CHECK(total == 41);
  CHECK(flat_range_pieces("t", DType::f32, shape, 0, 60).size() == 1);
  CHECK(flat_range_pieces("t", DType::f32, shape, 5, 0).empty());
  CHECK_THAT(error_message([&] { flat_range_pieces("t", DType::f32, shape, 50, 11); }, ExitCode::bad_config),
             Catch::Contains("does not fit"));

  // Three "ZeRO ranks" own [0,7), [7,48), [48,60).
  TempDir dir;
  const std::string root = dir.file("ckpt");
  const int64_t bounds[] = {0, 7, 48, 60};
  for (int r = 0; r < 3; ++r) {
    CheckpointSnapshot s;
    for (const auto& p : flat_range_pieces("t", DType::f32, shape, bounds[r], bounds[r + 1] - bounds[r], t.data() + bounds[r]))
      s.add_copy(p);
    write_rank(root, 3, r, std::move(s));
  }
  commit_checkpoint(root, 3, 3, "{}", 0);
  CheckpointReader reader(root + "/step-00000003");
  std::vector<float> got(60);
  reader.read_all("t", DType::f32, got.data());
  CHECK(bitwise_equal(got, t));
  // As tensor-parallel slabs of the last dimension.
  for (int64_t k0 : {0, 2}) {
    int64_t nk = k0 == 0 ? 2 : 3;
    std::vector<float> slab(size_t(12 * nk)), want;
    for (int64_t i = 0; i < 12; ++i)
      for (int64_t k = k0; k < k0 + nk; ++k) want.push_back(t[size_t(i * 5 + k)]);
    reader.read("t", {0, 0, k0}, {3, 4, nk}, DType::f32, slab.data());
    CHECK(bitwise_equal(slab, want));
  }
}

TEST_CASE("checkpoint: a rectangle that was not fully saved is a data error", "[io][checkpoint]") {
  TempDir dir;
  const std::string root = dir.file("ckpt");
  std::vector<float> half(12, 1.0f);
  CheckpointSnapshot s;
  s.add_copy(rect("w", DType::f32, {4, 6}, {0, 0}, {2, 6}, half.data()));  // rows 2..3 never saved
  write_rank(root, 1, 0, std::move(s));
  commit_checkpoint(root, 1, 1, "{}", 0);
  CheckpointReader reader(root + "/step-00000001");
  std::vector<float> got(24);
  reader.read("w", {0, 0}, {2, 6}, DType::f32, got.data());
  CHECK(got[0] == 1.0f);
  CHECK_THAT(error_message([&] { reader.read_all("w", DType::f32, got.data()); }),
             Catch::Contains("only 12 of the 24 elements") && Catch::Contains("'w'"));
}

TEST_CASE("checkpoint: metadata and each rank's metadata round trip", "[io][checkpoint]") {
  TempDir dir;
  const std::string root = dir.file("ckpt");
  const std::string meta = R"({"step":20,"config":{"model":"tiny","lr":0.0003,"layout":{"tp":2,"dp":1}},)"
                           R"("loader":{"shard":1,"position":123456789012,"epoch":0},"note":"a \"quoted\" string"})";
  const std::string rank_meta[2] = {R"({"rng":[9223372036854775807,1,2],"sample":[0,17]})",
                                    R"({"rng":[-9223372036854775807,3,4],"sample":[1,34]})"};
  for (int r = 0; r < 2; ++r) {
    std::vector<float> v(3, float(r));
    CheckpointSnapshot s;
    s.add_copy(rect("v", DType::f32, {6}, {3 * r}, {3}, v.data()));
    write_rank(root, 20, r, std::move(s), rank_meta[r]);
  }
  commit_checkpoint(root, 20, 2, meta, 0);
  auto info = find_latest_valid_checkpoint(root);
  REQUIRE(info);
  CHECK(info->step == 20);
  CHECK(info->world_size == 2);
  CHECK(json::parse(info->metadata_json) == json::parse(meta));
  CheckpointReader reader(info->dir);
  CHECK(json::parse(reader.metadata_json()) == json::parse(meta));
  CHECK(json::parse(reader.rank_metadata_json(0)) == json::parse(rank_meta[0]));
  CHECK(json::parse(reader.rank_metadata_json(1)) == json::parse(rank_meta[1]));
  CHECK(json::parse(reader.rank_metadata_json(1)).at("rng")[0].as_int64() == -9223372036854775807LL);
  CHECK_THROWS_AS(reader.rank_metadata_json(2), Error);

  // Metadata that is not JSON is refused up front.
  AsyncCheckpointWriter w;
  CHECK_THAT(error_message([&] { w.start(root, 30, 0, CheckpointSnapshot(), "{not json"); }, ExitCode::bad_config),
             Catch::Contains("not JSON"));
  write_rank(root, 30, 0, CheckpointSnapshot());
  CHECK_THAT(error_message([&] { commit_checkpoint(root, 30, 1, "[1,", 0); }, ExitCode::bad_config),
             Catch::Contains("not JSON"));
}

TEST_CASE("checkpoint: latest moves only on commit and keep-K prunes the oldest", "[io][checkpoint]") {
  TempDir dir;
  const std::string root = dir.file("ckpt");
  CHECK_FALSE(find_latest_valid_checkpoint(root).has_value());  // no root yet
  save_simple(root, 10, 2);
  require_latest_valid(root, "step-00000010");
  save_simple(root, 20, 2);
  require_latest_valid(root, "step-00000020");

  // Step 30 written by both ranks but not committed: latest stays, the loader ignores it.
  std::vector<float> w(6, 3.0f);
  for (int r = 0; r < 2; ++r) {
    CheckpointSnapshot s;
    s.add_copy(rect("w", DType::f32, {4, 3}, {2 * r, 0}, {2, 3}, w.data()));
    AsyncCheckpointWriter writer;
    writer.start(root, 30, r, std::move(s));
    require_latest_valid(root, "step-00000020");  // while the write runs
    REQUIRE(writer.wait().ok);
    require_latest_valid(root, "step-00000020");  // after it finished
  }
  CHECK(fs::is_directory(root + "/.tmp-step-00000030"));
  CHECK(find_latest_valid_checkpoint(root)->step == 20);
  commit_checkpoint(root, 30, 2, "{}", 2);
  require_latest_valid(root, "step-00000030");
  CHECK_FALSE(fs::exists(root + "/.tmp-step-00000030"));

  save_simple(root, 40, 2);
  require_latest_valid(root, "step-00000040");
  std::vector<std::string> names;
  for (const auto& d : io::ckpt::list_committed(root)) names.push_back(d.name);
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"step-00000030", "step-00000040"});
  CHECK(find_latest_valid_checkpoint(root)->step == 40);

  // keep 0 keeps everything.
  save_simple(root, 50, 0);
  save_simple(root, 60, 0);
  CHECK(io::ckpt::list_committed(root).size() == 4);
  CHECK_THROWS_AS(commit_checkpoint(root, 70, 2, "{}", -1), Error);
}

TEST_CASE("checkpoint: a crash before or during commit leaves the previous checkpoint valid", "[io][checkpoint]") {
  TempDir dir;
  const std::string root = dir.file("ckpt");
  save_simple(root, 10, 3);

  SECTION("one rank died before writing: commit refuses, naming the rank; the next commit cleans up") {
    std::vector<float> w(6, 2.0f);
    CheckpointSnapshot s;
    s.add_copy(rect("w", DType::f32, {4, 3}, {0, 0}, {2, 3}, w.data()));
    write_rank(root, 20, 0, std::move(s));
    CHECK_THAT(error_message([&] { commit_checkpoint(root, 20, 2, "{}", 3); }),
               Catch::Contains("rank 1 has not finished"));
    require_latest_valid(root, "step-00000010");
    CHECK(find_latest_valid_checkpoint(root)->step == 10);
    CHECK(fs::is_directory(root + "/.tmp-step-00000020"));
    // A half-written data file from the crash (the writer's .tmp) is left too.
    test::write_bytes(root + "/.tmp-step-00000020/rank-00001.bin.tmp", "partial");
    save_simple(root, 30, 3);
    require_latest_valid(root, "step-00000030");
    CHECK_FALSE(fs::exists(root + "/.tmp-step-00000020"));
  }
  SECTION("crash after the directory was renamed into place but before latest moved") {
    std::vector<float> w(12, 5.0f);
    for (int r = 0; r < 2; ++r) {
      CheckpointSnapshot s;
      s.add_copy(rect("w", DType::f32, {4, 3}, {2 * r, 0}, {2, 3}, w.data()));
      write_rank(root, 20, r, std::move(s));
    }
    auto manifest = io::ckpt::collect_rank_files(root, 20, 2, "{}");
    require_latest_valid(root, "step-00000010");
    std::string name = io::ckpt::publish(root, manifest);
    CHECK(name == "step-00000020");
    require_latest_valid(root, "step-00000010");  // still the old one, and it is intact
    // The published directory is complete, so the loader takes it (commit order).
    auto info = find_latest_valid_checkpoint(root);
    REQUIRE(info);
    CHECK(info->step == 20);
    io::ckpt::point_latest(root, name);
    require_latest_valid(root, "step-00000020");
  }
  SECTION("crash while the writer's data file was half written") {
    fs::create_directories(root + "/.tmp-step-00000020");
    test::write_bytes(root + "/.tmp-step-00000020/rank-00000.bin.tmp", std::string(1000, 'x'));
    CHECK_THROWS_AS(commit_checkpoint(root, 20, 1, "{}", 3), Error);
    require_latest_valid(root, "step-00000010");
    // The same step written again after a restart replaces the debris.
    save_simple(root, 20, 3, 1);
    require_latest_valid(root, "step-00000020");
    CHECK_FALSE(fs::exists(root + "/.tmp-step-00000020"));
  }
}

TEST_CASE("checkpoint: a corrupt or truncated newest checkpoint falls back to the previous one", "[io][checkpoint]") {
  TempDir dir;
  const std::string root = dir.file("ckpt");
  save_simple(root, 10, 0);
  save_simple(root, 20, 0);
  const std::string newest = root + "/step-00000020";
  std::vector<CheckpointProblem> rejected;

  SECTION("a flipped byte") {
    corrupt_file(checkpoint_rank_file(newest, 1));
    auto info = find_latest_valid_checkpoint(root, &rejected);
    REQUIRE(info);
    CHECK(info->step == 10);
    REQUIRE(rejected.size() == 1);
    CHECK(rejected[0].file == "rank-00001.bin");
    CHECK(rejected[0].rank == 1);
    CHECK_THAT(rejected[0].message(), Catch::Contains("CRC32C") && Catch::Contains("rank 1") && Catch::Contains("step-00000020"));
    // Sizes alone do not see a flipped byte; the reader's check on first read does.
    CHECK(verify_checkpoint(newest, CheckpointVerify::sizes).empty());
    CheckpointReader reader(newest);
    std::vector<float> got(12);
    CHECK_THAT(error_message([&] { reader.read_all("w", DType::f32, got.data()); }), Catch::Contains("CRC32C"));
    CHECK_THAT(error_message([&] { open_checkpoint(newest); }), Catch::Contains("rank-00001.bin (rank 1)"));
  }
  SECTION("a truncated file") {
    truncate_file(checkpoint_rank_file(newest, 0));
    auto info = find_latest_valid_checkpoint(root, &rejected, CheckpointVerify::sizes);
    REQUIRE(info);
    CHECK(info->step == 10);
    REQUIRE(rejected.size() == 1);
    CHECK(rejected[0].rank == 0);
    CHECK_THAT(rejected[0].what, Catch::Contains("truncated"));
  }
  SECTION("a missing file") {
    fs::remove(checkpoint_rank_file(newest, 1));
    auto info = find_latest_valid_checkpoint(root, &rejected);
    REQUIRE(info);
    CHECK(info->step == 10);
    REQUIRE(rejected.size() == 1);
    CHECK(rejected[0].what == "missing");
  }
  SECTION("a damaged manifest") {
    test::write_bytes(newest + "/manifest.json", "{\"format\": \"tessera-checkpoint\", ");
    auto info = find_latest_valid_checkpoint(root, &rejected);
    REQUIRE(info);
    CHECK(info->step == 10);
    REQUIRE(rejected.size() == 1);
    CHECK(rejected[0].file == "manifest.json");
    CHECK(rejected[0].rank == -1);
  }
  SECTION("a manifest edited after its commit (a piece's file offset moved)") {
    std::string text = test::read_bytes(newest + "/manifest.json");
    const size_t at = text.find("\"file_offset\":0");
    REQUIRE(at != std::string::npos);
    text.replace(at, 15, "\"file_offset\":4");
    test::write_bytes(newest + "/manifest.json", text);
    auto info = find_latest_valid_checkpoint(root, &rejected);
    REQUIRE(info);
    CHECK(info->step == 10);
    REQUIRE(rejected.size() == 1);
    CHECK(rejected[0].file == "manifest.json");
    CHECK_THAT(rejected[0].what, Catch::Contains("does not match its commit record"));
    CHECK_THAT(error_message([&] { CheckpointReader reader(newest); }), Catch::Contains("commit record"));
  }
  SECTION("a missing or damaged commit record") {
    SECTION("missing") { fs::remove(newest + "/commit.json"); }
    SECTION("damaged") { test::write_bytes(newest + "/commit.json", "{\"bytes\": 12, \"crc32c\": \"zz\"}"); }
    auto info = find_latest_valid_checkpoint(root, &rejected);
    REQUIRE(info);
    CHECK(info->step == 10);
    REQUIRE(rejected.size() == 1);
    CHECK(rejected[0].file == "manifest.json");
    CHECK_THAT(rejected[0].message(), Catch::Contains("commit"));
  }
  SECTION("a checkpoint the caller cannot use") {
    std::vector<int64_t> asked;
    auto info = find_latest_valid_checkpoint(root, &rejected, CheckpointVerify::checksums, [&](const CheckpointInfo& c) {
      asked.push_back(c.step);
      return c.step == 20 ? std::string("the data position lies beyond the data") : std::string();
    });
    REQUIRE(info);
    CHECK(info->step == 10);
    CHECK(asked == std::vector<int64_t>{20, 10});
    REQUIRE(rejected.size() == 1);
    CHECK_THAT(rejected[0].message(), Catch::Contains("step-00000020") && Catch::Contains("beyond the data"));
  }
  SECTION("latest naming a directory that is gone") {
    fs::remove_all(newest);
    auto info = find_latest_valid_checkpoint(root, &rejected);
    REQUIRE(info);
    CHECK(info->step == 10);
    REQUIRE(rejected.size() == 1);
    CHECK(rejected[0].file == "latest");
  }
  SECTION("every checkpoint damaged") {
    corrupt_file(checkpoint_rank_file(newest, 0));
    corrupt_file(checkpoint_rank_file(root + "/step-00000010", 1));
    CHECK_FALSE(find_latest_valid_checkpoint(root, &rejected).has_value());
    CHECK(rejected.size() == 2);
  }
}

TEST_CASE("checkpoint: committing a step again after a fallback replaces the abandoned newer ones", "[io][checkpoint]") {
  TempDir dir;
  const std::string root = dir.file("ckpt");
  save_simple(root, 10, 3);
  save_simple(root, 20, 3);
  save_simple(root, 30, 3);
  corrupt_file(checkpoint_rank_file(root + "/step-00000030", 0));
  CHECK(find_latest_valid_checkpoint(root)->step == 20);
  // The run resumes from 20 and reaches 30 again: a fresh directory, the damaged one goes.
  save_simple(root, 30, 3);
  require_latest_valid(root, "step-00000030.1");
  CHECK_FALSE(fs::exists(root + "/step-00000030"));
  auto info = find_latest_valid_checkpoint(root);
  REQUIRE(info);
  CHECK(info->dir == root + "/step-00000030.1");
  CheckpointReader reader(info->dir);
  std::vector<float> got(12);
  reader.read_all("w", DType::f32, got.data());
  CHECK(got[0] == 3000.0f);
  // Resumed from 10 instead: 20 and 30.1 belong to the abandoned future once 15 is committed.
  save_simple(root, 15, 3);
  std::vector<std::string> names;
  for (const auto& d : io::ckpt::list_committed(root)) names.push_back(d.name);
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"step-00000010", "step-00000015"});
  require_latest_valid(root, "step-00000015");
}

TEST_CASE("checkpoint: the writer returns at once and writes on a background thread", "[io][checkpoint]") {
  TempDir dir;
  const std::string root = dir.file("ckpt");

  SECTION("held write: start returns, busy until released") {
    std::promise<void> release;
    std::shared_future<void> released = release.get_future().share();
    std::vector<float> v(1000, 1.5f);
    CheckpointSnapshot s;
    s.add_copy(rect("v", DType::f32, {1000}, {0}, {1000}, v.data()));
    AsyncCheckpointWriter writer;
    CheckpointWriteOptions options;
    options.before_write = [released] { released.wait(); };
    writer.start(root, 5, 0, std::move(s), "{}", options);
    CHECK(writer.busy());
    CHECK_FALSE(fs::exists(root + "/.tmp-step-00000005/rank-00000.json"));
    // A second write before wait() is a usage error.
    CHECK_THROWS_AS(writer.start(root, 6, 0, CheckpointSnapshot()), Error);
    release.set_value();
    auto r = writer.wait();
    CHECK(r.ok);
    CHECK_FALSE(writer.busy());
    CHECK(r.bytes == 4000);
    CHECK(fs::exists(root + "/.tmp-step-00000005/rank-00000.json"));
  }
  SECTION("a large piece: training is blocked far shorter than the write takes") {
    std::vector<float> big(size_t(8) << 20, 0.25f);  // 32 MB
    CheckpointSnapshot s;
    s.add_borrowed(CheckpointPiece::whole("big", DType::f32, {int64_t(big.size())}, big.data()));
    AsyncCheckpointWriter writer;
    auto t0 = std::chrono::steady_clock::now();
    writer.start(root, 7, 0, std::move(s));
    double blocked = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    bool busy_right_after = writer.busy();
    auto r = writer.wait();
    REQUIRE(r.ok);
    CHECK(r.bytes == big.size() * 4);
    CHECK(blocked < r.write_seconds);
    CHECK(busy_right_after);
    commit_checkpoint(root, 7, 1, "{}", 1);
    CHECK(verify_checkpoint(root + "/step-00000007").empty());
  }
  SECTION("a failed write is reported in the result") {
    test::write_bytes(dir.file("not-a-dir"), "x");
    AsyncCheckpointWriter writer;
    writer.start(dir.file("not-a-dir"), 1, 0, CheckpointSnapshot());
    auto r = writer.wait();
    CHECK_FALSE(r.ok);
    CHECK_THAT(r.error, Catch::Contains("not-a-dir"));
  }
}

TEST_CASE("checkpoint: pieces that do not fit or that partly overlap are refused", "[io][checkpoint]") {
  TempDir dir;
  const std::string root = dir.file("ckpt");
  std::vector<float> v(16, 1.0f);
  CheckpointSnapshot s;
  CHECK_THAT(error_message([&] { s.add_copy(rect("w", DType::f32, {4, 4}, {2, 0}, {3, 4}, v.data())); }, ExitCode::bad_config),
             Catch::Contains("does not fit"));
  CHECK_THAT(error_message([&] { s.add_copy(rect("w", DType::f32, {4, 4}, {0}, {4, 4}, v.data())); }, ExitCode::bad_config),
             Catch::Contains("number of dimensions"));
  // Within one rank.
  s.add_copy(rect("w", DType::f32, {4, 4}, {0, 0}, {2, 4}, v.data()));
  s.add_copy(rect("w", DType::f32, {4, 4}, {1, 0}, {2, 4}, v.data()));
  AsyncCheckpointWriter writer;
  CHECK_THAT(error_message([&] { writer.start(root, 1, 0, std::move(s)); }, ExitCode::bad_config),
             Catch::Contains("partly overlap"));
  // Across ranks: found at commit.
  for (int r = 0; r < 2; ++r) {
    CheckpointSnapshot t;
    t.add_copy(rect("w", DType::f32, {4, 4}, {r, 0}, {2, 4}, v.data()));
    write_rank(root, 2, r, std::move(t));
  }
  CHECK_THAT(error_message([&] { commit_checkpoint(root, 2, 2, "{}", 0); }), Catch::Contains("partly overlap"));
  CHECK(latest_of(root).empty());
  // Disagreeing global shapes.
  for (int r = 0; r < 2; ++r) {
    CheckpointSnapshot t;
    t.add_copy(rect("w", DType::f32, {4, 4 + r}, {2 * r, 0}, {2, 4}, v.data()));
    write_rank(root, 3, r, std::move(t));
  }
  CHECK_THAT(error_message([&] { commit_checkpoint(root, 3, 2, "{}", 0); }), Catch::Contains("global shape"));
}

TEST_CASE("checkpoint: the commit record holds the manifest's checksum", "[io][checkpoint]") {
  TempDir dir;
  const std::string root = dir.file("ckpt");
  save_simple(root, 10, 0);
  const std::string text = test::read_bytes(root + "/step-00000010/manifest.json");
  CHECK(test::read_bytes(root + "/step-00000010/commit.json") == io::ckpt::commit_record(text));
  CHECK_THAT(io::ckpt::commit_record(text), Catch::Contains("\"bytes\":" + std::to_string(text.size())));
}

TEST_CASE("checkpoint: one writer per directory: a second lock is refused, naming the first", "[io][checkpoint]") {
  TempDir dir;
  const std::string root = dir.file("ckpt");
  CheckpointDirLock first = CheckpointDirLock::acquire(root, "SLURM_JOB_ID=4242");
  REQUIRE(first.held());
  CHECK_THAT(test::read_bytes(root + "/lock"),
             Catch::Contains("pid " + std::to_string(::getpid())) && Catch::Contains("job SLURM_JOB_ID=4242"));
  // flock locks belong to the open file: a second open in the same process conflicts like another process would.
  const std::string message = error_message([&] { CheckpointDirLock::acquire(root, "other"); }, ExitCode::bad_config);
  CHECK_THAT(message, Catch::Contains("another run") && Catch::Contains("job SLURM_JOB_ID=4242") &&
                          Catch::Contains("pid " + std::to_string(::getpid())));
  first = CheckpointDirLock();  // released
  CheckpointDirLock second = CheckpointDirLock::acquire(root, "other");
  CHECK(second.held());
  CHECK_THAT(test::read_bytes(root + "/lock"), Catch::Contains("job other"));
  // The lock file is no checkpoint: finding checkpoints ignores it.
  save_simple(root, 10, 0);
  CHECK(find_latest_valid_checkpoint(root)->step == 10);
}
