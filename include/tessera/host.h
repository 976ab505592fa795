// Which machine this process runs on, as failure reports, heartbeats, straggler events and the
// local checkpoint tier name it.
#pragma once

#include <string>
#include <vector>

namespace tessera {

// $TESSERA_HOSTNAME when set (tests give ranks of one machine distinct node identities with it),
// else gethostname(); "unknown" when neither works.
std::string host_identity();

// gethostname() alone: which ranks really share a machine's CPUs, whatever TESSERA_HOSTNAME says.
std::string machine_name();

// The CPU numbers of its affinity mask (0 .. hardware_concurrency - 1 where there is none).
std::vector<int> allowed_cpu_list();
// The cgroup v2 CPU quota in whole CPUs, rounded up; 0 when none is set.
int cgroup_cpu_quota();

}  // namespace tessera
