// The local checkpoint tier: frequent, cheap saves that survive a lost node, beside the durable
// checkpoints on shared storage.
//
// Every K steps each rank copies its whole state to host memory (Trainer::local_state), sends a copy
// to its replica partner (a rank of the next node: replica_partners) over the world communicator,
// and a background thread writes both, its own shard and the partner's copy, under
// <dir>/<host>/rank-<R>/step-<N>/shard-<rank>.bin (node-local storage such as /dev/shm or a local
// NVMe; the newest `keep` steps are kept). Each file checks itself (CRC32C over every byte).
//
// On restart, every rank lists the shards its host holds; the newest step of which every rank's
// shard is held somewhere (its own copy or its partner's) is loaded, each shard sent to its owner
// by the rank holding it, provided it is newer than (or as new as) the durable checkpoint and was
// saved by the same run, world size and layout. Otherwise the durable tier is used, and the reason
// is said.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tessera/communicator.h"
#include "tessera/context.h"
#include "tessera/trainer.h"

namespace tessera {

struct LocalCheckpointOptions {
  std::string dir;  // node-local root ("" : the tier is off)
  int every = 0;    // save every N steps (0: off)
  int keep = 2;     // steps kept per rank directory
  // The run the shards belong to: saved in each, and a restore takes no other run's shards, so a
  // directory left by an earlier job with the same layout is never resumed by mistake.
  std::string run_id;
};

struct LocalSaveStats {
  int64_t step = -1;
  double blocked_ms = 0;   // training waited: the copy to host memory and the exchange with the partner
  double copy_ms = 0;
  double exchange_ms = 0;
  uint64_t bytes = 0;      // this rank's shard
  uint64_t replica_bytes = 0;  // copies of other ranks' shards it keeps
  int partner = -1;
};

struct LocalRestore {
  int64_t step = -1;
  TrainingState state;
  std::vector<int> from_peers;  // ranks whose shard came from another rank's copy
  std::string message;          // one line for the log and terminal
};

// The replica partner of each rank (by world rank): the rank at the same place on the next node,
// nodes in the order of their lowest rank, so that every node keeps copies of another node's ranks.
// All -1 when every rank is on one node.
std::vector<int> replica_partners(const std::vector<std::string>& hosts);

class LocalCheckpointTier {
 public:
  // Collective over world (exchanges host names).
  LocalCheckpointTier(Context& ctx, Trainer& trainer, Communicator& world, LocalCheckpointOptions options);
  ~LocalCheckpointTier();  // waits for a write in flight
  LocalCheckpointTier(const LocalCheckpointTier&) = delete;
  LocalCheckpointTier& operator=(const LocalCheckpointTier&) = delete;

  bool enabled() const { return !options_.dir.empty() && options_.every > 0; }
  bool due(int64_t steps_done) const { return enabled() && steps_done > 0 && steps_done % options_.every == 0; }
  int partner() const { return partner_; }
  const std::string& host() const { return hosts_[size_t(world_.rank())]; }
  std::string host_dir() const;  // <dir>/<host>: what a lost node loses
  std::string describe() const;

  // Collective. Waits for the previous write, then copies, exchanges and starts the write.
  LocalSaveStats save(const TrainingState& state);
  void finish();  // waits for the write in flight (before exit)

  // Collective. The newest complete step of the local tier, loaded into the trainer, when it is at
  // least as new as `durable_step` (-1: no durable checkpoint); nullopt otherwise, with the reason
  // in *why_not (empty when the tier holds nothing).
  std::optional<LocalRestore> restore(int64_t durable_step, std::string* why_not);

 private:
  void write_in_background(int64_t step, std::vector<std::pair<int, std::vector<char>>> shards);

  Context& ctx_;
  Trainer& trainer_;
  Communicator& world_;
  LocalCheckpointOptions options_;
  std::vector<std::string> hosts_;
  std::vector<int> partners_;
  int partner_ = -1;
  std::thread writer_;
  std::string write_error_;  // the last background write's failure, reported at the next save
};

}  // namespace tessera
