// The process grid: how the world's ranks split into tensor-, data- and pipeline-parallel groups.
// Ranks are ordered as Megatron orders them: tensor-parallel neighbours adjacent (inside a node, on
// NVLink), then data-parallel, then pipeline: world rank = (pp_rank * dp + dp_rank) * tp + tp_rank.
// All groups are built once, when the grid is made, and passed down explicitly.
#pragma once

#include <memory>
#include <string>

#include "tessera/communicator.h"
#include "tessera/schedule.h"

namespace tessera {

struct ParallelLayout {
  int tp = 1;
  int pp = 1;
  int dp = 0;                     // 0: world size / (tp * pp)
  bool sequence_parallel = false; // shard LayerNorm/dropout regions along the sequence over tp
  int zero_stage = 0;             // 0 or 1 (ZeRO-1: optimizer state sharded over dp)
  ScheduleKind schedule = ScheduleKind::one_f_one_b;
  int virtual_stages = 1;         // model chunks per pipeline rank (interleaved schedule)
  int microbatches = 1;           // per optimizer step and data-parallel rank

  // Throws config_error naming the flag to change when the layout does not fit world_size ranks.
  // Resolves dp when it is 0.
  ParallelLayout resolved(int world_size) const;
  std::string describe() const;   // "tp=2 pp=2 dp=2 sp=off zero=0 schedule=1f1b v=1 microbatches=4"
};

// A layout written compactly, as the benchmarks and the planner take it:
// "tp=2,pp=2,mb=4,schedule=interleaved,v=2,sp,zero" ("single": all defaults). dp stays 0 unless given.
ParallelLayout parse_layout_spec(const std::string& spec);

class ProcessGrid {
 public:
  // Collective over `world`: every rank must make the grid with the same layout.
  ProcessGrid(Communicator& world, const ParallelLayout& layout);
  ~ProcessGrid();
  ProcessGrid(const ProcessGrid&) = delete;
  ProcessGrid& operator=(const ProcessGrid&) = delete;

  const ParallelLayout& layout() const { return layout_; }
  int world_rank() const { return world_->rank(); }
  int world_size() const { return world_->size(); }
  int tp_rank() const { return tp_rank_; }
  int dp_rank() const { return dp_rank_; }
  int pp_rank() const { return pp_rank_; }
  bool is_first_stage() const { return pp_rank_ == 0; }
  bool is_last_stage() const { return pp_rank_ == layout_.pp - 1; }

  Communicator& world() const { return *world_; }
  Communicator& tp() const { return *tp_; }
  Communicator& dp() const { return *dp_; }
  Communicator& pp() const { return *pp_; }
  // The first and last pipeline stages of this (tp, dp) position, which hold the tied embedding;
  // null when pp == 1 or this rank is on neither stage.
  Communicator* embedding() const { return embedding_.get(); }

  // World rank of the rank at (tp, dp, pp) coordinates.
  int rank_of(int tp_rank, int dp_rank, int pp_rank) const;

 private:
  ParallelLayout layout_;
  Communicator* world_;
  int tp_rank_ = 0, dp_rank_ = 0, pp_rank_ = 0;
  std::unique_ptr<Communicator> tp_, dp_, pp_, embedding_;
};

}  // namespace tessera
