#include "tessera/failure_report.h"

#include <algorithm>
#include <ctime>
#include <filesystem>

#include "io/file_util.h"
#include "io/json.h"
#include "tessera/error.h"

namespace tessera {

namespace fs = std::filesystem;

namespace {

std::string utc_time(double unix_s) {
  std::time_t t = std::time_t(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

json::Value ranks_json(const std::vector<int>& ranks) {
  json::Value a = json::Value::array();
  for (int r : ranks) a.push_back(r);
  return a;
}

json::Value record_json(const CommRecord& r) {
  json::Value v = json::Value::object();
  v.set("seq", int64_t(r.seq));
  v.set("op", r.op);
  v.set("group", r.group);
  v.set("peers", ranks_json(r.peers));
  v.set("bytes", int64_t(r.bytes));
  v.set("start_unix", r.start_unix);
  if (r.waiting()) v.set("end_unix", nullptr);
  else v.set("end_unix", r.end_unix);
  return v;
}

CommRecord record_from_json(const json::Value& v) {
  CommRecord r;
  r.seq = uint64_t(v.at("seq").as_int64());
  r.op = v.at("op").as_string();
  r.group = v.at("group").as_string();
  for (const auto& p : v.at("peers").items()) r.peers.push_back(int(p.as_int64()));
  r.bytes = uint64_t(v.at("bytes").as_int64());
  r.start_unix = v.at("start_unix").as_double();
  const json::Value& end = v.at("end_unix");
  r.end_unix = end.is_null() ? 0 : end.as_double();
  return r;
}

template <typename T>
void read_optional(const json::Value& v, const char* key, T* out);
template <>
void read_optional(const json::Value& v, const char* key, std::string* out) {
  if (const auto* p = v.find(key)) *out = p->as_string();
}
template <>
void read_optional(const json::Value& v, const char* key, double* out) {
  if (const auto* p = v.find(key)) *out = p->as_double();
}
template <>
void read_optional(const json::Value& v, const char* key, int64_t* out) {
  if (const auto* p = v.find(key)) *out = p->as_int64();
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
  v.set("attempt", r.attempt);
  v.set("step", r.step);
  v.set("op", r.op);
  v.set("reason", r.reason);
  v.set("waited_s", r.waited_s);
  v.set("timeout_s", r.timeout_s);
  v.set("deadline", r.deadline);
  v.set("started_unix", r.started_unix);
  v.set("detected_unix", r.detected_unix);
  v.set("stopped_s", r.stopped_s);
  v.set("time", utc_time(r.detected_unix));
  json::Value stack = json::Value::array();
  for (const auto& s : r.stack) stack.push_back(s);
  v.set("stack", std::move(stack));
  json::Value peers = json::Value::array();
  for (const StalePeer& p : r.stale_peers) {
    json::Value pv = json::Value::object();
    pv.set("rank", p.rank);
    pv.set("host", p.host);
    pv.set("silent_s", p.silent_s);
    pv.set("step", p.step);
    pv.set("section", p.section);
    peers.push_back(std::move(pv));
  }
  v.set("stale_peers", std::move(peers));
  json::Value flight = json::Value::array();
  for (const CommRecord& c : r.flight) flight.push_back(record_json(c));
  v.set("flight_recorder", std::move(flight));
  io::AtomicFileWriter w(failure_report_path(dir, r.rank), "failure report");
  w.write(v.dump(1));
  w.write("\n");
  w.commit();
}

FailureReport read_failure_report(const std::string& path) {
  json::Value v = json::parse(io::read_file(path, "failure report"), path);
  FailureReport r;
  r.rank = int(v.at("rank").as_int64());
  r.host = v.at("host").as_string();
  read_optional(v, "pid", &r.pid);
  int64_t attempt = 0;
  read_optional(v, "attempt", &attempt);
  r.attempt = int(attempt);
  read_optional(v, "step", &r.step);
  read_optional(v, "op", &r.op);
  read_optional(v, "reason", &r.reason);
  read_optional(v, "waited_s", &r.waited_s);
  read_optional(v, "timeout_s", &r.timeout_s);
  read_optional(v, "deadline", &r.deadline);
  read_optional(v, "started_unix", &r.started_unix);
  read_optional(v, "detected_unix", &r.detected_unix);
  read_optional(v, "stopped_s", &r.stopped_s);
  if (const auto* p = v.find("stack"))
    for (const auto& s : p->items()) r.stack.push_back(s.as_string());
  if (const auto* p = v.find("stale_peers"))
    for (const auto& s : p->items()) {
      StalePeer peer;
      peer.rank = int(s.at("rank").as_int64());
      read_optional(s, "host", &peer.host);
      read_optional(s, "silent_s", &peer.silent_s);
      read_optional(s, "step", &peer.step);
      read_optional(s, "section", &peer.section);
      r.stale_peers.push_back(std::move(peer));
    }
  if (const auto* p = v.find("flight_recorder"))
    for (const auto& c : p->items()) r.flight.push_back(record_from_json(c));
  r.path = path;
  return r;
}

std::vector<FailureReport> read_failure_reports(const std::string& dir) {
  std::vector<FailureReport> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.rfind("failure-rank-", 0) != 0 || name.size() < 5 || name.substr(name.size() - 5) != ".json") continue;
    try {
      out.push_back(read_failure_report(it->path().string()));
    } catch (const Error&) {
      // Half-written or foreign files say nothing about the failure.
    }
  }
  std::sort(out.begin(), out.end(), [](const FailureReport& a, const FailureReport& b) {
    return a.started_unix != b.started_unix ? a.started_unix < b.started_unix : a.rank < b.rank;
  });
  return out;
}

}  // namespace tessera
