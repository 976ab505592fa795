#include "tessera/host.h"

#include <cstdlib>

#include <unistd.h>

namespace tessera {

std::string host_identity() {
  if (const char* env = std::getenv("TESSERA_HOSTNAME"); env && *env) return env;
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "unknown";
  return buf;
}

}  // namespace tessera
