// Effective training time across failures and restarts.
//
// Useful time is the time of the steps that advanced training to where it stands: a step redone
// after a restart or a rollback counts once, and a skipped step (non-finite loss) not at all. Wall
// time runs from when the job's first launch began training, so it includes everything failures
// cost: work lost since the last checkpoint, the relaunch, the reload. Both travel in every
// checkpoint (TrainingState::program_json), so a resumed run continues the totals of the run it
// resumes — and a run resumed from an older checkpoint also forgets the useful time after it.
#pragma once

#include <string>

namespace tessera::program {

double unix_seconds();

// A number field of a flat JSON object such as program_json (false when it is absent).
bool json_number_field(const std::string& json, const std::string& key, double* out);

struct JobClock {
  double start_unix = 0;  // when the job's first launch started training
  double useful_s = 0;    // summed time of the steps that led to the current state

  static JobClock starting_now();
  double wall_s() const;
  double effective_ratio() const;  // useful / wall (0 before any time has passed)

  // A JSON object with the clock's fields (full precision), for TrainingState::program_json.
  std::string to_json() const;
  // The clock stored in program_json; `fallback` for a field that is missing (a checkpoint written
  // by another program).
  static JobClock from_json(const std::string& program_json, const JobClock& fallback);
};

}  // namespace tessera::program
