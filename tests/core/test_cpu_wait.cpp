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
#include "tessera/host.h"

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

TEST_CASE("cpu wait: a thread sharing its CPU with a busy thread waits about half the time", "[core][cpu_wait]") {
  cpu_set_t saved;
  REQUIRE(pthread_getaffinity_np(pthread_self(), sizeof(saved), &saved) == 0);
  const int cpu = first_allowed_cpu();
  std::atomic<bool> stop{false};
  std::thread busy([&] {
    while (!stop.load(std::memory_order_relaxed)) {
    }
  });
  pin_to(busy.native_handle(), cpu);
  pin_to(pthread_self(), cpu);
  CpuWaitClock clock;
  REQUIRE(clock.available());  // Linux with scheduler statistics, as every machine this runs on
  const double before = clock.seconds();
  spin_for(0.4);
  const double waited = clock.seconds() - before;
  stop = true;
  busy.join();
  REQUIRE(pthread_setaffinity_np(pthread_self(), sizeof(saved), &saved) == 0);
  // Two runnable threads on one CPU: each waits about half of the 0.4 s.
  CHECK(waited > 0.1);
  CHECK(waited < 0.4);
}

TEST_CASE("cpu wait: the machine's CPUs are counted from the affinity mask", "[core][cpu_wait]") {
  cpu_set_t set;
  CPU_ZERO(&set);
  REQUIRE(sched_getaffinity(0, sizeof(set), &set) == 0);
  CHECK(available_cpus() >= 1);
  CHECK(available_cpus() <= CPU_COUNT(&set));
  CHECK_FALSE(machine_name().empty());
}
#endif
