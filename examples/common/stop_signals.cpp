#include "common/stop_signals.h"

#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "tessera/host_collectives.h"

namespace tessera::program {

namespace fs = std::filesystem;

namespace {

// The handler's only way to reach the watching thread: the write end of its pipe.
volatile sig_atomic_t g_signal_pipe = -1;

void on_signal(int sig) {
  const int fd = g_signal_pipe;
  if (fd < 0) return;
  const unsigned char byte = static_cast<unsigned char>(sig);
  ssize_t ignored = ::write(fd, &byte, 1);
  (void)ignored;
}

constexpr int kSignals[] = {SIGTERM, SIGINT, SIGUSR1};

}  // namespace

std::string signal_label(int sig) {
  switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGUSR1: return "SIGUSR1";
    default: return "signal " + std::to_string(sig);
  }
}

StopSignals::StopSignals(bool announce) : announce_(announce) {
  if (::pipe2(pipe_, O_CLOEXEC) != 0) return;  // no pipe: signals keep their default action
  g_signal_pipe = pipe_[1];
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // a blocked read, write or MPI wait carries on
  for (int sig : kSignals) sigaction(sig, &sa, nullptr);
  thread_ = std::thread([this] { watch(); });
}

StopSignals::~StopSignals() {
  if (pipe_[1] < 0) return;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_DFL;
  for (int sig : kSignals) sigaction(sig, &sa, nullptr);
  g_signal_pipe = -1;
  const unsigned char stop = 0;
  ssize_t ignored = ::write(pipe_[1], &stop, 1);
  (void)ignored;
  thread_.join();
  ::close(pipe_[0]);
  ::close(pipe_[1]);
}

void StopSignals::set_checkpoint_root(const std::string& root) {
  std::lock_guard<std::mutex> lock(mutex_);
  checkpoint_root_ = root;
}

void StopSignals::watch() {
  for (;;) {
    unsigned char byte = 0;
    const ssize_t n = ::read(pipe_[0], &byte, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || byte == 0) return;
    const int sig = byte;
    int expected = 0;
    if (first_.compare_exchange_strong(expected, sig)) {
      if (announce_) {
        std::fprintf(stderr,
                     "tessera: %s: finishing the step in progress, then saving a checkpoint and exiting (a second "
                     "SIGINT or SIGTERM exits at once)\n",
                     signal_label(sig).c_str());
        std::fflush(stderr);
      }
      continue;
    }
    if (sig == SIGUSR1) continue;  // a repeated notice
    std::string root;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      root = checkpoint_root_;
    }
    std::vector<std::string> removed;
    std::error_code ec;
    if (!root.empty())
      for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec))
        if (it->path().filename().string().rfind(".tmp-step-", 0) == 0) {
          std::error_code rm;
          fs::remove_all(it->path(), rm);
          removed.push_back(it->path().string());
        }
    std::fprintf(stderr, "tessera: second signal (%s): exiting now without saving%s%s\n", signal_label(sig).c_str(),
                 removed.empty() ? "" : "; removed the unfinished save ", removed.empty() ? "" : removed.front().c_str());
    std::fflush(nullptr);
    ::_exit(128 + sig);
  }
}

int agreed_stop_signal(Context& ctx, Communicator& world, int mine) {
  if (world.size() == 1) return mine;
  std::vector<float> flag = {float(mine)};
  host_all_reduce(ctx, world, flag, ReduceOp::max);
  return int(flag[0]);
}

}  // namespace tessera::program
