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
    for (const StragglerEvent& e : detector.record(step, {compute, 0.0})) events.push_back(e);
  }
  REQUIRE(events.size() == 1);
  CHECK(events[0].rank == 1);
  CHECK(events[0].slowdown == Approx(3.0));
  CHECK(events[0].step == 7);
  CHECK(events[0].host == detector.hosts()[1]);
  CHECK(events[0].cpu_wait_share == 0.0);
  CHECK(detector.last_window_step() == 11);
}

namespace {

// Rank 1 takes three times as long because it waited for a CPU two thirds of each step.
std::vector<StragglerEvent> cpu_starved_rank_1(CpuWaitPolicy policy) {
  Context& ctx = test::cpu_context();
  Communicator& w = world();
  StragglerOptions o;
  o.window = 4;
  o.cpu_wait = policy;
  StragglerDetector detector(ctx, w, std::vector<int>(size_t(w.size()), 0), o);
  CHECK(detector.takes_out_cpu_wait() == (policy == CpuWaitPolicy::taken_out));
  std::vector<StragglerEvent> events;
  for (int step = 0; step < 12; ++step) {
    const StepTiming t = w.rank() == 1 ? StepTiming{0.03, 0.02} : StepTiming{0.01, 0.0};
    for (const StragglerEvent& e : detector.record(step, t)) events.push_back(e);
  }
  REQUIRE(detector.last_cpu_wait_shares().size() == size_t(w.size()));
  CHECK(detector.last_cpu_wait_shares()[1] == Approx(2.0 / 3.0));
  CHECK(detector.last_cpu_wait_shares()[0] == 0.0);
  return events;
}

}  // namespace

TEST_CASE("stragglers: waiting for a CPU counts as slow unless the job oversubscribes its machine", "[watched]") {
  if (world().size() < 3) return;
  const std::vector<StragglerEvent> counted = cpu_starved_rank_1(CpuWaitPolicy::counted);
  REQUIRE(counted.size() == 1);
  CHECK(counted[0].rank == 1);
  CHECK(counted[0].cpu_wait_share == Approx(2.0 / 3.0));
  CHECK(cpu_starved_rank_1(CpuWaitPolicy::taken_out).empty());
}
