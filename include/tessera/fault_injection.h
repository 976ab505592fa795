// Fault injection for testing failure handling: kill or hang a rank, make a loss non-finite, or
// damage a checkpoint file, at a chosen step.
//
// Specification (the trainer's --fault flag, or the TESSERA_FAULT environment variable): faults
// separated by ',' or ';', each a kind followed by ':key=value' settings (steps are numbered from 1,
// as the trainer's progress line numbers them; a checkpoint of step N holds the state after step N):
//   kill:rank=1:step=12       SIGKILL rank 1 at the start of step 12
//   hang:rank=0:step=5        rank 0 stops at step 5 and never returns (the watchdog catches it)
//   nan:step=7                the loss of step 7 becomes NaN (the trainer applies it)
//   exit:rank=2:step=3:code=3 rank 2 exits with that code at step 3
//   corrupt:step=20:rank=1    after the checkpoint of step 20 is committed, flip a byte of rank 1's file
//   truncate:step=20          ... or cut the file(s) to half their size
//   node:host=nodeB:step=9    the node is lost at step 9: every rank on it removes the node-local
//                             directories registered with it (the local checkpoint tier) and is SIGKILLed
// rank: which rank (default: every rank); host (node faults): which node, as host_identity() names it. attempt: on which launch the fault fires (default 0, the
// first; tessera-launch sets TESSERA_RESTART_COUNT), so a restarted job does not fail the same way
// again. A malformed specification is a config error.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

enum class FaultKind { kill, hang, nan, exit, corrupt, truncate, node };

struct Fault {
  FaultKind kind = FaultKind::kill;
  int rank = -1;       // -1: every rank
  int64_t step = -1;
  int attempt = 0;
  int exit_code = 3;   // exit only
  std::string host;    // node only
};

const char* fault_kind_name(FaultKind k);
std::string describe(const Fault& f);  // "kill:rank=1:step=12:attempt=0"
std::vector<Fault> parse_faults(const std::string& spec);

// Flips the bits of one byte in the middle of a file / cuts it to half its size (config error if
// the file cannot be changed).
void corrupt_file(const std::string& path);
void truncate_file(const std::string& path);

class FaultInjector {
 public:
  FaultInjector() = default;
  FaultInjector(std::vector<Fault> faults, int attempt);
  // From the flag's value when not empty, else $TESSERA_FAULT; the attempt from $TESSERA_RESTART_COUNT (0 when unset).
  static FaultInjector from_environment(const std::string& flag_value = "");

  bool empty() const { return faults_.empty(); }
  // What a lost node loses besides its processes (node faults remove it).
  void set_node_local_dir(const std::string& dir) { node_local_dir_ = dir; }
  const std::vector<Fault>& faults() const { return faults_; }
  int attempt() const { return attempt_; }

  // Called by the trainer at the start of each step. kill, hang and exit faults for this step and
  // rank act here (announced on stderr) and do not return; returns true when a nan fault asks the
  // trainer to make this step's loss non-finite.
  bool maybe_inject(int64_t step, int rank) const;
  // Called by the rank that committed the checkpoint of `step` in `dir`: applies corrupt and
  // truncate faults to the rank files they name. Returns the files it damaged.
  std::vector<std::string> after_checkpoint(int64_t step, const std::string& dir) const;

 private:
  bool applies(const Fault& f, int64_t step, int rank) const;
  std::vector<Fault> faults_;
  int attempt_ = 0;
  std::string node_local_dir_;
};

}  // namespace tessera
