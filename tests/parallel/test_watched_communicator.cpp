// The watched communicator: every operation recorded (group label, peers as world ranks, a sequence
// number that agrees across members), waits summed and held under the watchdog; results unchanged.
// Host collectives and the straggler detector over real ranks; the local tier's restore.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "parallel/world.h"
#include "support/test_support.h"
#include "tessera/flight_recorder.h"
#include "tessera/host_collectives.h"
#include "tessera/parallel.h"
#include "tessera/stragglers.h"
#include "tessera/watched_communicator.h"

using namespace tessera;
using test::world;

TEST_CASE("watched communicator: groups labelled by the grid, peers as world ranks, results unchanged", "[watched]") {
  Context& ctx = test::cpu_context();
  FlightRecorder recorder;
  WatchdogOptions o;
  o.timeout_s = 60;
  Watchdog watchdog(o);
  std::unique_ptr<Communicator> watched = watch_communicator(ctx, make_mpi_communicator(ctx), recorder, &watchdog);
  const int n = watched->size(), me = watched->rank();
  ParallelLayout layout;
  layout.tp = n % 2 == 0 ? 2 : 1;
  ProcessGrid grid(*watched, layout);
  CHECK(grid.tp().label() == "tp");
  CHECK(grid.dp().label() == "dp");

  std::vector<float> v = {float(me), 1.0f};
  Tensor t(v.data(), {2}, DType::f32, Device::cpu);
  grid.dp().all_reduce(t, ReduceOp::sum).wait();
  const int dp = grid.layout().dp;
  float expected = 0;
  for (int d = 0; d < dp; ++d) expected += float(grid.rank_of(grid.tp_rank(), d, grid.pp_rank()));
  CHECK(v[0] == expected);
  CHECK(v[1] == float(dp));

  const std::vector<CommRecord> records = recorder.records();
  REQUIRE_FALSE(records.empty());
  const CommRecord& last = records.back();
  CHECK(last.op == "all_reduce");
  CHECK(last.group == "dp");
  CHECK_FALSE(last.waiting());
  CHECK(last.bytes == 8);
  std::vector<int> members;
  for (int d = 0; d < dp; ++d) members.push_back(grid.rank_of(grid.tp_rank(), d, grid.pp_rank()));
  CHECK(last.peers == members);
  // The same operation has the same number on every member.
  std::vector<int64_t> seqs(static_cast<size_t>(n), 0);
  const int64_t mine = int64_t(last.seq);
  host_all_gather(ctx, *watched, &mine, sizeof(mine), seqs.data());
  CHECK(std::all_of(seqs.begin(), seqs.end(), [&](int64_t s) { return s == mine; }));
  CHECK(recorder.waited_s() >= 0);
  CHECK(watchdog.open_sections().empty());  // every wait left its section
}

TEST_CASE("host collectives: strings and words from every rank", "[watched]") {
  Context& ctx = test::cpu_context();
  Communicator& w = world();
  const std::vector<std::string> names = host_all_gather_strings(ctx, w, "rank-" + std::to_string(w.rank() * 11));
  REQUIRE(names.size() == size_t(w.size()));
  for (int r = 0; r < w.size(); ++r) CHECK(names[size_t(r)] == "rank-" + std::to_string(r * 11));
  std::vector<float> m = {float(w.rank())};
  host_all_reduce(ctx, w, m, ReduceOp::max);
  CHECK(m[0] == float(w.size() - 1));
}

TEST_CASE("stragglers: every rank reaches the same verdict from one exchange per window", "[watched]") {
  Context& ctx = test::cpu_context();
  Communicator& w = world();
  if (w.size() < 3) return;  // a median of peers needs two of them
  StragglerOptions o;
  o.window = 4;
  StragglerDetector detector(ctx, w, std::vector<int>(size_t(w.size()), 0), o);
  std::vector<StragglerEvent> events;
  for (int step = 0; step < 12; ++step) {
    const double compute = w.rank() == 1 ? 0.03 : 0.01;  // rank 1 three times slower
    for (const StragglerEvent& e : detector.record(step, compute)) events.push_back(e);
  }
  REQUIRE(events.size() == 1);
  CHECK(events[0].rank == 1);
  CHECK(events[0].slowdown == Approx(3.0));
  CHECK(events[0].step == 7);
  CHECK(events[0].host == detector.hosts()[1]);
}
