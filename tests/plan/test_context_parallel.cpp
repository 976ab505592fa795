// Context parallelism in the planner: what splitting every sequence over cp ranks does to memory,
// work and communication, the three exchange variants, and what tessera-plan says about it.
#include <algorithm>
#include <string>

#include "support/test_support.h"
#include "tessera/error.h"
#include "tessera/plan.h"

using namespace tessera;
using namespace tessera::plan;

namespace {

Layout long_context_layout(int cp, ContextParallel kind) {
  Layout l;
  l.tp = 8, l.cp = cp, l.cp_kind = kind, l.pp = 1, l.dp = 64 / (8 * cp), l.sp = true, l.zero = 1;
  l.micro_batch = 1, l.microbatches = 4;
  return l;
}

}  // namespace

TEST_CASE("plan: context parallelism splits each sequence's activations, work and transfers over cp ranks", "[plan]") {
  const ModelShape m = ModelShape::llama(32, 4096, 32, 8, 14336, 128256, 32768);
  const SoftwareSpec sw = SoftwareSpec::preset("megatron-core");
  const ClusterSpec c = ClusterSpec::preset("h100", 64);
  const Layout one = long_context_layout(1, ContextParallel::ring), four = long_context_layout(4, ContextParallel::ring);
  CHECK(layer_activation_bytes(m, four, sw) == Approx(layer_activation_bytes(m, one, sw) / 4));
  const Prediction p1 = predict(m, c, one, 64 * 4 / 8, sw), p4 = predict(m, c, four, 64 * 4 / 32, sw);
  // Parameters are replicated over cp; ZeRO-1 shards the optimizer state over dp x cp (8 either way).
  CHECK(p4.memory.parameters == Approx(p1.memory.parameters));
  CHECK(p4.memory.optimizer == Approx(p1.memory.optimizer));
  CHECK(p4.memory.activations < 0.3 * p1.memory.activations);
  // A quarter of the tokens per rank: a quarter of the linear and attention work per microbatch.
  CHECK(p4.chunk_forward < 0.3 * p1.chunk_forward);
  CHECK(p4.cp_comm_time > 0);
  CHECK(p1.cp_comm_time == 0);
  CHECK(four.describe().find("cp4(ring)") != std::string::npos);
  CHECK(four.gpus() == 64);
}

TEST_CASE("plan: ring attention hides its K/V transfers behind block attention, all-to-all and all-gather expose theirs", "[plan]") {
  const ModelShape m = ModelShape::llama(32, 4096, 32, 8, 14336, 128256, 131072);
  const SoftwareSpec sw = SoftwareSpec::preset("megatron-core");
  ClusterSpec c = ClusterSpec::preset("h100", 64);
  auto cp_time = [&](ContextParallel kind) { return predict(m, c, long_context_layout(8, kind), 8, sw).cp_comm_time; };
  // cp 8 x tp 8 spans 8 nodes: the ring's hop is inter-node. At 131K tokens each block's attention
  // outlasts its transfer: only the SMs NCCL takes are paid.
  const double ring = cp_time(ContextParallel::ring), gather = cp_time(ContextParallel::all_gather);
  const double a2a = cp_time(ContextParallel::all_to_all);
  CHECK(ring > 0);
  CHECK(ring < gather);
  CHECK(ring < a2a);
  // A slow network exposes the ring's transfers too, more as the link slows.
  c.inter_bandwidth = 1e9;
  const double slow = cp_time(ContextParallel::ring);
  c.inter_bandwidth = 0.25e9;
  CHECK(slow > 2 * ring);
  CHECK(cp_time(ContextParallel::ring) > 2 * slow);
}

TEST_CASE("plan: context-parallel layouts follow the software and the model", "[plan]") {
  const ModelShape m = ModelShape::llama(32, 4096, 32, 8, 14336, 128256, 16384);
  const ClusterSpec c = ClusterSpec::preset("h100", 64);
  auto count = [&](unsigned kinds, int cp, ContextParallel kind) {
    const auto layouts = enumerate_layouts(m, c, 64, PlanOptions{}, kinds);
    return std::count_if(layouts.begin(), layouts.end(), [&](const Layout& l) { return l.cp == cp && l.cp_kind == kind; });
  };
  const unsigned all = parse_context_parallel("ring,all-gather,all-to-all");
  CHECK(count(0, 2, ContextParallel::ring) == 0);  // tessera's software: none
  CHECK(count(all, 2, ContextParallel::ring) > 0);
  CHECK(count(all, 8, ContextParallel::all_gather) > 0);  // 16384 / 8 = 2048 tokens each
  CHECK(count(all, 16, ContextParallel::ring) == 0);      // 1024 tokens each: below min_cp_tokens
  // Ulysses splits heads: 8 kv heads over tp x cp ranks.
  std::vector<Layout> layouts = enumerate_layouts(m, c, 64, PlanOptions{}, all);
  for (const Layout& l : layouts)
    if (l.cp_kind == ContextParallel::all_to_all && l.cp > 1) CHECK(8 % (l.tp * l.cp) == 0);
  CHECK(parse_context_parallel("none") == 0);
  CHECK_THROWS_AS(parse_context_parallel("ring,zigzag"), tessera::Error);
  CHECK(std::string(context_parallel_name(ContextParallel::all_to_all)) == "all-to-all");
}

TEST_CASE("plan: Llama 3 405B's 131K-token stage is planned, and tessera-plan says tessera-train cannot run it", "[plan]") {
  ModelShape m = ModelShape::preset("llama3-405b");
  m.seq_len = 131072;
  const ClusterSpec c = ClusterSpec::preset("h100", 16384);
  // Without context parallelism only one 131K sequence per pipeline fits: a bubble of 90%+.
  const PlanResult none = plan::plan(m, c, 128, SoftwareSpec::preset("tessera"));
  REQUIRE(!none.ranked.empty());
  CHECK(none.ranked.front().layout.cp == 1);
  CHECK(none.ranked.front().mfu < 0.10);
  // The paper's layout (TP8 CP16 PP16 DP8, all-gather K/V) fits in 80 GB.
  PlanOptions stated;
  stated.only = [](const Layout& l) { return l.tp == 8 && l.cp == 16 && l.pp == 16 && l.micro_batch == 1; };
  const PlanResult r = plan::plan(m, c, 128, SoftwareSpec::preset("llama3"), stated);
  REQUIRE(!r.ranked.empty());
  const Prediction& p = r.ranked.front();
  CHECK(p.layout.dp == 8);
  CHECK(p.layout.cp_kind == ContextParallel::all_gather);
  CHECK(p.fits);
  CHECK(p.mfu > 0.30);
  std::printf("llama3-405b at 131,072 tokens on 16,384 H100: %s, %.1f GB, MFU %.1f%% (published 38%%)\n",
              p.layout.describe().c_str(), p.memory.total() / 1e9, 100 * p.mfu);
  // No tessera-train command for it: tessera-train has no --cp.
  const std::string command = train_command(m, p);
  CHECK(command.find("tessera-train --") == std::string::npos);
  CHECK(command.find("--cp") == std::string::npos);
  CHECK(command.find("cannot run yet") != std::string::npos);
  CHECK(format_table(m, c, 128, r, 3).find("mpirun") == std::string::npos);
}

TEST_CASE("plan: when nothing fits without context parallelism, the table says what would", "[plan]") {
  ModelShape m = ModelShape::preset("llama3-8b");
  m.seq_len = int64_t(1) << 21;  // 2M tokens: the logits alone exceed 80 GB on a tensor-parallel group
  const ClusterSpec c = ClusterSpec::preset("h100", 64);
  const PlanResult none = plan::plan(m, c, 8, SoftwareSpec::preset("tessera"));
  CHECK(none.ranked.empty());
  const std::string table = format_table(m, c, 8, none, 3);
  CHECK(table.find("no layout fits") != std::string::npos);
  CHECK(table.find("no context parallelism") != std::string::npos);
  SoftwareSpec ring = SoftwareSpec::preset("tessera");
  ring.context_parallel = parse_context_parallel("ring");
  const PlanResult with = plan::plan(m, c, 8, ring);
  REQUIRE(!with.ranked.empty());
  CHECK(with.ranked.front().layout.cp >= 8);
}
