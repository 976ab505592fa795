#include "tessera/fault_injection.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include <sys/stat.h>
#include <unistd.h>

#include "tessera/checkpoint.h"
#include "tessera/error.h"
#include "tessera/host.h"

namespace tessera {

namespace fs = std::filesystem;

namespace {

const char* kGrammar =
    "write faults as kind:key=value:..., separated by ',' (kinds: kill, hang, nan, exit, corrupt, truncate, node; keys: "
    "step (required), rank (default every rank), attempt (default 0), code (exit only), host (node only, required)), "
    "e.g. kill:rank=1:step=12 or node:host=node3:step=40";

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\n\r"), e = s.find_last_not_of(" \t\n\r");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::vector<std::string> split(const std::string& s, const std::string& separators) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (separators.find(c) != std::string::npos) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

int64_t parse_count(const std::string& item, const std::string& key, const std::string& value, int64_t max) {
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || errno == ERANGE || v < 0 || v > max)
    throw config_error("bad fault specification '" + item + "': " + key + "=" + value + " is not an integer in 0.." +
                           std::to_string(max),
                       kGrammar);
  return v;
}

Fault parse_one(const std::string& item) {
  std::vector<std::string> parts = split(item, ":");
  Fault f;
  std::string kind = trim(parts[0]);
  if (kind == "kill") f.kind = FaultKind::kill;
  else if (kind == "hang") f.kind = FaultKind::hang;
  else if (kind == "nan") f.kind = FaultKind::nan;
  else if (kind == "exit") f.kind = FaultKind::exit;
  else if (kind == "corrupt") f.kind = FaultKind::corrupt;
  else if (kind == "truncate") f.kind = FaultKind::truncate;
  else if (kind == "node") f.kind = FaultKind::node;
  else throw config_error("bad fault specification '" + item + "': unknown kind '" + kind + "'", kGrammar);
  std::vector<std::string> seen;
  for (size_t i = 1; i < parts.size(); ++i) {
    std::string part = trim(parts[i]);
    size_t eq = part.find('=');
    if (eq == std::string::npos)
      throw config_error("bad fault specification '" + item + "': '" + part + "' is not key=value", kGrammar);
    std::string key = trim(part.substr(0, eq)), value = trim(part.substr(eq + 1));
    if (std::find(seen.begin(), seen.end(), key) != seen.end())
      throw config_error("bad fault specification '" + item + "': " + key + " is given twice", kGrammar);
    seen.push_back(key);
    if (key == "rank") f.rank = int(parse_count(item, key, value, INT32_MAX));
    else if (key == "step") f.step = parse_count(item, key, value, INT64_MAX);
    else if (key == "attempt") f.attempt = int(parse_count(item, key, value, INT32_MAX));
    else if (key == "code" && f.kind == FaultKind::exit) {
      f.exit_code = int(parse_count(item, key, value, 255));
      if (f.exit_code == 0)
        throw config_error("bad fault specification '" + item + "': an exit fault needs a non-zero code", kGrammar);
    } else if (key == "host" && f.kind == FaultKind::node && !value.empty()) {
      f.host = value;
    } else {
      throw config_error("bad fault specification '" + item + "': unknown key '" + key + "' for " + kind, kGrammar);
    }
  }
  if (f.step < 0) throw config_error("bad fault specification '" + item + "': step is required", kGrammar);
  if (f.kind == FaultKind::node && f.host.empty())
    throw config_error("bad fault specification '" + item + "': a node fault needs host=", kGrammar);
  return f;
}

void announce(const char* what, int rank, int64_t step) {
  std::fprintf(stderr, "tessera: fault injection: %s rank %d at step %lld\n", what, rank, (long long)step);
  std::fflush(stderr);
}

}  // namespace

const char* fault_kind_name(FaultKind k) {
  switch (k) {
    case FaultKind::kill: return "kill";
    case FaultKind::hang: return "hang";
    case FaultKind::nan: return "nan";
    case FaultKind::exit: return "exit";
    case FaultKind::corrupt: return "corrupt";
    case FaultKind::truncate: return "truncate";
    case FaultKind::node: return "node";
  }
  return "?";
}

std::string describe(const Fault& f) {
  std::string s = fault_kind_name(f.kind);
  if (f.rank >= 0) s += ":rank=" + std::to_string(f.rank);
  if (!f.host.empty()) s += ":host=" + f.host;
  s += ":step=" + std::to_string(f.step) + ":attempt=" + std::to_string(f.attempt);
  if (f.kind == FaultKind::exit) s += ":code=" + std::to_string(f.exit_code);
  return s;
}

std::vector<Fault> parse_faults(const std::string& spec) {
  std::vector<Fault> faults;
  for (const std::string& raw : split(spec, ",;")) {
    std::string item = trim(raw);
    if (!item.empty()) faults.push_back(parse_one(item));
  }
  return faults;
}

void corrupt_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "r+b");
  if (!f) throw config_error("cannot open the file to corrupt: " + std::string(std::strerror(errno)), "", path);
  std::fseek(f, 0, SEEK_END);
  long size = std::ftell(f);
  if (size <= 0) {
    std::fclose(f);
    throw config_error("cannot corrupt an empty file", "", path);
  }
  std::fseek(f, size / 2, SEEK_SET);
  int byte = std::fgetc(f);
  std::fseek(f, size / 2, SEEK_SET);
  std::fputc((~byte) & 0xff, f);
  std::fflush(f);
  ::fsync(::fileno(f));
  std::fclose(f);
}

void truncate_file(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || ::truncate(path.c_str(), st.st_size / 2) != 0)
    throw config_error("cannot truncate the file: " + std::string(std::strerror(errno)), "", path);
}

FaultInjector::FaultInjector(std::vector<Fault> faults, int attempt) : faults_(std::move(faults)), attempt_(attempt) {}

FaultInjector FaultInjector::from_environment(const std::string& flag_value) {
  std::string spec = flag_value;
  if (spec.empty())
    if (const char* env = std::getenv("TESSERA_FAULT")) spec = env;
  int attempt = 0;
  if (const char* env = std::getenv("TESSERA_RESTART_COUNT"); env && *env)
    attempt = int(parse_count(std::string("TESSERA_RESTART_COUNT=") + env, "TESSERA_RESTART_COUNT", env, INT32_MAX));
  return FaultInjector(parse_faults(spec), attempt);
}

bool FaultInjector::applies(const Fault& f, int64_t step, int rank) const {
  return f.step == step && f.attempt == attempt_ && (f.rank < 0 || f.rank == rank) &&
         (f.kind != FaultKind::node || f.host == host_identity());
}

bool FaultInjector::maybe_inject(int64_t step, int rank) const {
  bool nan = false;
  for (const Fault& f : faults_) {
    if (!applies(f, step, rank)) continue;
    switch (f.kind) {
      case FaultKind::kill:
        announce("killing (SIGKILL)", rank, step);
        ::kill(::getpid(), SIGKILL);
        ::_exit(137);  // not reached
      case FaultKind::hang:
        announce("hanging", rank, step);
        for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
      case FaultKind::exit:
        announce(("exiting with code " + std::to_string(f.exit_code) + ":").c_str(), rank, step);
        std::fflush(nullptr);
        ::_exit(f.exit_code);
      case FaultKind::node: {
        announce(("losing node " + f.host + " (its local directory and its ranks):").c_str(), rank, step);
        std::error_code ec;
        if (!node_local_dir_.empty()) fs::remove_all(node_local_dir_, ec);
        ::kill(::getpid(), SIGKILL);
        ::_exit(137);  // not reached
      }
      case FaultKind::nan:
        announce("making the loss NaN on", rank, step);
        nan = true;
        break;
      case FaultKind::corrupt:
      case FaultKind::truncate:
        break;
    }
  }
  return nan;
}

std::vector<std::string> FaultInjector::after_checkpoint(int64_t step, const std::string& dir) const {
  std::vector<std::string> damaged;
  for (const Fault& f : faults_) {
    if ((f.kind != FaultKind::corrupt && f.kind != FaultKind::truncate) || f.step != step || f.attempt != attempt_) continue;
    std::vector<std::string> files;
    if (f.rank >= 0) {
      files.push_back(checkpoint_rank_file(dir, f.rank));
    } else {
      std::error_code ec;
      for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        std::string name = it->path().filename().string();
        if (name.rfind("rank-", 0) == 0 && name.size() > 4 && name.substr(name.size() - 4) == ".bin")
          files.push_back(it->path().string());
      }
      std::sort(files.begin(), files.end());
    }
    for (const auto& path : files) {
      std::error_code ec;
      // A rank that holds only replicas writes an empty file: nothing there to damage.
      if (!fs::is_regular_file(path, ec) || fs::file_size(path, ec) == 0) continue;
      if (f.kind == FaultKind::corrupt) corrupt_file(path);
      else truncate_file(path);
      std::fprintf(stderr, "tessera: fault injection: %s %s (checkpoint of step %lld)\n",
                   f.kind == FaultKind::corrupt ? "corrupted" : "truncated", path.c_str(), (long long)step);
      damaged.push_back(path);
    }
  }
  return damaged;
}

}  // namespace tessera
