#include "tessera/heartbeat.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <unistd.h>

#include "io/file_util.h"
#include "io/json.h"
#include "tessera/error.h"
#include "tessera/host.h"

namespace tessera {

namespace fs = std::filesystem;

namespace {

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

json::Value to_json(const Heartbeat& b) {
  json::Value v = json::Value::object();
  v.set("rank", b.rank);
  v.set("host", b.host);
  v.set("pid", b.pid);
  v.set("attempt", b.attempt);
  v.set("beat", int64_t(b.beat));
  v.set("beat_unix", b.beat_unix);
  v.set("gap_s", b.gap_s);
  v.set("exited", b.exited);
  v.set("step", b.step);
  v.set("steps_done", b.steps_done);
  json::Value sections = json::Value::array();
  for (const OpenSection& s : b.sections) {
    json::Value o = json::Value::object();
    o.set("op", s.op);
    o.set("step", s.step);
    o.set("since_unix", s.since_unix);
    o.set("deadline_s", s.deadline_s);
    sections.push_back(std::move(o));
  }
  v.set("sections", std::move(sections));
  json::Value groups = json::Value::array();
  for (const GroupProgress& g : b.groups) {
    json::Value o = json::Value::object();
    o.set("group", g.group);
    o.set("started", int64_t(g.started));
    o.set("completed", int64_t(g.completed));
    o.set("op", g.op);
    o.set("since_unix", g.since_unix);
    groups.push_back(std::move(o));
  }
  v.set("groups", std::move(groups));
  return v;
}

}  // namespace

std::string heartbeat_path(const std::string& dir, int rank) {
  return (fs::path(dir) / ("heartbeat-rank-" + std::to_string(rank) + ".json")).string();
}

void write_heartbeat(const std::string& dir, const Heartbeat& beat) {
  const std::string path = heartbeat_path(dir, beat.rank), tmp = path + ".tmp";
  const std::string text = to_json(beat).dump() + "\n";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    f = std::fopen(tmp.c_str(), "wb");
  }
  if (!f) throw data_error("cannot write the heartbeat: " + std::string(std::strerror(errno)), tmp);
  const bool written = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (std::fclose(f) != 0 || !written || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    throw data_error("cannot write the heartbeat: " + std::string(std::strerror(err)), path);
  }
}

Heartbeat read_heartbeat(const std::string& path) {
  const json::Value v = json::parse(io::read_file(path, "heartbeat"), path);
  Heartbeat b;
  b.rank = int(v.at("rank").as_int64());
  b.host = v.at("host").as_string();
  b.pid = v.at("pid").as_int64();
  b.attempt = int(v.at("attempt").as_int64());
  b.beat = uint64_t(v.at("beat").as_int64());
  b.beat_unix = v.at("beat_unix").as_double();
  if (const json::Value* gap = v.find("gap_s")) b.gap_s = gap->as_double();
  b.exited = v.at("exited").as_bool();
  b.step = v.at("step").as_int64();
  b.steps_done = v.at("steps_done").as_int64();
  for (const json::Value& s : v.at("sections").items())
    b.sections.push_back(OpenSection{s.at("op").as_string(), s.at("step").as_int64(), s.at("since_unix").as_double(),
                                     s.at("deadline_s").as_double()});
  for (const json::Value& g : v.at("groups").items()) {
    GroupProgress p;
    p.group = g.at("group").as_string();
    p.started = uint64_t(g.at("started").as_int64());
    p.completed = uint64_t(g.at("completed").as_int64());
    p.op = g.at("op").as_string();
    p.since_unix = g.at("since_unix").as_double();
    b.groups.push_back(std::move(p));
  }
  b.path = path;
  return b;
}

std::vector<Heartbeat> read_heartbeats(const std::string& dir) {
  std::vector<Heartbeat> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind("heartbeat-rank-", 0) != 0 || name.size() < 5 || name.substr(name.size() - 5) != ".json") continue;
    try {
      out.push_back(read_heartbeat(it->path().string()));
    } catch (const Error&) {
    }
  }
  std::sort(out.begin(), out.end(), [](const Heartbeat& a, const Heartbeat& b) { return a.rank < b.rank; });
  return out;
}

HeartbeatWriter::HeartbeatWriter(std::string dir, int rank, int attempt, double interval_s,
                                 std::function<Heartbeat()> sample)
    : dir_(std::move(dir)), rank_(rank), attempt_(attempt), interval_s_(interval_s),
      enabled_(interval_s > 0 && !dir_.empty()), sample_(std::move(sample)), host_(host_identity()) {
  if (!enabled_) return;
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) throw config_error("cannot create the heartbeat directory: " + ec.message(), "check that it is writable", dir_);
  beat(false);  // a first beat before any step, so peers can tell a slow start from a dead rank
  thread_ = std::thread([this] { run(); });
}

HeartbeatWriter::~HeartbeatWriter() {
  if (!enabled_) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
  try {
    beat(true);
  } catch (...) {
  }
}

void HeartbeatWriter::beat(bool exited) {
  Heartbeat b = sample_ ? sample_() : Heartbeat{};
  b.rank = rank_;
  b.host = host_;
  b.pid = int64_t(::getpid());
  b.attempt = attempt_;
  b.beat = ++count_;
  b.beat_unix = unix_now();
  const double now = steady_seconds();
  b.gap_s = previous_ > 0 ? now - previous_ : 0;
  previous_ = now;
  b.exited = exited;
  write_heartbeat(dir_, b);
}

void HeartbeatWriter::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    wake_.wait_for(lock, std::chrono::duration<double>(interval_s_));
    if (stop_) break;
    lock.unlock();
    try {
      beat(false);
    } catch (const Error& e) {
      // A full or unreachable directory must not end the run: peers may then call it dead, which
      // is what it looks like from outside.
      std::fprintf(stderr, "tessera: heartbeat: %s\n", e.what());
    }
    lock.lock();
  }
}

HeartbeatWatch::HeartbeatWatch(std::string dir, int attempt) : dir_(std::move(dir)), attempt_(attempt) {}

void HeartbeatWatch::look(int rank, double now) {
  auto [it, added] = seen_.try_emplace(rank, Seen{0, now});
  Seen& seen = it->second;
  try {
    Heartbeat b = read_heartbeat(heartbeat_path(dir_, rank));
    if (b.attempt != attempt_) return;
    if (b.beat != seen.beat) {
      seen.beat = b.beat;
      seen.changed = now;
    }
    latest_[rank] = std::move(b);
  } catch (const Error&) {
    // Not written yet, or between a write and its rename on a file system that shows that.
  }
}

std::vector<StalePeer> HeartbeatWatch::stale(const std::vector<int>& ranks, double timeout_s) {
  const double now = steady_seconds();
  std::vector<int> watched = ranks;
  if (watched.empty())
    for (const Heartbeat& b : read_heartbeats(dir_))
      if (b.attempt == attempt_) watched.push_back(b.rank);
  for (int r : watched) look(r, now);
  std::vector<StalePeer> out;
  for (int r : watched) {
    const Seen& seen = seen_.at(r);
    auto latest = latest_.find(r);
    if (latest != latest_.end() && latest->second.exited) continue;
    if (now - seen.changed < timeout_s) continue;
    StalePeer p;
    p.rank = r;
    p.silent_s = now - seen.changed;
    if (latest != latest_.end()) {
      p.host = latest->second.host;
      p.step = latest->second.step;
      if (!latest->second.sections.empty()) p.section = latest->second.sections.back().op;
    }
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace tessera
