#include <catch2/catch.hpp>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "io/io_test_util.h"
#include "tessera/data.h"

using namespace tessera;
using tessera::test::error_message;
using tessera::test::TempDir;

namespace {

// A shard whose token at offset i is first + i, so every window shows where it came from.
std::string make_shard(const TempDir& dir, const std::string& name, int64_t count, uint16_t first) {
  std::vector<uint16_t> tokens(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) tokens[size_t(i)] = uint16_t(first + i);
  std::string path = dir.file(name);
  write_token_shard(path, tokens.data(), count);
  return path;
}

struct Batch {
  std::vector<int32_t> inputs, targets;
  std::vector<SampleId> ids;
  bool operator==(const Batch& o) const { return inputs == o.inputs && targets == o.targets && ids == o.ids; }
};

Batch next(DataLoader& loader) {
  const int B = loader.batch_size(), T = loader.seq_len();
  Batch b{std::vector<int32_t>(size_t(B * T)), std::vector<int32_t>(size_t(B * T)), {}};
  loader.next_batch(b.inputs.data(), b.targets.data());
  for (int i = 0; i < B; ++i) b.ids.push_back(loader.sample_id(i));
  return b;
}

}  // namespace

TEST_CASE("data loader: windows, targets and sample ids on a synthetic shard", "[io]") {
  TempDir dir;
  const std::string path = make_shard(dir, "train.bin", 1000, 0);
  const int B = 2, T = 8;
  DataLoader loader(path, B, T, 1000);
  CHECK(loader.shard_paths() == std::vector<std::string>{path});
  CHECK(loader.total_tokens() == 1000);
  CHECK(loader.batches_per_epoch() == 999 / 16);
  CHECK(loader.state() == LoaderState{0, 0, 0});

  for (int k = 0; k < 3; ++k) {
    Batch batch = next(loader);
    for (int b = 0; b < B; ++b) {
      CHECK(batch.ids[size_t(b)] == SampleId{0, int64_t(k * B * T + b * T)});
      for (int t = 0; t < T; ++t) {
        const int32_t expected = k * B * T + b * T + t;  // token value == offset
        CHECK(batch.inputs[size_t(b * T + t)] == expected);
        CHECK(batch.targets[size_t(b * T + t)] == expected + 1);
      }
    }
    CHECK(loader.state() == LoaderState{0, int64_t((k + 1) * B * T), 0});
  }
  error_message([&] { loader.sample_id(B); }, ExitCode::bad_config);
  loader.reset();
  CHECK(loader.state() == LoaderState{0, 0, 0});
  CHECK(next(loader).inputs[0] == 0);
}

TEST_CASE("data loader: ranks take disjoint sequences whose union is the single-process batch", "[io]") {
  TempDir dir;
  const std::string a = make_shard(dir, "a.bin", 200, 0);
  const std::string b = make_shard(dir, "b.bin", 150, 1000);
  const std::string pattern = a + "," + b;
  const int B = 2, T = 5, world = 3;
  DataLoader single(pattern, world * B, T, 2000);
  std::vector<DataLoader> ranks;
  for (int r = 0; r < world; ++r) ranks.emplace_back(pattern, B, T, 2000, r, world);
  REQUIRE(single.batches_per_epoch() == ranks[0].batches_per_epoch());

  // Two passes over both shards: covers the shard switch and the wrap.
  const int64_t steps = 2 * single.batches_per_epoch() + 1;
  for (int64_t step = 0; step < steps; ++step) {
    Batch whole = next(single);
    std::set<SampleId> seen;
    for (int r = 0; r < world; ++r) {
      Batch part = next(ranks[size_t(r)]);
      CHECK(ranks[size_t(r)].state() == single.state());
      for (int i = 0; i < B; ++i) {
        CHECK(seen.insert(part.ids[size_t(i)]).second);  // disjoint across ranks
        CHECK(part.ids[size_t(i)] == whole.ids[size_t(r * B + i)]);
      }
      CHECK(std::equal(part.inputs.begin(), part.inputs.end(), whole.inputs.begin() + r * B * T));
      CHECK(std::equal(part.targets.begin(), part.targets.end(), whole.targets.begin() + r * B * T));
    }
    CHECK(seen.size() == size_t(world * B));
  }
}

TEST_CASE("data loader: moves to the next shard and wraps to the next epoch", "[io]") {
  TempDir dir;
  make_shard(dir, "shard_001.bin", 40, 1000);  // glob order is by name, not creation order
  make_shard(dir, "shard_000.bin", 50, 0);
  const int B = 2, T = 4;  // global batch of 8 tokens (+1 target)
  DataLoader loader(dir.file("shard_*.bin"), B, T, 2000);
  REQUIRE(loader.shard_paths() == std::vector<std::string>{dir.file("shard_000.bin"), dir.file("shard_001.bin")});
  CHECK(loader.total_tokens() == 90);
  // shard 0: batches at 0..40 (40 + 9 <= 50); shard 1: batches at 0..24 (24 + 9 <= 40).
  REQUIRE(loader.batches_per_epoch() == 6 + 4);

  std::vector<SampleId> expected;
  for (int64_t p = 0; p <= 40; p += 8) expected.push_back({0, p});
  for (int64_t p = 0; p <= 24; p += 8) expected.push_back({1, p});
  for (int epoch = 0; epoch < 2; ++epoch) {
    for (const SampleId& id : expected) {
      CHECK(loader.state().epoch == epoch);
      Batch batch = next(loader);
      CHECK(batch.ids[0] == id);
      CHECK(batch.ids[1] == SampleId{id.shard, id.offset + T});
      CHECK(batch.inputs[0] == (id.shard == 0 ? 0 : 1000) + id.offset);
      CHECK(batch.targets[size_t(B * T - 1)] == (id.shard == 0 ? 0 : 1000) + id.offset + B * T);
    }
  }
  CHECK(loader.state() == LoaderState{0, 0, 2});

  // A comma-separated list keeps the order given.
  DataLoader listed(dir.file("shard_001.bin") + ", " + dir.file("shard_000.bin"), B, T, 2000);
  CHECK(listed.shard_paths().front() == dir.file("shard_001.bin"));
  CHECK(next(listed).inputs[0] == 1000);
}

TEST_CASE("data loader: restore resumes exactly where an uninterrupted loader is", "[io]") {
  TempDir dir;
  make_shard(dir, "s0.bin", 61, 0);
  make_shard(dir, "s1.bin", 45, 100);
  make_shard(dir, "s2.bin", 33, 200);
  const std::string pattern = dir.file("s*.bin");
  const int B = 2, T = 3;
  for (int rank = 0; rank < 2; ++rank) {
    DataLoader uninterrupted(pattern, B, T, 300, rank, 2);
    const int64_t per_epoch = uninterrupted.batches_per_epoch();
    for (int64_t stop : {int64_t(0), int64_t(3), per_epoch - 1, per_epoch + 2}) {
      uninterrupted.reset();
      for (int64_t i = 0; i < stop; ++i) next(uninterrupted);
      const LoaderState saved = uninterrupted.state();
      std::vector<Batch> expected;
      for (int i = 0; i < 12; ++i) expected.push_back(next(uninterrupted));

      DataLoader resumed(pattern, B, T, 300, rank, 2);
      next(resumed);  // a loader that has already read something is fully repositioned
      resumed.restore(saved);
      CHECK(resumed.state() == saved);
      for (int i = 0; i < 12; ++i) {
        INFO("rank " << rank << ", stopped after " << stop << ", batch " << i);
        CHECK(next(resumed) == expected[size_t(i)]);
      }
    }
  }
}

TEST_CASE("data loader: restore rejects states that do not fit the data", "[io]") {
  TempDir dir;
  const std::string path = make_shard(dir, "s.bin", 40, 0);
  DataLoader loader(path, 2, 4, 100);
  CHECK(error_message([&] { loader.restore({1, 0, 0}); }).find("shard that does not exist") != std::string::npos);
  CHECK(error_message([&] { loader.restore({0, -8, 0}); }).find("does not fit") != std::string::npos);
  CHECK(error_message([&] { loader.restore({0, 32, 0}); }).find("does not fit") != std::string::npos);
  CHECK(error_message([&] { loader.restore({0, 0, -1}); }).find("negative epoch") != std::string::npos);
  loader.restore({0, 31, 4});  // 31 + 9 == 40: the last position that fits
  CHECK(loader.state() == LoaderState{0, 31, 4});
}

TEST_CASE("data loader: a token outside the vocabulary names shard, offset, id and vocabulary", "[io]") {
  TempDir dir;
  std::vector<uint16_t> tokens(100, 65);
  tokens[37] = 300;
  const std::string path = dir.file("bad.bin");
  write_token_shard(path, tokens.data(), int64_t(tokens.size()));
  DataLoader loader(path, 2, 8, 257);
  std::vector<int32_t> x(16), y(16);
  loader.next_batch(x.data(), y.data());  // offsets 0..16
  loader.next_batch(x.data(), y.data());  // offsets 16..32
  std::string msg = error_message([&] { loader.next_batch(x.data(), y.data()); });
  CHECK(msg.find(path) != std::string::npos);
  CHECK(msg.find("offset 37") != std::string::npos);
  CHECK(msg.find("token id 300") != std::string::npos);
  CHECK(msg.find("size 257") != std::string::npos);

  // Position 32's window ends at 48: the id at 48 is a target too and is checked as well.
  tokens[37] = 65;
  tokens[48] = 999;
  write_token_shard(path, tokens.data(), int64_t(tokens.size()));
  DataLoader again(path, 2, 8, 257);
  again.restore({0, 32, 0});
  CHECK(error_message([&] { again.next_batch(x.data(), y.data()); }).find("offset 48") != std::string::npos);
}

TEST_CASE("data loader: shards too small for one global batch, and missing files", "[io]") {
  TempDir dir;
  const std::string path = make_shard(dir, "small.bin", 33, 0);
  DataLoader fits(path, 2, 16, 100);  // needs 33
  std::string msg = error_message([&] { DataLoader loader(path, 2, 8, 100, 0, 3); });  // needs 49
  CHECK(msg.find("holds 33 tokens, fewer than the 49") != std::string::npos);
  CHECK(msg.find("smaller batch size or sequence length") != std::string::npos);
  CHECK(msg.find(path) != std::string::npos);

  msg = error_message([&] { DataLoader loader(dir.file("nothing_*.bin"), 1, 4, 100); });
  CHECK(msg.find("no file matches") != std::string::npos);
  msg = error_message([&] { DataLoader loader(dir.file("absent.bin"), 1, 4, 100); });
  CHECK(msg.find("does not exist") != std::string::npos);
  error_message([&] { DataLoader loader(path, 1, 4, 100, 2, 2); }, ExitCode::bad_config);
  error_message([&] { DataLoader loader(path, 0, 4, 100); }, ExitCode::bad_config);
}
