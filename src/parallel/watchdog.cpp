#include "tessera/watchdog.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>

#include <unistd.h>

#include "io/file_util.h"
#include "io/json.h"
#include "tessera/error.h"

namespace tessera {

namespace fs = std::filesystem;

namespace {

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

std::string utc_time(double unix_s) {
  std::time_t t = std::time_t(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string seconds_str(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", s);
  return buf;
}

}  // namespace

std::string failure_report_path(const std::string& dir, int rank) {
  return (fs::path(dir) / ("failure-rank-" + std::to_string(rank) + ".json")).string();
}

void write_failure_report(const std::string& dir, const FailureReport& r) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw config_error("cannot create the failure report directory: " + ec.message(), "check that it is writable", dir);
  json::Value v = json::Value::object();
  v.set("rank", r.rank);
  v.set("host", r.host);
  v.set("pid", r.pid);
  v.set("step", r.step);
  v.set("op", r.op);
  v.set("waited_s", r.waited_s);
  v.set("timeout_s", r.timeout_s);
  v.set("started_unix", r.started_unix);
  v.set("detected_unix", r.detected_unix);
  v.set("time", utc_time(r.detected_unix));
  json::Value stack = json::Value::array();
  for (const auto& s : r.stack) stack.push_back(s);
  v.set("stack", std::move(stack));
  io::AtomicFileWriter w(failure_report_path(dir, r.rank), "failure report");
  w.write(v.dump(1));
  w.write("\n");
  w.commit();
}

std::vector<FailureReport> read_failure_reports(const std::string& dir) {
  std::vector<FailureReport> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.rfind("failure-rank-", 0) != 0 || name.size() < 5 || name.substr(name.size() - 5) != ".json") continue;
    try {
      std::string path = it->path().string();
      json::Value v = json::parse(io::read_file(path, "failure report"), path);
      FailureReport r;
      r.rank = int(v.at("rank").as_int64());
      r.host = v.at("host").as_string();
      if (const auto* p = v.find("pid")) r.pid = p->as_int64();
      if (const auto* p = v.find("step")) r.step = p->as_int64();
      if (const auto* p = v.find("op")) r.op = p->as_string();
      if (const auto* p = v.find("waited_s")) r.waited_s = p->as_double();
      if (const auto* p = v.find("timeout_s")) r.timeout_s = p->as_double();
      if (const auto* p = v.find("started_unix")) r.started_unix = p->as_double();
      if (const auto* p = v.find("detected_unix")) r.detected_unix = p->as_double();
      if (const auto* p = v.find("stack"))
        for (const auto& s : p->items()) r.stack.push_back(s.as_string());
      r.path = path;
      out.push_back(std::move(r));
    } catch (const Error&) {
      // Half-written or foreign files say nothing about the failure.
    }
  }
  std::sort(out.begin(), out.end(), [](const FailureReport& a, const FailureReport& b) {
    return a.started_unix != b.started_unix ? a.started_unix < b.started_unix : a.rank < b.rank;
  });
  return out;
}

Watchdog::Watchdog(WatchdogOptions options) : options_(std::move(options)) {
  if (enabled()) thread_ = std::thread([this] { run(); });
}

Watchdog::Watchdog(double timeout_s, std::string report_dir, int rank, std::function<void()> abort_fn)
    : Watchdog(WatchdogOptions{timeout_s, std::move(report_dir), rank, std::move(abort_fn)}) {}

Watchdog::~Watchdog() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void Watchdog::enter(const std::string& op, int64_t step, double timeout_s) {
  if (!enabled()) return;
  Entry e{op, step, timeout_s > 0 ? timeout_s : options_.timeout_s, steady_seconds(), unix_seconds()};
  std::lock_guard<std::mutex> lock(mutex_);
  stack_.push_back(std::move(e));
}

void Watchdog::leave() {
  if (!enabled()) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!stack_.empty()) stack_.pop_back();
}

void Watchdog::run() {
  // Checks often enough that a hang is caught within the timeout plus at most a second.
  const double poll = std::clamp(options_.timeout_s / 10, 0.01, 1.0);
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    wake_.wait_for(lock, std::chrono::duration<double>(poll));
    if (stop_) break;
    // The innermost expired operation is the most precise answer to "where is it stuck".
    double now = steady_seconds();
    for (size_t i = stack_.size(); i-- > 0;) {
      if (now - stack_[i].entered > stack_[i].timeout_s) {
        Entry expired = stack_[i];
        std::vector<Entry> stack = stack_;
        lock.unlock();
        fire(expired, std::move(stack), now);
      }
    }
  }
}

void Watchdog::fire(const Entry& expired, std::vector<Entry> stack, double now) {
  FailureReport r;
  r.rank = options_.rank;
  r.host = host_name();
  r.pid = int64_t(::getpid());
  r.step = expired.step;
  r.op = expired.op;
  r.waited_s = now - expired.entered;
  r.timeout_s = expired.timeout_s;
  r.started_unix = expired.entered_unix;
  r.detected_unix = unix_seconds();
  for (const auto& e : stack) r.stack.push_back(e.op + " (step " + std::to_string(e.step) + ", " + seconds_str(now - e.entered) + " s)");

  std::string line = "tessera: watchdog: rank " + std::to_string(r.rank) + " on " + r.host + " has been in " + r.op +
                     " at step " + std::to_string(r.step) + " for " + seconds_str(r.waited_s) + " s (timeout " +
                     seconds_str(r.timeout_s) + " s): treating it as a hang and exiting with code " +
                     std::to_string(options_.exit_code);
  if (!options_.report_dir.empty()) {
    try {
      write_failure_report(options_.report_dir, r);
      line += "; report: " + failure_report_path(options_.report_dir, r.rank);
    } catch (const std::exception& e) {
      line += std::string("; could not write the failure report: ") + e.what();
    }
  }
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);

  if (options_.abort_fn) {
    // The abort may itself block on a dead peer: give it a grace period, then exit regardless.
    auto finished = std::make_shared<std::atomic<bool>>(false);
    std::thread([fn = options_.abort_fn, finished] {
      try {
        fn();
      } catch (...) {
      }
      finished->store(true);
    }).detach();
    double deadline = steady_seconds() + options_.abort_grace_s;
    while (!finished->load() && steady_seconds() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::fflush(nullptr);
  ::_exit(options_.exit_code);
}

}  // namespace tessera
