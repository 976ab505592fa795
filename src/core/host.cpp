#include "tessera/host.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include <sched.h>
#include <unistd.h>

namespace tessera {

std::string host_identity() {
  if (const char* env = std::getenv("TESSERA_HOSTNAME"); env && *env) return env;
  return machine_name();
}

std::string machine_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "unknown";
  return buf;
}

// "max 100000" (no quota) or "150000 100000" (1.5 CPUs): the CPUs the quota allows, rounded up; 0 when none.
int cgroup_cpu_quota() {
  std::FILE* f = std::fopen("/sys/fs/cgroup/cpu.max", "r");
  if (!f) return 0;
  char quota[32] = {};
  double period = 0;
  const int fields = std::fscanf(f, "%31s %lf", quota, &period);
  std::fclose(f);
  if (fields != 2 || period <= 0) return 0;
  char* end = nullptr;
  const double q = std::strtod(quota, &end);
  if (end == quota || q <= 0) return 0;  // "max"
  return std::max(1, int(std::ceil(q / period)));
}

std::vector<int> allowed_cpu_list() {
  std::vector<int> cpus;
#ifdef __linux__
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
#endif
  if (cpus.empty())
    for (int c = 0; c < int(std::max(1u, std::thread::hardware_concurrency())); ++c) cpus.push_back(c);
  return cpus;
}

}  // namespace tessera
