// The watchdog with learned deadlines and a peer check, in a forked child (firing ends the process).
#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <thread>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/io_test_util.h"
#include "tessera/watchdog.h"

using namespace tessera;

namespace {

// Runs body in a forked child; its exit code (-1 if killed after limit_s) and how long it ran.
std::pair<int, double> in_child(const std::function<void()>& body, double limit_s) {
  const auto t0 = std::chrono::steady_clock::now();
  std::fflush(nullptr);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 2);
    body();
    ::_exit(0);
  }
  int status = 0;
  for (;;) {
    if (::waitpid(pid, &status, WNOHANG) == pid) break;
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > limit_s) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return {-1, limit_s};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1,
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
}

WatchdogOptions learning(const std::string& dir) {
  WatchdogOptions o;
  o.learn = true;
  o.learning.initial_s = 30;
  o.learning.floor_s = 0.3;
  o.learning.warmup = 1;
  o.learning.min_samples = 3;
  o.report_dir = dir;
  o.rank = 1;
  return o;
}

}  // namespace

TEST_CASE("watchdog: a section slower than its learned deadline fires, with how it was set", "[resilience][watchdog]") {
  test::TempDir dir;
  auto [code, seconds] = in_child(
      [&] {
        Watchdog w(learning(dir.path()));
        for (int s = 0; s < 5; ++s) {
          Watchdog::Scope scope = w.scope("train step", s);
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        Watchdog::Scope scope = w.scope("train step", 5);
        std::this_thread::sleep_for(std::chrono::seconds(20));
      },
      15);
  CHECK(code == 3);
  CHECK(seconds < 5);  // 0.3 s (the floor) and a poll, not the initial 30 s
  const std::vector<FailureReport> r = read_failure_reports(dir.path());
  REQUIRE(r.size() == 1);
  CHECK(r[0].step == 5);
  CHECK(r[0].timeout_s == Approx(0.3));
  CHECK_THAT(r[0].deadline, Catch::StartsWith("learned 0.3 s"));
  CHECK(r[0].stopped_s == 0);
}

TEST_CASE("watchdog: sections learn apart; a section not learned yet waits the initial timeout", "[resilience][watchdog]") {
  test::TempDir dir;
  auto [code, seconds] = in_child(
      [&] {
        Watchdog w(learning(dir.path()));
        for (int s = 0; s < 5; ++s) {
          Watchdog::Scope scope = w.scope("train step", s);
        }
        Watchdog::Scope scope = w.scope("evaluation", 5);  // never seen: 30 s
        std::this_thread::sleep_for(std::chrono::seconds(2));
      },
      15);
  CHECK(code == 0);
  CHECK(read_failure_reports(dir.path()).empty());
}

TEST_CASE("watchdog: a peer that stopped its heartbeat fires at once, naming it", "[resilience][watchdog]") {
  test::TempDir dir;
  auto [code, seconds] = in_child(
      [&] {
        WatchdogOptions o = learning(dir.path());
        o.peer_check_after_s = 0.1;
        o.peer_check = [] { return std::vector<StalePeer>{StalePeer{4, "nodeE", 12.0, 30, "train step"}}; };
        Watchdog w(o);
        Watchdog::Scope scope = w.scope("all_reduce(dp)", 31);
        std::this_thread::sleep_for(std::chrono::seconds(20));
      },
      15);
  CHECK(code == 3);
  CHECK(seconds < 5);
  const std::vector<FailureReport> r = read_failure_reports(dir.path());
  REQUIRE(r.size() == 1);
  CHECK(r[0].reason == "peer");
  CHECK(r[0].op == "all_reduce(dp)");
  REQUIRE(r[0].stale_peers.size() == 1);
  CHECK(r[0].stale_peers[0].rank == 4);
}

TEST_CASE("watchdog: a process stopped from outside reports its own freeze when woken", "[resilience][watchdog]") {
  test::TempDir dir;
  std::fflush(nullptr);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 2);
    WatchdogOptions o;
    o.timeout_s = 1.0;
    o.report_dir = dir.path();
    o.rank = 6;
    Watchdog w(o);
    Watchdog::Scope scope = w.scope("train step", 3);
    std::this_thread::sleep_for(std::chrono::seconds(30));
    ::_exit(0);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ::kill(pid, SIGSTOP);
  std::this_thread::sleep_for(std::chrono::seconds(4));
  ::kill(pid, SIGCONT);
  int status = 0;
  ::waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 3);
  const std::vector<FailureReport> r = read_failure_reports(dir.path());
  REQUIRE(r.size() == 1);
  CHECK(r[0].stopped_s > 3.0);
}
