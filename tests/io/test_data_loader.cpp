#include <catch2/catch.hpp>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "io/io_test_util.h"
#include "io/loader_state_json.h"
#include "io/sample_order.h"
#include "io/token_files.h"
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

LoaderOptions ordered(bool shuffle, int64_t seed = 0) {
  LoaderOptions o;
  o.shuffle = shuffle;
  o.seed = seed;
  return o;
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

// The order of an epoch, slot by slot: a loader with a global batch of one sequence reads every
// slot of every epoch in turn (the order depends on the data, the seed and the epoch only).
std::vector<std::vector<SampleId>> orders(const std::string& pattern, int T, const LoaderOptions& options, int epochs) {
  DataLoader one(pattern, 1, T, 65536, 0, 1, options);
  std::vector<std::vector<SampleId>> out(static_cast<size_t>(epochs));
  for (int e = 0; e < epochs; ++e)
    for (int64_t i = 0; i < one.windows_per_epoch(); ++i) {
      REQUIRE(one.state().epoch == e);
      out[size_t(e)].push_back(next(one).ids[0]);
    }
  return out;
}

// The state a loader over `loader`'s data is in at (epoch, position).
LoaderState at(const DataLoader& loader, int64_t epoch, int64_t position) {
  LoaderState s = loader.state();
  s.epoch = epoch;
  s.position = position;
  return s;
}

}  // namespace

TEST_CASE("data loader: file order gives consecutive windows, targets and sample ids", "[io]") {
  TempDir dir;
  const std::string path = make_shard(dir, "train.bin", 1000, 0);
  const int B = 2, T = 8;
  DataLoader loader(path, B, T, 1000, 0, 1, ordered(false));
  CHECK(loader.dataset().shards().size() == 1);
  CHECK(loader.dataset().shards()[0].path() == path);
  CHECK(loader.total_tokens() == 1000);
  CHECK(loader.windows_per_epoch() == 999 / 8);
  CHECK(loader.batches_per_epoch() == 999 / 8 / 2);
  CHECK_FALSE(loader.shuffled());
  const LoaderState start = loader.state();
  CHECK(start.epoch == 0);
  CHECK(start.position == 0);
  CHECK_FALSE(start.shuffle);
  CHECK(start.windows == 124);
  CHECK(start.seq_len == 8);

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
    CHECK(loader.state() == at(loader, 0, 2 * (k + 1)));
  }
  error_message([&] { loader.sample_id(B); }, ExitCode::bad_config);
  loader.reset();
  CHECK(loader.state() == start);
  CHECK(next(loader).inputs[0] == 0);
}

TEST_CASE("data loader: file order moves to the next file and keeps the order every epoch (--no-shuffle)", "[io]") {
  TempDir dir;
  make_shard(dir, "shard_001.bin", 40, 1000);  // glob order is by name, not creation order
  make_shard(dir, "shard_000.bin", 50, 0);
  const int B = 2, T = 4;
  DataLoader loader(dir.file("shard_*.bin"), B, T, 2000, 0, 1, ordered(false));
  REQUIRE(loader.dataset().shards().size() == 2);
  CHECK(loader.dataset().shards()[0].path() == dir.file("shard_000.bin"));
  CHECK(loader.total_tokens() == 90);
  // 12 windows in shard 0 ((50-1)/4), 9 in shard 1 ((40-1)/4); 10 batches of 2, window 20 left out.
  REQUIRE(loader.windows_per_epoch() == 21);
  REQUIRE(loader.batches_per_epoch() == 10);

  for (int epoch = 0; epoch < 2; ++epoch) {
    for (int64_t w = 0; w < 20; w += 2) {
      CHECK(loader.state().epoch == epoch);
      Batch batch = next(loader);
      for (int b = 0; b < B; ++b) {
        const int64_t window = w + b;
        const SampleId id = window < 12 ? SampleId{0, 4 * window} : SampleId{1, 4 * (window - 12)};
        CHECK(batch.ids[size_t(b)] == id);
        const int32_t base = id.shard == 0 ? 0 : 1000;
        CHECK(batch.inputs[size_t(b * T)] == base + id.offset);
        CHECK(batch.targets[size_t(b * T + T - 1)] == base + id.offset + T);
      }
    }
  }
  CHECK(loader.state() == at(loader, 2, 0));

  // A comma-separated list keeps the order given.
  DataLoader listed(dir.file("shard_001.bin") + ", " + dir.file("shard_000.bin"), B, T, 2000, 0, 1, ordered(false));
  CHECK(listed.dataset().shards().front().path() == dir.file("shard_001.bin"));
  CHECK(next(listed).inputs[0] == 1000);
}

TEST_CASE("data loader: ranks read disjoint slots of the order whose union is the single-process batch", "[io]") {
  TempDir dir;
  const std::string a = make_shard(dir, "a.bin", 200, 0);
  const std::string b = make_shard(dir, "b.bin", 150, 1000);
  const std::string pattern = a + "," + b;
  const int B = 2, T = 5, world = 3;
  for (bool shuffle : {true, false}) {
    INFO("shuffle " << shuffle);
    const LoaderOptions options = ordered(shuffle, 99);
    const std::vector<std::vector<SampleId>> order = orders(pattern, T, options, 3);
    DataLoader single(pattern, world * B, T, 2000, 0, 1, options);
    std::vector<DataLoader> ranks;
    for (int r = 0; r < world; ++r) ranks.emplace_back(pattern, B, T, 2000, r, world, options);
    REQUIRE(single.batches_per_epoch() == ranks[0].batches_per_epoch());
    const int64_t G = world * B;

    // Over two epochs and into a third.
    for (int64_t step = 0; step < 2 * single.batches_per_epoch() + 1; ++step) {
      const LoaderState before = single.state();
      Batch whole = next(single);
      std::set<SampleId> seen;
      for (int r = 0; r < world; ++r) {
        CHECK(ranks[size_t(r)].state() == before);
        Batch part = next(ranks[size_t(r)]);
        CHECK(ranks[size_t(r)].state() == single.state());
        for (int i = 0; i < B; ++i) {
          CHECK(seen.insert(part.ids[size_t(i)]).second);  // disjoint across ranks
          CHECK(part.ids[size_t(i)] == whole.ids[size_t(r * B + i)]);
          CHECK(part.ids[size_t(i)] == order[size_t(before.epoch)][size_t(before.position + r * B + i)]);
        }
        CHECK(std::equal(part.inputs.begin(), part.inputs.end(), whole.inputs.begin() + r * B * T));
        CHECK(std::equal(part.targets.begin(), part.targets.end(), whole.targets.begin() + r * B * T));
      }
      CHECK(seen.size() == size_t(G));
    }
  }
}

TEST_CASE("data loader: a shuffled epoch reads every window exactly once, in a new order each epoch", "[io]") {
  TempDir dir;
  make_shard(dir, "s0.bin", 61, 0);     // 12 windows of 5+1 tokens
  make_shard(dir, "s1.bin", 41, 100);   // 8
  make_shard(dir, "s2.bin", 46, 200);   // 9 (the s0, s1 pair alone: 20 windows)
  const int T = 5;
  for (const char* pattern : {"s[01].bin", "s*.bin"}) {
    INFO("data " << pattern);
    const int B = 2, world = 2;
    std::vector<DataLoader> ranks;
    for (int r = 0; r < world; ++r) ranks.emplace_back(dir.file(pattern), B, T, 300, r, world, ordered(true, 5));
    const int64_t n = ranks[0].windows_per_epoch(), kept = n - n % (B * world);
    std::set<SampleId> all;
    for (int64_t w = 0; w < 12; ++w) all.insert({0, w * T});
    for (int64_t w = 0; w < 8; ++w) all.insert({1, w * T});
    for (int64_t w = 0; w < 9 && n == 29; ++w) all.insert({2, w * T});
    REQUIRE(int64_t(all.size()) == n);

    std::vector<std::vector<SampleId>> epochs;
    for (int e = 0; e < 3; ++e) {
      std::vector<SampleId> read;
      for (int64_t i = 0; i < ranks[0].batches_per_epoch(); ++i)
        for (DataLoader& rank : ranks) {
          CHECK(rank.state().epoch == e);
          Batch batch = next(rank);
          read.insert(read.end(), batch.ids.begin(), batch.ids.end());
          for (int b = 0; b < B; ++b) {  // the tokens are the window the id names
            const SampleId id = batch.ids[size_t(b)];
            CHECK(batch.inputs[size_t(b * T)] == 100 * id.shard + id.offset);
            CHECK(batch.targets[size_t(b * T + T - 1)] == 100 * id.shard + id.offset + T);
          }
        }
      const std::set<SampleId> distinct(read.begin(), read.end());
      CHECK(int64_t(read.size()) == kept);
      CHECK(distinct.size() == read.size());  // no window twice
      CHECK(std::includes(all.begin(), all.end(), distinct.begin(), distinct.end()));
      if (kept == n) CHECK(distinct == all);  // every window once
      epochs.push_back(read);
    }
    CHECK(epochs[0] != epochs[1]);
    CHECK(epochs[1] != epochs[2]);
  }
}

TEST_CASE("data loader: the shuffled order is drawn from the seed and far from file order", "[io]") {
  TempDir dir;
  const std::string path = make_shard(dir, "long.bin", 10001, 0);  // 5000 windows of 2+1 tokens
  const std::vector<std::vector<SampleId>> a = orders(path, 2, ordered(true, 1), 2);
  CHECK(orders(path, 2, ordered(true, 1), 1)[0] == a[0]);  // the same seed: the same order, in any loader
  const std::vector<SampleId> other_seed = orders(path, 2, ordered(true, 2), 1)[0];
  const std::vector<SampleId> file_order = orders(path, 2, ordered(false), 1)[0];
  for (int64_t w = 0; w < 5000; ++w) REQUIRE(file_order[size_t(w)] == SampleId{0, 2 * w});

  auto same_places = [](const std::vector<SampleId>& x, const std::vector<SampleId>& y) {
    int64_t same = 0;
    for (size_t i = 0; i < x.size(); ++i) same += x[i] == y[i];
    return same;
  };
  // A random permutation of 5000 agrees with another in about one place and keeps about one pair of
  // neighbours together: allow a wide margin, far below what a near-identity order would show.
  CHECK(same_places(a[0], a[1]) < 20);
  CHECK(same_places(a[0], other_seed) < 20);
  CHECK(same_places(a[0], file_order) < 20);
  int64_t neighbours = 0;
  for (size_t i = 0; i + 1 < a[0].size(); ++i) neighbours += a[0][i + 1].offset == a[0][i].offset + 2;
  CHECK(neighbours < 20);
  // A permutation: every window once.
  std::vector<SampleId> sorted = a[1];
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == file_order);
}

TEST_CASE("sample order: a bijection of 0..n-1 for any n", "[io]") {
  for (int64_t n : {int64_t(1), int64_t(2), int64_t(3), int64_t(5), int64_t(17), int64_t(1024), int64_t(1025),
                    int64_t(1000003)}) {
    INFO("n " << n);
    io::SampleOrder order(n, 1234, 7);
    std::vector<bool> hit(size_t(n), false);
    bool ok = true;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t w = order(i);
      ok = ok && w >= 0 && w < n && !hit[size_t(w)];
      if (w >= 0 && w < n) hit[size_t(w)] = true;
    }
    CHECK(ok);
  }
}

TEST_CASE("data loader: restore resumes exactly where an uninterrupted loader is", "[io]") {
  TempDir dir;
  make_shard(dir, "s0.bin", 61, 0);
  make_shard(dir, "s1.bin", 45, 100);
  make_shard(dir, "s2.bin", 33, 200);
  const std::string pattern = dir.file("s*.bin");
  const int B = 2, T = 3;
  for (bool shuffle : {true, false}) {
    for (int rank = 0; rank < 2; ++rank) {
      DataLoader uninterrupted(pattern, B, T, 300, rank, 2, ordered(shuffle, 42));
      const int64_t per_epoch = uninterrupted.batches_per_epoch();
      for (int64_t stop : {int64_t(0), int64_t(3), per_epoch - 1, per_epoch + 2}) {
        uninterrupted.reset();
        for (int64_t i = 0; i < stop; ++i) next(uninterrupted);
        const LoaderState saved = uninterrupted.state();
        std::vector<Batch> expected;
        for (int i = 0; i < 12; ++i) expected.push_back(next(uninterrupted));

        // Another seed given to the new loader: the checkpoint's permutation seed goes on, and says so.
        DataLoader resumed(pattern, B, T, 300, rank, 2, ordered(shuffle, 7));
        next(resumed);  // a loader that has already read something is fully repositioned
        const std::vector<std::string> notes = resumed.restore(saved);
        REQUIRE(notes.size() == (shuffle ? 1 : 0));  // file order has no seed to speak of
        if (shuffle) CHECK(notes[0].find("the checkpoint's permutation seed 42 (not 7)") != std::string::npos);
        CHECK(resumed.state() == saved);
        for (int i = 0; i < 12; ++i) {
          INFO("shuffle " << shuffle << ", rank " << rank << ", stopped after " << stop << ", batch " << i);
          CHECK(next(resumed) == expected[size_t(i)]);
        }
        DataLoader same_seed(pattern, B, T, 300, rank, 2, ordered(shuffle, 42));
        CHECK(same_seed.restore(saved).empty());  // exact: nothing to say
      }
    }
  }
}

TEST_CASE("data loader: a state saved under one layout continues under another (resharding)", "[io]") {
  TempDir dir;
  make_shard(dir, "s0.bin", 301, 0);
  make_shard(dir, "s1.bin", 211, 1000);
  const std::string pattern = dir.file("s*.bin");
  const int T = 10;
  const std::vector<std::vector<SampleId>> order = orders(pattern, T, ordered(true, 3), 2);
  // dp 1 x B 6 for 4 batches, then dp 2 x B 3 and dp 3 x B 2 (the same global batch), then dp 2 x B 2.
  DataLoader first(pattern, 6, T, 2000, 0, 1, ordered(true, 3));
  for (int i = 0; i < 4; ++i) next(first);
  const LoaderState saved = first.state();
  CHECK(saved.position == 24);
  for (int world : {2, 3}) {
    std::vector<DataLoader> ranks;
    for (int r = 0; r < world; ++r) {
      ranks.emplace_back(pattern, 6 / world, T, 2000, r, world, ordered(true, 3));
      CHECK(ranks.back().restore(saved).empty());
    }
    for (int i = 0; i < 2; ++i)
      for (int r = 0; r < world; ++r) {
        Batch part = next(ranks[size_t(r)]);
        for (int b = 0; b < 6 / world; ++b) CHECK(part.ids[size_t(b)] == order[0][size_t(24 + 6 * i + r * (6 / world) + b)]);
      }
  }
  // A smaller global batch goes on from the same slot; a larger one that no longer fits starts the next epoch.
  DataLoader smaller(pattern, 2, T, 2000, 1, 2, ordered(true, 3));
  CHECK(smaller.restore(saved).empty());
  CHECK(next(smaller).ids == std::vector<SampleId>{order[0][26], order[0][27]});
  LoaderState late = saved;
  late.position = 48;  // 51 windows: 3 left, fewer than 8
  DataLoader larger(pattern, 4, T, 2000, 0, 2, ordered(true, 3));
  const std::vector<std::string> notes = larger.restore(late);
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].find("the 3 sequences left in epoch 0 are fewer than one global batch of 8: epoch 1 begins") !=
        std::string::npos);
  CHECK(larger.state() == at(larger, 1, 0));
  CHECK(next(larger).ids[0] == order[1][0]);
}

TEST_CASE("data loader: restore says what changed, and refuses states no loader writes", "[io]") {
  TempDir dir;
  make_shard(dir, "a.bin", 401, 0);
  make_shard(dir, "b.bin", 201, 500);
  DataLoader loader(dir.file("a.bin"), 2, 4, 1000, 0, 1, ordered(true, 1));  // 100 windows
  LoaderState s = at(loader, 3, 50);

  LoaderState other_order = s;
  other_order.shuffle = false;
  std::vector<std::string> notes = loader.restore(other_order);
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].find("read the data in file order, this run reads it shuffled") != std::string::npos);
  CHECK(loader.state() == s);

  DataLoader more(dir.file("a.bin") + "," + dir.file("b.bin"), 2, 4, 1000, 0, 1, ordered(true, 1));  // 150 windows
  notes = more.restore(s);
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].find("held 100 sequences of 4+1 tokens, this run's holds 150 of 4+1: epoch 3 goes on at the same "
                      "fraction (sequence 75 of 150)") != std::string::npos);
  CHECK(more.state() == at(more, 3, 75));

  DataLoader longer(dir.file("a.bin"), 2, 8, 1000, 0, 1, ordered(true, 1));  // 50 windows of 8+1
  notes = longer.restore(s);
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].find("of 8+1") != std::string::npos);
  CHECK(longer.state().position == 25);

  for (auto damage : {+[](LoaderState& x) { x.epoch = -1; }, +[](LoaderState& x) { x.position = -64; },
                      +[](LoaderState& x) { x.position = 101; }, +[](LoaderState& x) { x.windows = 0; },
                      +[](LoaderState& x) { x.seq_len = 0; }}) {
    LoaderState bad = s;
    damage(bad);
    CHECK(error_message([&] { loader.restore(bad); }).find("is impossible") != std::string::npos);
  }
}

TEST_CASE("data loader: its state as checkpoint JSON, exactly, and older states refused", "[io]") {
  LoaderState s;
  s.epoch = 4;
  s.position = 123456789012;
  s.seed = -8446744073709551617;  // a uint64 seed above 2^63, as the int64 it is stored as
  s.shuffle = false;
  s.windows = 987654321098;
  s.seq_len = 8192;
  const json::Value v = io::loader_state_to_json(s);
  CHECK(io::loader_state_from_json(json::parse(v.dump())) == s);
  const std::string legacy = R"({"shard":1,"position":4096,"epoch":0})";
  const std::string msg = error_message([&] { io::loader_state_from_json(json::parse(legacy)); });
  CHECK(msg.find("file order only") != std::string::npos);
}

TEST_CASE("data loader: every token is checked at construction, a bad one deep inside named by file and offset", "[io]") {
  TempDir dir;
  std::vector<uint16_t> tokens(20000, 65);
  write_token_shard(dir.file("s0.bin"), tokens.data(), 5000);
  write_token_shard(dir.file("s1.bin"), tokens.data(), 3000);
  tokens[17777] = 300;
  const std::string bad = dir.file("s2.bin");
  write_token_shard(bad, tokens.data(), int64_t(tokens.size()));
  const std::string pattern = dir.file("s*.bin");

  LoaderOptions unchecked = ordered(false);
  unchecked.check_tokens = false;
  DataLoader late(pattern, 2, 8, 257, 0, 1, unchecked);  // without the check, reading starts
  std::vector<int32_t> x(16), y(16);
  late.next_batch(x.data(), y.data());

  for (bool shuffle : {true, false}) {
    const std::string msg = error_message([&] { DataLoader loader(pattern, 2, 8, 257, 0, 1, ordered(shuffle)); });
    CHECK(msg.find(bad) != std::string::npos);
    CHECK(msg.find("token id 300 at token offset 17777 (byte 36578)") != std::string::npos);
    CHECK(msg.find("size 257") != std::string::npos);
  }
}

TEST_CASE("token check: parts cover every token once and find the first bad id whatever the threads", "[io]") {
  TempDir dir;
  std::vector<uint16_t> tokens(9'000'000, 7);  // over two chunks of 2^22 tokens
  tokens[4'500'001] = 400;
  tokens[8'999'999] = 500;
  write_token_shard(dir.file("a.bin"), tokens.data(), int64_t(tokens.size()));
  const std::vector<uint16_t> small(1000, 3);
  write_token_shard(dir.file("b.bin"), small.data(), int64_t(small.size()));
  TokenDataset data(dir.file("b.bin") + "," + dir.file("a.bin"));  // a.bin starts at position 1000
  const int64_t first = 1000 + 4'500'001;
  for (int threads : {1, 3}) {
    const TokenCheck whole = data.check_tokens(300, 0, 1, threads);
    CHECK(whole.tokens == 9'001'000);
    CHECK(whole.bytes == 2 * 9'001'000);
    CHECK(whole.first_bad == first);
    CHECK(data.check_tokens(450, 0, 1, threads).first_bad == 1000 + 8'999'999);
    CHECK(data.check_tokens(501, 0, 1, threads).first_bad == -1);
    for (int parts : {2, 3, 7}) {
      int64_t tokens_checked = 0, found = -1, parts_finding = 0;
      for (int part = 0; part < parts; ++part) {
        const TokenCheck c = data.check_tokens(300, part, parts, threads);
        tokens_checked += c.tokens;
        if (c.first_bad >= 0 && (found < 0 || c.first_bad < found)) found = c.first_bad;
        parts_finding += c.first_bad >= 0;
      }
      CHECK(tokens_checked == data.total_tokens());
      CHECK(found == first);
      CHECK(parts_finding <= 2);
    }
  }
  const std::string msg = error_message([&] { data.throw_bad_token(first, 300); });
  CHECK(msg.find(dir.file("a.bin")) != std::string::npos);
  CHECK(msg.find("token id 400 at token offset 4500001") != std::string::npos);
  error_message([&] { data.check_tokens(300, 2, 2); }, ExitCode::bad_config);
}

TEST_CASE("data loader: a window changed on disk since the check is still refused, targets included", "[io]") {
  TempDir dir;
  std::vector<uint16_t> tokens(100, 65);
  const std::string path = dir.file("bad.bin");
  tokens[37] = 300;
  write_token_shard(path, tokens.data(), int64_t(tokens.size()));
  LoaderOptions unchecked = ordered(false);
  unchecked.check_tokens = false;
  DataLoader loader(path, 2, 8, 257, 0, 1, unchecked);
  std::vector<int32_t> x(16), y(16);
  loader.next_batch(x.data(), y.data());  // windows at 0 and 8
  loader.next_batch(x.data(), y.data());  // 16 and 24
  std::string msg = error_message([&] { loader.next_batch(x.data(), y.data()); });
  CHECK(msg.find(path) != std::string::npos);
  CHECK(msg.find("offset 37") != std::string::npos);
  CHECK(msg.find("token id 300") != std::string::npos);
  CHECK(msg.find("size 257") != std::string::npos);

  // The window at 40 ends at 48: the id at 48 is only a target, and is checked as well.
  tokens[37] = 65;
  tokens[48] = 999;
  write_token_shard(path, tokens.data(), int64_t(tokens.size()));
  DataLoader again(path, 2, 8, 257, 0, 1, unchecked);
  again.restore(at(again, 0, 4));
  CHECK(error_message([&] { again.next_batch(x.data(), y.data()); }).find("offset 48") != std::string::npos);
}

TEST_CASE("data loader: files and data too small for a sequence or a global batch, and missing files", "[io]") {
  TempDir dir;
  const std::string path = make_shard(dir, "small.bin", 33, 0);
  DataLoader fits(path, 2, 16, 100);  // two windows of 16+1
  std::string msg = error_message([&] { DataLoader loader(path, 2, 8, 100, 0, 3); });  // 4 windows, 6 needed
  CHECK(msg.find("holds 4 sequences of 9 tokens, fewer than the 6 one global batch needs") != std::string::npos);
  CHECK(msg.find("smaller batch size or sequence length") != std::string::npos);
  CHECK(msg.find(path) != std::string::npos);
  msg = error_message([&] { DataLoader loader(path, 1, 33, 100); });
  CHECK(msg.find("holds 33 tokens, fewer than one sequence of 34") != std::string::npos);
  CHECK(msg.find(path) != std::string::npos);

  msg = error_message([&] { DataLoader loader(dir.file("nothing_*.bin"), 1, 4, 100); });
  CHECK(msg.find("no file matches") != std::string::npos);
  msg = error_message([&] { DataLoader loader(dir.file("absent.bin"), 1, 4, 100); });
  CHECK(msg.find("does not exist") != std::string::npos);
  error_message([&] { DataLoader loader(path, 1, 4, 100, 2, 2); }, ExitCode::bad_config);
  error_message([&] { DataLoader loader(path, 0, 4, 100); }, ExitCode::bad_config);
  error_message([&] { DataLoader loader(dir.file("absent.bin"), 0, 4, 100); }, ExitCode::bad_config);  // sizes first
}

TEST_CASE("data loader: llm.c uint32 shards and Megatron datasets mixed in one pattern", "[io]") {
  TempDir dir;
  std::vector<uint32_t> big(41);
  for (size_t i = 0; i < big.size(); ++i) big[i] = uint32_t(70000 + i);
  write_token_shard(dir.file("a_u32.bin"), big.data(), int64_t(big.size()));
  test::write_megatron(dir.file("b_meg"), test::megatron_bytes({{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {11, 12, 13}}, 4));
  DataLoader loader(dir.file("a_u32.bin") + "," + dir.file("b_meg"), 1, 4, 70041, 0, 1, ordered(false));
  CHECK(loader.dataset().formats() == "llm.c uint32, Megatron int32");
  REQUIRE(loader.windows_per_epoch() == 10 + 3);
  Batch b = next(loader);
  CHECK(b.inputs == std::vector<int32_t>{70000, 70001, 70002, 70003});
  for (int i = 0; i < 9; ++i) next(loader);
  b = next(loader);  // the Megatron dataset's first window: documents back to back
  CHECK(b.ids[0] == SampleId{1, 0});
  CHECK(b.targets == std::vector<int32_t>{2, 3, 4, 5});
  CHECK(error_message([&] { DataLoader small(dir.file("a_u32.bin"), 1, 4, 70040); }).find("token id 70040") !=
        std::string::npos);
}
