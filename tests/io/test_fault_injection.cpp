// Fault injection and the watchdog. Faults that end a process run in a forked child, so the test
// process survives and checks how the child ended.
#include <catch2/catch.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/io_test_util.h"
#include "tessera/checkpoint.h"
#include "tessera/fault_injection.h"
#include "tessera/watchdog.h"

using namespace tessera;
namespace fs = std::filesystem;
using test::error_message;
using test::TempDir;

namespace {

struct ChildResult {
  int status = 0;
  bool timed_out = false;
  double seconds = 0;
  std::string stderr_text;
};

// Runs body in a forked child with its stderr in a file; kills it after limit_s.
ChildResult run_in_child(const std::function<void()>& body, double limit_s, const std::string& stderr_path) {
  std::fflush(nullptr);
  auto t0 = std::chrono::steady_clock::now();
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int fd = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) ::dup2(fd, 2);
    try {
      body();
    } catch (...) {
      ::_exit(100);
    }
    ::_exit(0);
  }
  ChildResult r;
  for (;;) {
    pid_t w = ::waitpid(pid, &r.status, WNOHANG);
    if (w == pid) break;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r.seconds > limit_s) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &r.status, 0);
      r.timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::ifstream in(stderr_path);
  r.stderr_text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return r;
}

int exit_code(const ChildResult& r) { return WIFEXITED(r.status) ? WEXITSTATUS(r.status) : -1; }

// Environment variables set for one test and restored afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    if (value) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_) ::setenv(name_.c_str(), old_.c_str(), 1);
    else ::unsetenv(name_.c_str());
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

}  // namespace

TEST_CASE("fault injection: specifications parse", "[io][fault]") {
  auto faults = parse_faults("kill:rank=1:step=12");
  REQUIRE(faults.size() == 1);
  CHECK(faults[0].kind == FaultKind::kill);
  CHECK(faults[0].rank == 1);
  CHECK(faults[0].step == 12);
  CHECK(faults[0].attempt == 0);

  faults = parse_faults(" hang:rank=0:step=5 , nan:step=7;exit:rank=2:step=3:code=4:attempt=1,corrupt:step=20:rank=1,truncate:step=30");
  REQUIRE(faults.size() == 5);
  CHECK(faults[0].kind == FaultKind::hang);
  CHECK(faults[1].kind == FaultKind::nan);
  CHECK(faults[1].rank == -1);
  CHECK(faults[2].kind == FaultKind::exit);
  CHECK(faults[2].exit_code == 4);
  CHECK(faults[2].attempt == 1);
  CHECK(faults[3].kind == FaultKind::corrupt);
  CHECK(faults[4].kind == FaultKind::truncate);
  CHECK(faults[4].rank == -1);
  for (const auto& f : faults) {
    auto again = parse_faults(describe(f));
    REQUIRE(again.size() == 1);
    CHECK(describe(again[0]) == describe(f));
  }
  CHECK(parse_faults("").empty());
  CHECK(parse_faults(" , ").empty());
}

TEST_CASE("fault injection: malformed specifications are config errors", "[io][fault]") {
  for (const char* bad : {"boom:step=1", "kill:rank=1", "kill:step=x", "kill:step=1:step=2", "kill:step=1:code=3",
                          "exit:step=1:code=0", "exit:step=1:code=300", "kill:step=-1", "kill:rank:step=1",
                          "kill:step=1:color=red", "kill:step=99999999999999999999"}) {
    INFO(bad);
    CHECK_THAT(error_message([&] { parse_faults(bad); }, ExitCode::bad_config), Catch::Contains("bad fault specification"));
  }
}

TEST_CASE("fault injection: the flag wins over TESSERA_FAULT, and the attempt comes from TESSERA_RESTART_COUNT",
          "[io][fault]") {
  {
    ScopedEnv fault("TESSERA_FAULT", "nan:step=7");
    ScopedEnv count("TESSERA_RESTART_COUNT", nullptr);
    auto env = FaultInjector::from_environment();
    REQUIRE(env.faults().size() == 1);
    CHECK(env.faults()[0].kind == FaultKind::nan);
    CHECK(env.attempt() == 0);
    auto flag = FaultInjector::from_environment("kill:step=3");
    REQUIRE(flag.faults().size() == 1);
    CHECK(flag.faults()[0].kind == FaultKind::kill);
  }
  {
    ScopedEnv fault("TESSERA_FAULT", "nan:step=7");
    ScopedEnv count("TESSERA_RESTART_COUNT", "1");
    auto inj = FaultInjector::from_environment();
    CHECK(inj.attempt() == 1);
    CHECK_FALSE(inj.maybe_inject(7, 0));  // the fault belongs to the first launch
  }
  {
    ScopedEnv fault("TESSERA_FAULT", "kill:step=oops");
    CHECK_THROWS_AS(FaultInjector::from_environment(), Error);
    ScopedEnv count("TESSERA_RESTART_COUNT", "two");
    CHECK_THROWS_AS(FaultInjector::from_environment("nan:step=1"), Error);
  }
  {
    ScopedEnv fault("TESSERA_FAULT", nullptr);
    CHECK(FaultInjector::from_environment().empty());
  }
}

TEST_CASE("fault injection: nan fires at its step, rank and attempt only", "[io][fault]") {
  FaultInjector inj(parse_faults("nan:step=7:rank=1"), 0);
  CHECK_FALSE(inj.maybe_inject(6, 1));
  CHECK(inj.maybe_inject(7, 1));
  CHECK_FALSE(inj.maybe_inject(7, 0));
  CHECK_FALSE(inj.maybe_inject(8, 1));
  FaultInjector every_rank(parse_faults("nan:step=2"), 0);
  CHECK(every_rank.maybe_inject(2, 0));
  CHECK(every_rank.maybe_inject(2, 5));
  FaultInjector later(parse_faults("nan:step=7:rank=1"), 1);
  CHECK_FALSE(later.maybe_inject(7, 1));
}

TEST_CASE("fault injection: kill sends SIGKILL and exit uses its code, at the chosen step and rank", "[io][fault]") {
  TempDir dir;
  FaultInjector kill(parse_faults("kill:rank=1:step=12"), 0);
  auto r = run_in_child(
      [&] {
        kill.maybe_inject(11, 1);
        kill.maybe_inject(12, 0);
        kill.maybe_inject(12, 1);
        ::_exit(0);  // not reached
      },
      10, dir.file("kill.err"));
  CHECK_FALSE(r.timed_out);
  REQUIRE(WIFSIGNALED(r.status));
  CHECK(WTERMSIG(r.status) == SIGKILL);
  CHECK_THAT(r.stderr_text, Catch::Contains("rank 1 at step 12"));

  FaultInjector exit_fault(parse_faults("exit:rank=2:step=3:code=4"), 0);
  r = run_in_child([&] { exit_fault.maybe_inject(3, 2); }, 10, dir.file("exit.err"));
  CHECK(exit_code(r) == 4);

  // A restarted job (attempt 1) passes the step unharmed.
  FaultInjector restarted(parse_faults("kill:rank=1:step=12"), 1);
  r = run_in_child([&] { restarted.maybe_inject(12, 1); }, 10, dir.file("restarted.err"));
  CHECK(exit_code(r) == 0);
}

TEST_CASE("fault injection: corrupt and truncate damage the committed checkpoint's files", "[io][fault][checkpoint]") {
  TempDir dir;
  const std::string root = dir.file("ckpt");
  auto save = [&](int64_t step) {
    for (int r = 0; r < 2; ++r) {
      std::vector<float> v(100, float(step + r));
      CheckpointSnapshot s;
      CheckpointPiece p;
      p.name = "v";
      p.global_shape = {200};
      p.offset = {100 * r};
      p.shape = {100};
      p.data = v.data();
      s.add_copy(p);
      AsyncCheckpointWriter w;
      w.start(root, step, r, std::move(s));
      REQUIRE(w.wait().ok);
    }
    return commit_checkpoint(root, step, 2, "{}", 0).dir;
  };
  save(10);
  std::string dir20 = save(20);

  std::string before = test::read_bytes(checkpoint_rank_file(dir20, 1));
  FaultInjector inj(parse_faults("corrupt:step=20:rank=1,truncate:step=30"), 0);
  CHECK(inj.after_checkpoint(10, root + "/step-00000010").empty());
  auto damaged = inj.after_checkpoint(20, dir20);
  REQUIRE(damaged.size() == 1);
  CHECK(damaged[0] == checkpoint_rank_file(dir20, 1));
  std::string after = test::read_bytes(checkpoint_rank_file(dir20, 1));
  REQUIRE(after.size() == before.size());
  int differing = 0;
  for (size_t i = 0; i < before.size(); ++i) differing += before[i] != after[i];
  CHECK(differing == 1);

  std::vector<CheckpointProblem> rejected;
  auto info = find_latest_valid_checkpoint(root, &rejected);
  REQUIRE(info);
  CHECK(info->step == 10);
  REQUIRE(rejected.size() == 1);
  CHECK(rejected[0].rank == 1);

  std::string dir30 = save(30);
  size_t size0 = fs::file_size(checkpoint_rank_file(dir30, 0));
  CHECK(inj.after_checkpoint(30, dir30).size() == 2);  // every rank's file
  CHECK(fs::file_size(checkpoint_rank_file(dir30, 0)) == size0 / 2);
  rejected.clear();
  CHECK(find_latest_valid_checkpoint(root, &rejected)->step == 10);
  CHECK(rejected.size() == 3);  // 30's two truncated files and 20's flipped byte
  // Checking sizes only, the flipped byte goes unseen.
  CHECK(find_latest_valid_checkpoint(root, nullptr, CheckpointVerify::sizes)->step == 20);
}

TEST_CASE("watchdog: a hung operation writes a report, aborts and exits with code 3", "[io][watchdog]") {
  TempDir dir;
  const std::string reports = dir.file("failures"), marker = dir.file("aborted");
  const double timeout = 0.3;
  auto r = run_in_child(
      [&] {
        Watchdog wd(timeout, reports, 2, [&] { test::write_bytes(marker, "yes"); });
        wd.enter("step", 41);
        wd.enter("all_reduce grads", 41);
        std::this_thread::sleep_for(std::chrono::seconds(30));
      },
      15, dir.file("hang.err"));
  CHECK_FALSE(r.timed_out);
  CHECK(exit_code(r) == 3);
  CHECK(r.seconds < timeout + 3.0);  // detected within the timeout plus a few seconds
  CHECK(fs::exists(marker));         // the abort function ran
  CHECK_THAT(r.stderr_text, Catch::Contains("rank 2") && Catch::Contains("all_reduce grads") &&
                                Catch::Contains("step 41") && Catch::Contains("failure-rank-2.json"));
  auto found = read_failure_reports(reports);
  REQUIRE(found.size() == 1);
  const FailureReport& f = found[0];
  CHECK(f.rank == 2);
  CHECK(f.step == 41);
  CHECK(f.op == "all_reduce grads");
  CHECK(f.waited_s >= timeout);
  CHECK(f.timeout_s == timeout);
  CHECK(f.pid > 0);
  CHECK_FALSE(f.host.empty());
  REQUIRE(f.stack.size() == 2);
  CHECK_THAT(f.stack[0], Catch::StartsWith("step"));
}

TEST_CASE("watchdog: an abort that blocks does not keep the process alive", "[io][watchdog]") {
  TempDir dir;
  auto r = run_in_child(
      [&] {
        WatchdogOptions o;
        o.timeout_s = 0.2;
        o.report_dir = dir.file("failures");
        o.rank = 0;
        o.abort_grace_s = 0.3;
        o.abort_fn = [] { std::this_thread::sleep_for(std::chrono::hours(1)); };
        Watchdog wd(o);
        Watchdog::Scope s = wd.scope("barrier", 3);
        std::this_thread::sleep_for(std::chrono::seconds(30));
      },
      15, dir.file("blocked.err"));
  CHECK_FALSE(r.timed_out);
  CHECK(exit_code(r) == 3);
  CHECK(r.seconds < 3.0);
}

TEST_CASE("watchdog: a hang injected at a step is caught", "[io][watchdog][fault]") {
  TempDir dir;
  FaultInjector inj(parse_faults("hang:rank=1:step=5"), 0);
  auto r = run_in_child(
      [&] {
        Watchdog wd(0.3, dir.file("failures"), 1);
        for (int64_t step = 0; step < 10; ++step) {
          Watchdog::Scope s = wd.scope("step", step);
          inj.maybe_inject(step, 1);
        }
      },
      15, dir.file("inject.err"));
  CHECK(exit_code(r) == 3);
  auto found = read_failure_reports(dir.file("failures"));
  REQUIRE(found.size() == 1);
  CHECK(found[0].step == 5);
  CHECK(found[0].op == "step");
}

TEST_CASE("watchdog: operations that finish in time never fire", "[io][watchdog]") {
  TempDir dir;
  {
    // Steps of 25 ms under a 0.4 s timeout, 0.5 s in all: only time inside one operation counts.
    Watchdog wd(0.4, dir.file("failures"), 0);
    CHECK(wd.enabled());
    for (int64_t step = 0; step < 20; ++step) {
      Watchdog::Scope s = wd.scope("step", step);
      Watchdog::Scope c = wd.scope("all_reduce", step);
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    // A longer timeout for one operation.
    wd.enter("save checkpoint", 20, 3.0);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    wd.leave();
  }
  Watchdog disabled(0, dir.file("failures"), 0);
  CHECK_FALSE(disabled.enabled());
  disabled.enter("step", 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  disabled.leave();
  CHECK_FALSE(fs::exists(dir.file("failures")));
}

TEST_CASE("watchdog: failure reports round trip, the earliest waiting first", "[io][watchdog]") {
  TempDir dir;
  FailureReport a;
  a.rank = 3;
  a.host = "nodeB";
  a.pid = 1234;
  a.step = 12;
  a.op = "all_reduce";
  a.waited_s = 30.5;
  a.timeout_s = 30;
  a.started_unix = 1000.0;
  a.detected_unix = 1030.5;
  a.stack = {"step (step 12, 31.0 s)", "all_reduce (step 12, 30.5 s)"};
  FailureReport b = a;
  b.rank = 1;
  b.host = "nodeA";
  b.op = "forward";
  b.started_unix = 990.0;  // waited longer: the likelier cause
  write_failure_report(dir.path(), a);
  write_failure_report(dir.path(), b);
  test::write_bytes(dir.file("failure-rank-9.json"), "{ half written");
  auto found = read_failure_reports(dir.path());
  REQUIRE(found.size() == 2);
  CHECK(found[0].rank == 1);
  CHECK(found[0].host == "nodeA");
  CHECK(found[1].rank == 3);
  CHECK(found[1].op == "all_reduce");
  CHECK(found[1].pid == 1234);
  CHECK(found[1].waited_s == 30.5);
  CHECK(found[1].stack == a.stack);
  CHECK(found[1].path == failure_report_path(dir.path(), 3));
  CHECK(read_failure_reports(dir.file("missing")).empty());
}
