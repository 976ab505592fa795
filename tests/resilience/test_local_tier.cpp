// The local checkpoint tier's pieces that need no ranks: partners on other nodes, the self-checking
// shard file, and a trainer's state copied out and back in bitwise.
#include <catch2/catch.hpp>

#include <cstring>

#include "io/io_test_util.h"
#include "io/local_shard.h"
#include "support/test_support.h"
#include "tessera/local_checkpoint.h"
#include "tessera/trainer.h"

using namespace tessera;

TEST_CASE("local tier: every rank's replica partner is on the next node", "[resilience][local]") {
  CHECK(replica_partners({"a", "a", "a"}) == std::vector<int>{-1, -1, -1});  // one node: none
  CHECK(replica_partners({"a", "a", "b", "b"}) == std::vector<int>{2, 3, 0, 1});
  CHECK(replica_partners({"a", "b", "c"}) == std::vector<int>{1, 2, 0});
  // Ranks of a node need not be adjacent, nodes need not be equal.
  const std::vector<int> p = replica_partners({"a", "b", "a", "b", "c"});
  CHECK(p == std::vector<int>{1, 4, 3, 4, 0});
  const std::vector<std::string> hosts = {"a", "b", "a", "b", "c"};
  for (size_t r = 0; r < p.size(); ++r) CHECK(hosts[size_t(p[r])] != hosts[r]);
}

TEST_CASE("local tier: a shard file checks every byte", "[resilience][local]") {
  io::LocalShardHeader h;
  h.rank = 3;
  h.world_size = 4;
  h.step = 40;
  h.layout = "tp=2 dp=2";
  h.optimizer_step = 40;
  h.state_json = R"({"step":40,"program":{"x":1}})";
  std::vector<char> payload(1000);
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = char(i * 7);
  const std::vector<char> blob = io::pack_local_shard(h, payload);
  std::vector<char> back;
  const io::LocalShardHeader got = io::unpack_local_shard(blob, "test", &back);
  CHECK(got.rank == 3);
  CHECK(got.world_size == 4);
  CHECK(got.step == 40);
  CHECK(got.layout == h.layout);
  CHECK(got.payload_bytes == 1000);
  CHECK(back == payload);

  test::TempDir dir;
  io::write_local_shard(dir.file("shard.bin"), blob);
  uint64_t bytes = 0;
  CHECK(io::peek_local_shard(dir.file("shard.bin"), &bytes).step == 40);
  CHECK(bytes == blob.size());
  CHECK(io::read_local_shard(dir.file("shard.bin")) == blob);

  for (size_t at : {size_t(3), size_t(20), blob.size() / 2, blob.size() - 1}) {
    std::vector<char> damaged = blob;
    damaged[at] ^= 0x10;
    CHECK_THAT(test::error_message([&] { io::unpack_local_shard(damaged, "a damaged shard"); }),
               Catch::Contains("a damaged shard"));
  }
  std::vector<char> cut(blob.begin(), blob.begin() + int64_t(blob.size() / 2));
  CHECK_THROWS_AS(io::unpack_local_shard(cut, "a cut shard"), Error);
}

TEST_CASE("local tier: a trainer's state restored continues bitwise; another layout is refused", "[resilience][local]") {
  Context& ctx = test::cpu_context();
  const ModelConfig config = ModelConfig::gpt2(2, 2, 16, 50, 16);
  TrainerOptions options;
  options.batch_size = 2;
  options.seq_len = 8;
  options.seed = 3;
  Trainer trainer(ctx, config, options);
  std::vector<std::vector<int32_t>> tokens, targets;
  for (int s = 0; s < 5; ++s) {
    tokens.push_back(test::random_ints(16, uint64_t(10 + s), 0, 50));
    targets.push_back(test::random_ints(16, uint64_t(20 + s), 0, 50));
  }
  auto step = [&](int s) {
    return trainer.step({tokens[size_t(s)].data()}, {targets[size_t(s)].data()}, 1e-3f).loss;
  };
  step(0);
  step(1);
  const LocalTrainerState saved = trainer.local_state();
  CHECK(saved.optimizer_step == 2);
  std::vector<float> first;
  for (int s = 2; s < 5; ++s) first.push_back(step(s));
  const std::vector<float> params = test::download(ctx, trainer.model().param_buffer());

  trainer.restore_local_state(saved);
  CHECK(trainer.optimizer()->step_count() == 2);
  std::vector<float> again;
  for (int s = 2; s < 5; ++s) again.push_back(step(s));
  CHECK(std::memcmp(first.data(), again.data(), first.size() * sizeof(float)) == 0);
  const std::vector<float> params_again = test::download(ctx, trainer.model().param_buffer());
  CHECK(std::memcmp(params.data(), params_again.data(), params.size() * sizeof(float)) == 0);

  LocalTrainerState other = saved;
  other.layout += " (another run)";
  CHECK_THAT(test::error_message([&] { trainer.restore_local_state(other); }), Catch::Contains("another run"));
  LocalTrainerState short_state = saved;
  short_state.bytes.resize(short_state.bytes.size() - 4);
  CHECK_THROWS_AS(trainer.restore_local_state(short_state), Error);
}
