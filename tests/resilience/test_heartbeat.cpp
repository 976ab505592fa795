// Heartbeats, the flight recorder and failure reports: what peers, tessera-launch and
// tessera-diagnose read about a rank.
#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

#include "io/io_test_util.h"
#include "tessera/failure_report.h"
#include "tessera/fault_injection.h"
#include "tessera/flight_recorder.h"
#include "tessera/heartbeat.h"

using namespace tessera;

namespace {
void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }
}  // namespace

TEST_CASE("flight recorder: sequence numbers per group, waits, progress and a bounded ring", "[resilience][recorder]") {
  FlightRecorder r(4);
  const uint64_t a = r.start("all_reduce", "dp", {0, 2}, 64);
  const uint64_t b = r.start("all_gather", "tp", {0, 1}, 32);
  const uint64_t c = r.start("all_reduce", "dp", {0, 2}, 64);
  r.finish(a, 0.25, 0.125);
  r.finish(b, 0.5, 0.0);
  std::vector<CommRecord> recs = r.records();
  REQUIRE(recs.size() == 3);
  CHECK(recs[0].seq == 1);
  CHECK(recs[1].seq == 1);  // tp's first
  CHECK(recs[2].seq == 2);  // dp's second
  CHECK_FALSE(recs[0].waiting());
  CHECK(recs[2].waiting());
  CHECK(recs[2].peers == std::vector<int>{0, 2});
  CHECK(r.waited_s() == Approx(0.75));
  CHECK(r.cpu_wait_in_waits_s() == Approx(0.125));
  std::vector<GroupProgress> p = r.progress();
  REQUIRE(p.size() == 2);
  CHECK(p[0].group == "dp");
  CHECK(p[0].started == 2);
  CHECK(p[0].completed == 1);
  r.finish(c, 0.0, 0.0);
  for (int i = 0; i < 5; ++i) r.finish(r.start("broadcast", "world", {0, 1, 2, 3}, 8), 0.0, 0.0);
  recs = r.records();
  REQUIRE(recs.size() == 4);  // the newest four, oldest first
  CHECK(recs.front().op == "broadcast");
  CHECK(recs.back().seq == 5);
}

TEST_CASE("heartbeats: written by a thread, read back, marked exited at the end", "[resilience][heartbeat]") {
  test::TempDir dir;
  int64_t step = 7;
  {
    HeartbeatWriter w(dir.path(), 3, 1, 0.05, [&] {
      Heartbeat b;
      b.step = step;
      b.steps_done = 2;
      b.sections = {OpenSection{"train step", 7, 1.0, 10.0}};
      return b;
    });
    REQUIRE(w.enabled());
    sleep_s(0.3);
    const Heartbeat b = read_heartbeat(heartbeat_path(dir.path(), 3));
    CHECK(b.rank == 3);
    CHECK(b.attempt == 1);
    CHECK(b.step == 7);
    CHECK(b.beat >= 3);
    CHECK_FALSE(b.exited);
    CHECK(b.pid > 0);
    CHECK(b.gap_s > 0);
    REQUIRE(b.sections.size() == 1);
    CHECK(b.sections[0].op == "train step");
  }
  const std::vector<Heartbeat> all = read_heartbeats(dir.path());
  REQUIRE(all.size() == 1);
  CHECK(all[0].exited);
  HeartbeatWriter off("", 0, 0, 1.0, {});
  CHECK_FALSE(off.enabled());
}

TEST_CASE("heartbeats: a rank that stops beating is stale by the watcher's own clock", "[resilience][heartbeat]") {
  test::TempDir dir;
  auto beating = std::make_unique<HeartbeatWriter>(dir.path(), 0, 0, 0.05, [] { return Heartbeat{}; });
  auto stopping = std::make_unique<HeartbeatWriter>(dir.path(), 1, 0, 0.05, [] {
    Heartbeat b;
    b.step = 12;
    b.sections = {OpenSection{"all_reduce(dp)", 12, 0, 10}};
    return b;
  });
  HeartbeatWatch watch(dir.path(), 0);
  CHECK(watch.stale({0, 1, 2}, 0.3).empty());  // rank 2 has not been looked for long enough yet
  // Rank 1 freezes: its file stays, unchanged (a destroyed writer would say "exited").
  {
    Heartbeat last = read_heartbeat(heartbeat_path(dir.path(), 1));
    stopping.reset();
    write_heartbeat(dir.path(), last);
  }
  sleep_s(0.5);
  std::vector<StalePeer> stale = watch.stale({0, 1, 2}, 0.3);
  REQUIRE(stale.size() == 2);
  CHECK(stale[0].rank == 1);
  CHECK(stale[0].step == 12);
  CHECK(stale[0].section == "all_reduce(dp)");
  CHECK(stale[0].silent_s >= 0.3);
  CHECK(stale[1].rank == 2);  // never seen at all
  // Another attempt's beats do not count; an exited rank is never stale.
  HeartbeatWatch next(dir.path(), 1);
  beating.reset();
  sleep_s(0.4);
  CHECK(watch.stale({0}, 0.3).empty());
}

TEST_CASE("failure reports: stale peers, the flight recorder and a freeze round trip", "[resilience][report]") {
  test::TempDir dir;
  FailureReport r;
  r.rank = 2;
  r.host = "nodeB";
  r.pid = 99;
  r.attempt = 1;
  r.step = 40;
  r.op = "all_reduce(dp)";
  r.reason = "peer";
  r.waited_s = 11;
  r.timeout_s = 10;
  r.deadline = "learned 10.0 s (the floor)";
  r.started_unix = 100;
  r.detected_unix = 111;
  r.stopped_s = 0;
  r.stale_peers = {StalePeer{3, "nodeC", 10.5, 40, "train step"}};
  CommRecord c;
  c.seq = 41;
  c.op = "all_reduce";
  c.group = "dp";
  c.peers = {2, 3};
  c.bytes = 4096;
  c.start_unix = 100.5;
  r.flight = {c};
  write_failure_report(dir.path(), r);
  const FailureReport back = read_failure_report(failure_report_path(dir.path(), 2));
  CHECK(back.reason == "peer");
  CHECK(back.attempt == 1);
  CHECK(back.deadline == r.deadline);
  REQUIRE(back.stale_peers.size() == 1);
  CHECK(back.stale_peers[0].rank == 3);
  CHECK(back.stale_peers[0].host == "nodeC");
  CHECK(back.stale_peers[0].silent_s == 10.5);
  REQUIRE(back.flight.size() == 1);
  CHECK(back.flight[0].seq == 41);
  CHECK(back.flight[0].peers == std::vector<int>{2, 3});
  CHECK(back.flight[0].waiting());
}

TEST_CASE("faults: a node loss names its host", "[resilience][fault]") {
  const std::vector<Fault> f = parse_faults("node:host=nodeB:step=16:attempt=1");
  REQUIRE(f.size() == 1);
  CHECK(f[0].kind == FaultKind::node);
  CHECK(f[0].host == "nodeB");
  CHECK(describe(f[0]) == "node:host=nodeB:step=16:attempt=1");
  CHECK_THROWS_AS(parse_faults("node:step=3"), Error);
  CHECK_THROWS_AS(parse_faults("kill:host=nodeB:step=3"), Error);
}
