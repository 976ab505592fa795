#include "tessera/cpu_wait.h"

#include <cstdio>
#include <cstdlib>

#include <fcntl.h>
#include <unistd.h>

namespace tessera {

namespace {

// The fields of schedstat: time on the CPU, time waiting on a run queue (both ns), timeslices.
bool read_run_delay_ns(int fd, unsigned long long* run_delay_ns) {
  char buf[128];
  const ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return false;
  buf[n] = '\0';
  unsigned long long on_cpu = 0, waiting = 0;
  if (std::sscanf(buf, "%llu %llu", &on_cpu, &waiting) != 2) return false;
  *run_delay_ns = waiting;
  return true;
}

}  // namespace

CpuWaitClock::CpuWaitClock() {
#ifdef __linux__
  // /proc/thread-self resolves to this thread when opened; the descriptor stays bound to it.
  fd_ = ::open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
  unsigned long long probe = 0;
  if (fd_ >= 0 && !read_run_delay_ns(fd_, &probe)) {
    ::close(fd_);
    fd_ = -1;
  }
#endif
}

CpuWaitClock::~CpuWaitClock() {
  if (fd_ >= 0) ::close(fd_);
}

double CpuWaitClock::seconds() const {
  unsigned long long ns = 0;
  if (fd_ < 0 || !read_run_delay_ns(fd_, &ns)) return 0;
  return double(ns) * 1e-9;
}

}  // namespace tessera
