// tessera-launch: runs a job under its real launcher (mpirun, srun, or any command) and relaunches it
// when it fails, up to --max-restarts times, logging one line per restart: why, the exit code, the
// failed rank and host when known, and the time lost.
//
//   tessera-launch --max-restarts 3 --failure-dir ckpt/failures -- mpirun -np 8 tessera-train ...
//   (in a Slurm batch script)  tessera-launch --max-restarts 3 -- srun tessera-train ...
//
// Exit 0 is done. Exit codes 1 (bad arguments or config), 2 (bad data or checkpoint) and 4 (a
// non-finite loss with --on-nan stop) are not restarted, since the same command would fail the
// same way (--no-restart-codes changes the list).
// Anything else (3: a hang or a peer failure, a rank killed by a signal) is restarted; the job
// resumes from its latest checkpoint. The job sees TESSERA_RESTART_COUNT (0 on the first launch),
// TESSERA_FAILURE_DIR (where ranks write failure reports) and TESSERA_RUN_ID (one ID for every
// attempt, which the local checkpoint tier's shards carry: the Slurm job's when there is one, else a
// new one, unless already set); with Open MPI across nodes forward them with
// `-x TESSERA_RESTART_COUNT -x TESSERA_FAILURE_DIR -x TESSERA_RUN_ID`.
//
// The failed rank comes from mpirun's or srun's messages about a rank that died, or else from the
// failure reports (a peer whose heartbeat stopped, else the rank that entered its section first);
// its host is the one its heartbeat names. --exclude-failed-hosts leaves that host out of the next
// launch: a rewritten copy of mpirun's --hostfile, or srun --exclude; the job also sees the excluded
// hosts in TESSERA_EXCLUDED_HOSTS.
//
// While an attempt runs, the launcher watches the ranks' heartbeats in the failure directory and
// the clock (attempt_watch.h): a rank silent for --heartbeat-timeout, no finished step for
// --stall-timeout, or an attempt longer than --attempt-timeout ends the attempt as a hang, saying
// which limit applied; the job is then restarted like any failure.
//
// Preemption: a SIGTERM or SIGINT to the launcher asks the job to save and stop (mpirun gets
// SIGUSR1, which it forwards to the ranks, where SIGTERM would have them killed a second later;
// other commands get the signal itself); a second one is passed on as is. A job that exits with
// code 5 (preempted, its state saved) is not a failure: the launcher exits with 5 too, for the
// scheduler to requeue it, after running --requeue-command if given.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/attempt_watch.h"
#include "common/flags.h"
#include "common/output_checks.h"
#include "common/run_id.h"
#include "tessera/error.h"
#include "tessera/failure_report.h"
#include "tessera/heartbeat.h"
#include "tessera/metrics.h"

namespace {

namespace fs = std::filesystem;
using namespace tessera;
using program::AttemptWatch;
using program::HangVerdict;
using program::LaunchLimits;

constexpr int kExitPreempted = 5;

// The signal handler's only way to reach the job: program-level flags.
volatile sig_atomic_t g_child_pid = 0;
volatile sig_atomic_t g_stop_signal = 0;
volatile sig_atomic_t g_stop_count = 0;
volatile sig_atomic_t g_child_is_mpirun = 0;

// The first SIGINT or SIGTERM asks the job to save and stop; mpirun only forwards SIGUSR1 to its
// ranks (SIGTERM makes it kill them a second later). Anything else passes through.
void forward_signal(int sig) {
  const bool stop = sig == SIGINT || sig == SIGTERM;
  if (stop) ++g_stop_count;
  if (stop || !g_stop_signal) g_stop_signal = sig;
  int sent = sig;
  if (stop && g_stop_count == 1 && g_child_is_mpirun) sent = SIGUSR1;
  pid_t pid = pid_t(g_child_pid);
  if (pid > 0) ::kill(pid, sent);
}

bool is_mpirun(const std::string& program) {
  const std::string name = fs::path(program).filename().string();
  return name == "mpirun" || name == "mpiexec" || name == "orterun" || name == "prterun";
}

void install_signal_forwarding() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = forward_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: poll and sleep wake up
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2}) sigaction(sig, &sa, nullptr);
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string fixed1(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", v);
  return buf;
}

void say(const std::string& line) {
  std::fprintf(stderr, "tessera-launch: %s\n", line.c_str());
  std::fflush(stderr);
}

void write_all(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;  // our stderr is gone: keep the job running regardless
    data += w;
    n -= size_t(w);
  }
}

// srun names a task's fatal signal in words ("task 3: Killed").
int signal_from_text(const std::string& text) {
  for (int sig : {SIGKILL, SIGTERM, SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL})
    if (const char* name = ::strsignal(sig); name && text.find(name) != std::string::npos) return sig;
  return 0;
}

// What the job's launcher printed about the failure.
struct Clues {
  int rank = -1;
  std::string host;
  bool died = false;  // a rank was killed by a signal: the surest cause
  int signal = 0;     // which, when the launcher said
  bool slurm_seen = false;
  bool hang_seen = false;  // a rank's watchdog declared a hang: kills reported after it are its teardown
  std::string line;

  void scan(const std::string& text) {
    static const std::regex ompi_signal(R"(process rank ([0-9]+) with PID [0-9]+ on node (\S+) exited on signal ([0-9]+))");
    static const std::regex slurm_task(R"(srun: error: ([^:\s]+): tasks? ([0-9]+)[^:]*: (.*))");
    static const std::regex mpi_abort(R"(MPI_ABORT was invoked on rank ([0-9]+))");
    static const std::regex ompi_process(R"(Process name: \[\[[0-9]+,[0-9]+\],([0-9]+)\])");
    static const std::regex watchdog(R"(tessera: watchdog: rank ([0-9]+) on (\S+) )");
    if (died) return;
    std::smatch m;
    if (std::regex_search(text, m, watchdog)) {
      hang_seen = true;
      if (rank < 0) set(std::stoi(m[1]), m[2], false, text);
    } else if (std::regex_search(text, m, ompi_signal)) {
      if (hang_seen) return;  // a rank's watchdog fired first: this kill is the teardown its abort started
      set(std::stoi(m[1]), m[2], true, text);
      signal = std::stoi(m[3]);
    } else if (std::regex_search(text, m, slurm_task)) {
      // srun reports every task; the first report is the cause, and tasks killed after another
      // one exited with an error, or after a rank's watchdog fired, are the teardown's victims.
      if (slurm_seen || hang_seen) return;
      slurm_seen = true;
      bool exited = m[3].str().find("Exited with exit code") != std::string::npos;
      set(std::stoi(m[2]), m[1], !exited, text);
      if (!exited) signal = signal_from_text(m[3]);
    } else if (rank < 0 && (std::regex_search(text, m, mpi_abort) || std::regex_search(text, m, ompi_process))) {
      set(std::stoi(m[1]), "", false, text);
    }
  }

 private:
  void set(int r, const std::string& h, bool d, const std::string& text) {
    if (rank >= 0 && !d) return;
    rank = r;
    host = h;
    died = d;
    line = text;
  }
};

struct AttemptResult {
  int exit_code = 0;  // the launcher's view: the exit status, or 128 + signal
  int signal = 0;
  bool exec_failed = false;
  std::string exec_error;
  double started_unix = 0, ended_unix = 0;
  Clues clues;
  HangVerdict hang;  // the launcher ended the attempt itself
};

// Ends the job after a hang: SIGTERM (mpirun and srun tear their ranks down), SIGKILL if it is
// still there after a grace period.
void end_hung_job(pid_t pid, int* status, bool* exited) {
  ::kill(pid, SIGTERM);
  for (int i = 0; i < 300 && !*exited; ++i) {  // 15 s
    if (::waitpid(pid, status, WNOHANG) == pid) *exited = true;
    else std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (!*exited) ::kill(pid, SIGKILL);
}

// Runs the command, passing its stderr through while reading it for clues about a failed rank,
// and ending it when `watch` finds it hung.
AttemptResult run_attempt(const std::vector<std::string>& command, AttemptWatch* watch) {
  AttemptResult result;
  result.started_unix = now_seconds();
  int err_pipe[2], exec_pipe[2];
  if (::pipe(err_pipe) != 0 || ::pipe2(exec_pipe, O_CLOEXEC) != 0)
    throw config_error("cannot create a pipe: " + std::string(std::strerror(errno)));
  std::vector<char*> argv;
  for (const auto& a : command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  pid_t pid = ::fork();
  if (pid < 0) throw config_error("cannot start the job: fork failed: " + std::string(std::strerror(errno)));
  if (pid == 0) {
    ::dup2(err_pipe[1], 2);
    ::close(err_pipe[0]);
    ::close(err_pipe[1]);
    ::close(exec_pipe[0]);
    struct sigaction sa;
    std::memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2}) sigaction(sig, &sa, nullptr);
    ::execvp(argv[0], argv.data());
    int err = errno;
    ssize_t ignored = ::write(exec_pipe[1], &err, sizeof(err));
    (void)ignored;
    ::_exit(127);
  }
  g_child_pid = pid;
  ::close(err_pipe[1]);
  ::close(exec_pipe[1]);
  int exec_errno = 0;
  ssize_t got;
  do {
    got = ::read(exec_pipe[0], &exec_errno, sizeof(exec_errno));
  } while (got < 0 && errno == EINTR);
  ::close(exec_pipe[0]);
  if (got == ssize_t(sizeof(exec_errno))) {
    result.exec_failed = true;
    result.exec_error = std::strerror(exec_errno);
  }

  std::string pending;
  auto consume = [&](const char* data, size_t n) {
    write_all(2, data, n);
    pending.append(data, n);
    size_t start = 0;
    for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1)
      result.clues.scan(pending.substr(start, nl - start));
    pending.erase(0, start);
    if (pending.size() > (1u << 16)) pending.clear();
  };
  char buf[8192];
  int status = 0;
  bool exited = false, eof = false;
  double drain_until = 0, next_check = now_seconds() + 1.0;
  while (!eof) {
    if (!exited) {
      pid_t w = ::waitpid(pid, &status, WNOHANG);
      if (w == pid) {
        exited = true;
        drain_until = now_seconds() + 1.0;  // what is still in the pipe, without waiting on stray holders of it
      } else if (watch && result.hang.limit.empty() && !g_stop_signal && now_seconds() >= next_check) {
        next_check = now_seconds() + 1.0;
        result.hang = watch->check();
        if (!result.hang.limit.empty()) {
          say("ending the attempt as hung: " + result.hang.message);
          end_hung_job(pid, &status, &exited);
          drain_until = now_seconds() + 1.0;
        }
      }
    } else if (now_seconds() > drain_until) {
      break;
    }
    struct pollfd pfd{err_pipe[0], POLLIN, 0};
    int rc = ::poll(&pfd, 1, exited ? 50 : 200);
    if (rc < 0 && errno == EINTR) continue;
    if (rc > 0) {
      ssize_t n = ::read(err_pipe[0], buf, sizeof(buf));
      if (n > 0) consume(buf, size_t(n));
      else if (n == 0) eof = true;
    }
  }
  ::close(err_pipe[0]);
  if (!pending.empty()) result.clues.scan(pending);
  while (!exited) {
    pid_t w = ::waitpid(pid, &status, 0);
    if (w == pid) exited = true;
    else if (w < 0 && errno != EINTR) break;
  }
  g_child_pid = 0;
  result.ended_unix = now_seconds();
  if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
    result.exit_code = 128 + result.signal;
  } else {
    result.exit_code = WEXITSTATUS(status);
  }
  return result;
}

std::string signal_name(int sig) {
  const char* s = ::strsignal(sig);
  return "signal " + std::to_string(sig) + (s ? std::string(" (") + s + ")" : "");
}

std::string describe_exit(const AttemptResult& r) {
  if (r.signal) return "killed by " + signal_name(r.signal);
  switch (r.exit_code) {
    case 0: return "finished";
    case 1: return "bad arguments or config";
    case 2: return "bad data or checkpoint";
    case 3: return "hang or peer failure detected";
    case 4: return "non-finite loss";
    case kExitPreempted: return "preempted, its state saved";
    default:
      if (r.exit_code > 128 && r.exit_code < 128 + 65) return "a process was killed by " + signal_name(r.exit_code - 128);
      return "abnormal exit";
  }
}

std::set<int> parse_code_list(const std::string& text) {
  std::set<int> codes;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    char* end = nullptr;
    long v = std::strtol(item.c_str(), &end, 10);
    if (*end != '\0' || v < 1 || v > 255)
      throw config_error("--no-restart-codes: '" + item + "' is not an exit code 1..255", "give a comma-separated list such as 1,2");
    codes.insert(int(v));
  }
  return codes;
}

// Where the command names its hostfile: the index of the value (or of the --hostfile=VALUE word).
int hostfile_index(const std::vector<std::string>& command, bool* joined) {
  for (size_t i = 1; i < command.size(); ++i) {
    const std::string& a = command[i];
    for (const char* flag : {"--hostfile", "-hostfile", "--machinefile", "-machinefile"}) {
      if (a == flag && i + 1 < command.size()) {
        *joined = false;
        return int(i + 1);
      }
      if (a.rfind(std::string(flag) + "=", 0) == 0) {
        *joined = true;
        return int(i);
      }
    }
  }
  return -1;
}

// Copies a hostfile without the excluded hosts; returns how many host lines remain.
int rewrite_hostfile(const std::string& from, const std::string& to, const std::set<std::string>& excluded) {
  std::error_code ec;
  if (!fs::is_regular_file(from, ec))  // a FIFO would block the read
    throw config_error("the hostfile is not a regular file", "give mpirun --hostfile a file", from);
  std::ifstream in(from);
  if (!in) throw config_error("cannot read the hostfile", "", from);
  std::ostringstream out;
  int remaining = 0;
  std::string line;
  while (std::getline(in, line)) {
    std::string body = line.substr(0, line.find('#'));
    size_t b = body.find_first_not_of(" \t");
    if (b != std::string::npos) {
      std::string host = body.substr(b, body.find_first_of(" \t:", b) - b);
      if (excluded.count(host)) continue;
      ++remaining;
    }
    out << line << "\n";
  }
  std::ofstream o(to, std::ios::trunc);
  o << out.str();
  if (!o) throw config_error("cannot write the rewritten hostfile", "", to);
  return remaining;
}

std::string join_hosts(const std::set<std::string>& hosts) {
  std::string s;
  for (const auto& h : hosts) s += (s.empty() ? "" : ",") + h;
  return s;
}

// Moves failure reports and heartbeats aside so that the next attempt's are its own.
void archive_reports(const std::string& dir, const std::string& into) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.rfind("failure-rank-", 0) != 0 && name.rfind("heartbeat-rank-", 0) != 0) continue;
    fs::create_directories(fs::path(dir) / into, ec);
    std::error_code mv;
    fs::rename(it->path(), fs::path(dir) / into / name, mv);
  }
}

// Who failed: a rank the launcher saw die; else a rank whose own report says it was stopped (frozen,
// woken by the teardown); else a peer whose heartbeat had stopped, named by a failure report; else the report of a rank stuck outside a collective, the one that entered its
// section first; else the rank the launcher itself found hung. Its host is the one its heartbeat names (a node's identity), else the
// launcher's message's.
struct Culprit {
  int rank = -1;
  std::string host, source;
};

Culprit find_culprit(const AttemptResult& r, const std::vector<FailureReport>& reports,
                     const std::map<int, Heartbeat>& beats) {
  Culprit c;
  if (r.clues.died || (reports.empty() && r.clues.rank >= 0)) {
    c = {r.clues.rank, r.clues.host, "launcher output"};
  } else if (auto frozen = std::find_if(reports.begin(), reports.end(), [](const FailureReport& x) { return x.stopped_s > 0; });
             frozen != reports.end()) {
    c = {frozen->rank, frozen->host,
         "failure report: the process was stopped for " + fixed1(frozen->stopped_s) + " s in " + frozen->op + " at step " +
             std::to_string(frozen->step)};
  } else if (!reports.empty()) {
    // A rank stuck in its own work is likelier the cause than ranks waiting in a collective for it.
    auto waiting = [](const FailureReport& x) { return !x.op.empty() && x.op.back() == ')'; };
    auto own = std::find_if(reports.begin(), reports.end(), [&](const FailureReport& x) { return !waiting(x); });
    const FailureReport& f = own != reports.end() ? *own : reports.front();
    auto stale = std::find_if(reports.begin(), reports.end(), [](const FailureReport& x) { return !x.stale_peers.empty(); });
    if (stale != reports.end()) {
      const StalePeer& p = stale->stale_peers.front();
      c = {p.rank, p.host,
           "failure report of rank " + std::to_string(stale->rank) + ": no heartbeat for " + fixed1(p.silent_s) +
               " s while it waited in " + stale->op + " at step " + std::to_string(stale->step)};
    } else {
      c = {f.rank, f.host, "failure report: " + f.op + " at step " + std::to_string(f.step) + " for " + fixed1(f.waited_s) + " s"};
    }
  } else if (r.hang.rank >= 0) {
    c = {r.hang.rank, r.hang.host, "tessera-launch: " + r.hang.limit + " limit"};
  }
  if (auto b = beats.find(c.rank); c.rank >= 0 && b != beats.end() && !b->second.host.empty()) c.host = b->second.host;
  return c;
}

struct LaunchOptions {
  int max_restarts = 3;
  std::string failure_dir, checkpoint_dir, no_restart = "1,2,4", log_path, requeue_command;
  double restart_delay = 2;
  bool exclude_failed_hosts = false;
  LaunchLimits limits;
};

// The command of the next attempt: without the excluded hosts where the launcher knows how.
std::vector<std::string> command_for_attempt(const std::vector<std::string>& command, const std::set<std::string>& excluded,
                                             const std::string& failure_dir, int restarts) {
  std::vector<std::string> cmd = command;
  if (excluded.empty()) return cmd;
  ::setenv("TESSERA_EXCLUDED_HOSTS", join_hosts(excluded).c_str(), 1);
  bool joined = false;
  int hf = hostfile_index(cmd, &joined);
  if (hf >= 0) {
    std::string original = joined ? cmd[size_t(hf)].substr(cmd[size_t(hf)].find('=') + 1) : cmd[size_t(hf)];
    std::string dir = failure_dir.empty() ? fs::path(original).parent_path().string() : failure_dir;
    std::string rewritten =
        (fs::path(dir.empty() ? "." : dir) / (fs::path(original).filename().string() + ".attempt-" + std::to_string(restarts)))
            .string();
    if (rewrite_hostfile(original, rewritten, excluded) > 0) {
      cmd[size_t(hf)] = joined ? cmd[size_t(hf)].substr(0, cmd[size_t(hf)].find('=') + 1) + rewritten : rewritten;
      say("launching without " + join_hosts(excluded) + " (hostfile " + rewritten + ")");
    } else {
      say("not excluding " + join_hosts(excluded) + ": no host would be left in " + original);
    }
  } else if (fs::path(cmd[0]).filename() == "srun") {
    cmd.insert(cmd.begin() + 1, "--exclude=" + join_hosts(excluded));
    say("launching without " + join_hosts(excluded) + " (srun --exclude)");
  } else {
    say("cannot exclude " + join_hosts(excluded) + " from the command (no --hostfile, not srun); the job sees "
        "TESSERA_EXCLUDED_HOSTS=" + join_hosts(excluded));
  }
  return cmd;
}

// The job exited 5: it was preempted and saved its state. Not a failure: the scheduler requeues it.
int requeue(const LaunchOptions& o, MetricsLog& log, int restarts) {
  say("the job was preempted and saved its state (exit code 5): requeue it to continue" +
      std::string(o.requeue_command.empty() ? "" : "; running --requeue-command"));
  log.write(MetricsRecord("launch_end").add("result", "preempted").add("exit_code", kExitPreempted).add("restarts", restarts)
                .add("unix", now_seconds()));
  if (!o.requeue_command.empty()) {
    int rc = std::system(o.requeue_command.c_str());
    if (rc != 0) say("--requeue-command exited with status " + std::to_string(rc));
  }
  return kExitPreempted;
}

// Where failure reports and heartbeats go: --failure-dir, else <checkpoint-dir>/failures, else a
// temporary directory of this launcher (one machine only).
std::string choose_failure_dir(const LaunchOptions& o, std::string* temporary) {
  if (!o.failure_dir.empty()) return o.failure_dir;
  if (!o.checkpoint_dir.empty()) return (fs::path(o.checkpoint_dir) / "failures").string();
  char pattern[] = "/tmp/tessera-launch-XXXXXX";
  if (char* made = ::mkdtemp(pattern)) {
    *temporary = made;
    return made;
  }
  return "";
}

int launch(const LaunchOptions& o, const std::vector<std::string>& command) {
  const std::set<int> final_codes = parse_code_list(o.no_restart);
  MetricsLog log;
  if (!o.log_path.empty()) {
    program::check_log_file("--log", o.log_path);
    log = MetricsLog(o.log_path, /*append=*/true);
  }
  if (!o.checkpoint_dir.empty()) {
    std::error_code ec;
    if (fs::exists(o.checkpoint_dir, ec) && !fs::is_directory(o.checkpoint_dir, ec))
      throw config_error("--checkpoint-dir " + o.checkpoint_dir + ": exists and is not a directory",
                         "give the job's checkpoint directory", o.checkpoint_dir);
  }
  std::string temporary_dir;
  const std::string failure_dir = choose_failure_dir(o, &temporary_dir);
  if (!failure_dir.empty()) {
    program::check_output_dir(o.failure_dir.empty() ? "the failure directory (<checkpoint-dir>/failures)" : "--failure-dir",
                              failure_dir);
    ::setenv("TESSERA_FAILURE_DIR", failure_dir.c_str(), 1);
    archive_reports(failure_dir, "earlier");
  }
  struct RemoveTemporary {
    std::string dir;
    ~RemoveTemporary() {
      std::error_code ec;
      if (!dir.empty()) fs::remove_all(dir, ec);
    }
  } remove_temporary{temporary_dir};
  g_child_is_mpirun = is_mpirun(command[0]) ? 1 : 0;
  install_signal_forwarding();
  // One run ID for every attempt: the local checkpoint tier resumes only shards of its own run.
  ::setenv("TESSERA_RUN_ID", program::run_id_from_environment().c_str(), 1);

  std::set<std::string> excluded;
  double total_lost = 0;
  for (int restarts = 0;; ++restarts) {
    std::vector<std::string> cmd = command_for_attempt(command, excluded, failure_dir, restarts);
    ::setenv("TESSERA_RESTART_COUNT", std::to_string(restarts).c_str(), 1);

    AttemptWatch watch(failure_dir, restarts, o.limits);
    AttemptResult r = run_attempt(cmd, &watch);
    if (r.exec_failed) throw config_error("cannot run '" + cmd[0] + "': " + r.exec_error, "check the command after --");
    const double attempt_s = r.ended_unix - r.started_unix;
    std::string why = r.hang.limit.empty() ? describe_exit(r) : "hang detected by tessera-launch (" + r.hang.limit + " limit)";
    // srun exits with its tasks' highest code (a peer's 3) when one was killed: the kill is the cause.
    if (r.hang.limit.empty() && r.clues.died && r.clues.signal > 0 && r.signal == 0 && r.exit_code != 128 + r.clues.signal)
      why = "a process was killed by " + signal_name(r.clues.signal) + "; the job exited with code " + std::to_string(r.exit_code);

    if (r.exit_code == kExitPreempted && r.hang.limit.empty()) return requeue(o, log, restarts);
    if (g_stop_signal) {
      say("stopped by " + signal_name(g_stop_signal) + " (forwarded to the job); exit code " + std::to_string(r.exit_code) +
          "; not restarting");
      log.write(MetricsRecord("launch_end").add("result", "stopped").add("exit_code", r.exit_code).add("restarts", restarts));
      return r.exit_code;
    }
    if (r.exit_code == 0 && r.hang.limit.empty()) {
      say("job finished after " + std::to_string(restarts) + " restart" + (restarts == 1 ? "" : "s") + " (time lost " +
          fixed1(total_lost) + " s)");
      log.write(MetricsRecord("launch_end").add("result", "finished").add("exit_code", 0).add("restarts", restarts)
                    .add("lost_s", total_lost).add("unix", now_seconds()));
      return 0;
    }
    if (final_codes.count(r.exit_code) && r.hang.limit.empty()) {
      say("not restarting: exit code " + std::to_string(r.exit_code) + " (" + why +
          ") would fail again the same way; fix the cause and launch again");
      log.write(MetricsRecord("launch_end").add("result", "not_restarted").add("exit_code", r.exit_code)
                    .add("reason", why).add("restarts", restarts));
      return r.exit_code;
    }

    const std::vector<FailureReport> reports = failure_dir.empty() ? std::vector<FailureReport>{} : read_failure_reports(failure_dir);
    const Culprit culprit = find_culprit(r, reports, watch.heartbeats());
    double lost = attempt_s;
    if (!o.checkpoint_dir.empty()) {
      struct stat st;
      std::string latest = (fs::path(o.checkpoint_dir) / "latest").string();
      if (::stat(latest.c_str(), &st) == 0 && double(st.st_mtime) >= r.started_unix)
        lost = std::max(0.0, r.ended_unix - double(st.st_mtime));
    }
    total_lost += lost;

    std::string where = culprit.rank >= 0 ? "rank " + std::to_string(culprit.rank) +
                                                (culprit.host.empty() ? "" : " on " + culprit.host) + " (" + culprit.source + ")"
                                          : "failed rank unknown";
    if (restarts >= o.max_restarts) {
      say("giving up: exit code " + std::to_string(r.exit_code) + " (" + why + "), " + where + ", after " +
          std::to_string(restarts) + " restart" + (restarts == 1 ? "" : "s") + " (--max-restarts " +
          std::to_string(o.max_restarts) + ")");
      log.write(MetricsRecord("launch_end").add("result", "gave_up").add("exit_code", r.exit_code).add("reason", why)
                    .add("failed_rank", culprit.rank).add("host", culprit.host).add("restarts", restarts)
                    .add("lost_s", total_lost));
      return r.hang.limit.empty() ? r.exit_code : int(ExitCode::hang_or_peer);
    }
    say("restart " + std::to_string(restarts + 1) + "/" + std::to_string(o.max_restarts) + ": exit code " +
        std::to_string(r.exit_code) + " (" + why + "), " + where + ", time lost " + fixed1(lost) + " s (attempt ran " +
        fixed1(attempt_s) + " s)");
    log.write(MetricsRecord("restart")
                  .add("restart", restarts + 1)
                  .add("max_restarts", o.max_restarts)
                  .add("exit_code", r.exit_code)
                  .add("reason", why)
                  .add("limit", r.hang.limit)
                  .add("failed_rank", culprit.rank)
                  .add("host", culprit.host)
                  .add("source", culprit.source)
                  .add("attempt_s", attempt_s)
                  .add("lost_s", lost)
                  .add("started_unix", r.started_unix)
                  .add("ended_unix", r.ended_unix));
    if (o.exclude_failed_hosts && !culprit.host.empty()) excluded.insert(culprit.host);
    if (!failure_dir.empty()) archive_reports(failure_dir, "attempt-" + std::to_string(restarts));

    for (double waited = 0; waited < o.restart_delay && !g_stop_signal; waited += 0.05)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (g_stop_signal) {
      say("stopped by " + signal_name(g_stop_signal) + " before the relaunch");
      return r.exit_code;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  return tessera::program::run_program("tessera-launch", [&]() -> int {
    int split = argc;
    for (int i = 1; i < argc; ++i)
      if (std::string(argv[i]) == "--") {
        split = i;
        break;
      }
    std::vector<std::string> command(argv + std::min(split + 1, argc), argv + argc);

    LaunchOptions o;
    program::FlagParser flags(
        "tessera-launch",
        "tessera-launch [flags] -- COMMAND [ARGS...]\n"
        "Runs COMMAND (mpirun ..., srun ..., or any program) and relaunches it when it exits abnormally or hangs.\n"
        "Exit 0 ends it; exit codes 1 (bad arguments or config), 2 (bad data or checkpoint) and 4 (non-finite loss)\n"
        "are not restarted because they would fail again; 5 (preempted, state saved) is passed on for a requeue.\n"
        "The job sees TESSERA_RESTART_COUNT, TESSERA_FAILURE_DIR and TESSERA_EXCLUDED_HOSTS.");
    flags.add("max-restarts", &o.max_restarts, "how many times to relaunch the job after a failure").at_least(0);
    flags.add("failure-dir", &o.failure_dir,
              "directory of the ranks' failure reports and heartbeats (exported as TESSERA_FAILURE_DIR; default "
              "<checkpoint-dir>/failures, else a temporary directory); names the failed rank and host");
    flags.add("checkpoint-dir", &o.checkpoint_dir, "the job's checkpoint directory: time lost counts from its last checkpoint");
    flags.add("no-restart-codes", &o.no_restart, "exit codes that end the job without a restart (comma-separated)");
    flags.add("restart-delay", &o.restart_delay, "seconds to wait before a relaunch").at_least(0);
    flags.add("exclude-failed-hosts", &o.exclude_failed_hosts,
              "leave the failed rank's host out of later launches (mpirun --hostfile rewritten, srun --exclude)");
    flags.add("heartbeat-timeout", &o.limits.heartbeat_timeout_s,
              "end an attempt as hung when a rank that sent heartbeats has been silent this long (0: off)").at_least(0);
    flags.add("stall-timeout", &o.limits.stall_timeout_s,
              "end an attempt as hung when ranks beat but no step has finished for this long (0: off)").at_least(0);
    flags.add("attempt-timeout", &o.limits.attempt_timeout_s, "end an attempt as hung after this many seconds (0: no limit)").at_least(0);
    flags.add("requeue-command", &o.requeue_command,
              "shell command run when the job was preempted with its state saved (exit 5), e.g. 'scontrol requeue $SLURM_JOB_ID'");
    flags.add("log", &o.log_path, "append one JSON line per restart and one at the end to this file");
    if (!flags.parse(split, argv)) return 0;
    if (!flags.positional().empty())
      throw config_error("unexpected argument '" + flags.positional().front() + "' before --",
                         "write the command to run after --: tessera-launch [flags] -- mpirun ...");
    if (command.empty()) throw config_error("no command to run", "write it after --: tessera-launch [flags] -- mpirun ...");
    return launch(o, command);
  });
}
