#include "common/job_clock.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>

namespace tessera::program {

// The number after "key": in a flat JSON object of numbers, as to_json writes one.
bool json_number_field(const std::string& json, const std::string& key, double* out) {
  const std::string quoted = "\"" + key + "\"";
  size_t at = json.find(quoted);
  if (at == std::string::npos) return false;
  at = json.find(':', at + quoted.size());
  if (at == std::string::npos) return false;
  const char* begin = json.c_str() + at + 1;
  char* end = nullptr;
  double v = std::strtod(begin, &end);
  if (end == begin) return false;
  *out = v;
  return true;
}

double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

JobClock JobClock::starting_now() {
  JobClock c;
  c.start_unix = unix_seconds();
  return c;
}

double JobClock::wall_s() const { return unix_seconds() - start_unix; }

double JobClock::effective_ratio() const {
  const double wall = wall_s();
  return wall > 0 ? useful_s / wall : 0.0;
}

std::string JobClock::to_json() const {
  char buf[128];
  std::snprintf(buf, sizeof(buf), "{\"start_unix\":%.17g,\"useful_s\":%.17g}", start_unix, useful_s);
  return buf;
}

JobClock JobClock::from_json(const std::string& program_json, const JobClock& fallback) {
  JobClock c = fallback;
  json_number_field(program_json, "start_unix", &c.start_unix);
  json_number_field(program_json, "useful_s", &c.useful_s);
  return c;
}

}  // namespace tessera::program
