// Time a thread spent ready to run but waiting for a CPU, from Linux's scheduler statistics
// (/proc/thread-self/schedstat, its run_delay field). A rank whose host has more runnable threads
// than CPUs takes longer per step by this much without being slow itself: the straggler monitor
// uses it to tell the two apart.
#pragma once

namespace tessera {

class CpuWaitClock {
 public:
  // Measures the thread that constructs it, while that thread lives. Any thread may read it; the
  // kernel adds a wait when the waiting thread gets its CPU, so a read from elsewhere lags by the
  // wait in progress.
  CpuWaitClock();
  ~CpuWaitClock();
  CpuWaitClock(const CpuWaitClock&) = delete;
  CpuWaitClock& operator=(const CpuWaitClock&) = delete;

  // False where the kernel gives no scheduler statistics (not Linux, or built without
  // CONFIG_SCHED_INFO); seconds() is then always 0. (A kernel with the statistics switched off at
  // run time reports zeros and looks available: its waits read as none.)
  bool available() const { return fd_ >= 0; }
  // Seconds the thread has waited for a CPU since it started.
  double seconds() const;

 private:
  int fd_ = -1;
};

}  // namespace tessera
