// The CPU-wait clock: a thread that shares its CPU with a busy one waits for it, and the clock sees it.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>

#ifdef __linux__
#include <pthread.h>
#include <sched.h>
#endif

#include "tessera/cpu_wait.h"

using namespace tessera;

#ifdef __linux__
namespace {

void pin_to(pthread_t thread, int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  REQUIRE(pthread_setaffinity_np(thread, sizeof(set), &set) == 0);
}

void spin_for(double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
  }
}

int first_allowed_cpu() {
  cpu_set_t set;
  CPU_ZERO(&set);
  REQUIRE(sched_getaffinity(0, sizeof(set), &set) == 0);
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) return c;
  FAIL("no CPU in this process's affinity mask");
  return 0;
}

}  // namespace

// A busy thread pinned to one CPU, stopped and joined (and this thread's affinity restored) however
// the test case ends.
class BusyNeighbour {
 public:
  explicit BusyNeighbour(int cpu) {
    REQUIRE(pthread_getaffinity_np(pthread_self(), sizeof(saved_), &saved_) == 0);
    // It pins itself: nothing here may throw while it runs unjoined. Unpinned, it would not share
    // this thread's CPU, and the wait checked below would not come.
    thread_ = std::thread([this, cpu] {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
      while (!stop_.load(std::memory_order_relaxed)) {
      }
    });
  }
  ~BusyNeighbour() {
    stop_ = true;
    thread_.join();
    pthread_setaffinity_np(pthread_self(), sizeof(saved_), &saved_);
  }

 private:
  cpu_set_t saved_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

TEST_CASE("cpu wait: a thread sharing its CPU with a busy thread waits about half the time", "[core][cpu_wait]") {
  const int cpu = first_allowed_cpu();
  BusyNeighbour busy(cpu);
  pin_to(pthread_self(), cpu);
  CpuWaitClock clock;
  REQUIRE(clock.available());  // Linux with scheduler statistics, as every machine this runs on
  const double before = clock.seconds();
  spin_for(0.4);
  const double waited = clock.seconds() - before;
  // Two runnable threads on one CPU: each waits about half of the 0.4 s.
  CHECK(waited > 0.1);
  CHECK(waited < 0.4);
}
#endif
