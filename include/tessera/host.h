// Which machine this process runs on, as failure reports, heartbeats, straggler events and the
// local checkpoint tier name it.
#pragma once

#include <string>

namespace tessera {

// $TESSERA_HOSTNAME when set (tests give ranks of one machine distinct node identities with it),
// else gethostname(); "unknown" when neither works.
std::string host_identity();

}  // namespace tessera
