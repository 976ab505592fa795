// AdamW across data-parallel ranks (as Megatron-Core's distributed optimizer): gradients are
// averaged over the data-parallel group in buckets launched while the backward still runs, and
// under ZeRO-1 each rank keeps the fp32 master weights and the AdamW moments of its own slices
// only, updates those, and all-gathers the parameters back.
//
// It knows no model: it works on a ParamTable of this rank's LOCAL parameters (shapes already
// split by tensor parallelism, only this pipeline stage's layers) and the flat parameter and
// gradient buffers laid out by it.
//
// Buckets are contiguous ranges of the flat buffer holding whole parameters, built in reverse
// table order (the backward produces the last layers' gradients first), up to bucket_bytes of
// float32 gradients each (a larger parameter gets a bucket of its own). Under ZeRO-1 each bucket
// is split into dp equal slices (its element count padded up to a multiple of dp in a scratch
// copy where needed); rank r owns slice r of every bucket.
//
// Every rank of the data-parallel group must make the same calls in the same order (the
// collectives are matched by order); only how far each grads_ready() call reaches may differ.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "tessera/buffer.h"
#include "tessera/communicator.h"
#include "tessera/context.h"
#include "tessera/optimizer.h"
#include "tessera/param_table.h"
#include "tessera/tensor.h"

namespace tessera {

struct DistributedOptions {
  Communicator* dp = nullptr;  // data-parallel group (null or size 1: no DP). Gradients are AVERAGED over it.
  bool zero1 = false;          // ZeRO-1: shard fp32 master weights and AdamW m/v over dp
  size_t bucket_bytes = size_t(25) << 20;  // bucket size target in float32 gradient bytes
  // Other groups over which ranks hold DIFFERENT gradients (tensor- and pipeline-parallel
  // groups): the global gradient norm sums over them, in this order, after dp.
  std::vector<Communicator*> norm_groups;
  // Per table entry: 1 if this rank's copy counts toward the norm; 0 for a parameter replicated
  // across tensor-parallel ranks on tp rank != 0. Empty: every entry counts.
  std::vector<uint8_t> norm_counts;
};

class DistributedAdamW {
 public:
  // params (f32 or bf16) and grads (f32) are the flat buffers laid out by `table`, on the
  // context's device; they, the table and the communicators must outlive the optimizer.
  // Without zero1 the state is AdamW's (m, v, and a master for bf16 params); under zero1 every
  // rank keeps an fp32 master (initialised from params), m and v for its slices only.
  DistributedAdamW(Context& ctx, const ParamTable& table, Tensor params, Tensor grads, const AdamWConfig& config,
                   const DistributedOptions& options);
  ~DistributedAdamW();
  DistributedAdamW(const DistributedAdamW&) = delete;
  DistributedAdamW& operator=(const DistributedAdamW&) = delete;

  // Backward-overlap hook: gradients of table entries first_final_entry, ..., size()-1 are final
  // (call it with decreasing entries as the backward proceeds, in the last micro-batch of a step
  // only). Every bucket whose entries are now all final is launched asynchronously: all_reduce
  // (avg), or reduce_scatter (avg) under zero1, on the dp communicator.
  void grads_ready(size_t first_final_entry);
  // Launches the buckets not launched yet and waits for all. Afterwards, without zero1, grads
  // holds the dp-averaged gradients; under zero1 the slices this rank owns do (the rest of
  // grads is unspecified). Calling it again before step() does nothing.
  void finish_grad_sync();
  // Global gradient norm, clipping, AdamW update (weight decay per table entry) and, under zero1,
  // the all-gather of the updated parameters. Calls finish_grad_sync() first if needed. Returns
  // the norm before clipping (the same on every rank).
  float step(float lr);
  // Ends a step without an update (e.g. a non-finite loss): the next grads_ready() or
  // finish_grad_sync() starts a new reduction.
  void skip_step();
  // sqrt of the sum of squares over every counted parameter across dp shards (zero1) and
  // norm_groups; the value step() uses. Calls finish_grad_sync() first if needed; computed once
  // per step (it is collective: every rank must call it, or none).
  double global_grad_norm();

  int64_t step_count() const { return step_count_; }  // the next update uses step_count() + 1
  void set_step_count(int64_t n);

  // Bytes this optimizer allocated on this rank: master, m and v, plus under zero1 the slice of
  // updated parameters it all-gathers from (and padded scratch copies of buckets whose size dp
  // does not divide). Falls by about dp under zero1.
  size_t state_bytes() const;

  // This rank's optimizer state as flat ranges, for checkpoints: the ranges of the flat
  // parameter buffer it owns (all of it without zero1), in increasing offset, and its master,
  // m and v values for those ranges, concatenated in the same order (f32). master() is empty
  // when params are f32 and zero1 is off (the parameters are their own master).
  struct OwnedRange {
    int64_t offset, count;
  };
  const std::vector<OwnedRange>& owned_ranges() const { return owned_ranges_; }
  Tensor master() const;
  Tensor m() const;
  Tensor v() const;
  // Loading a checkpoint, between steps: after the caller wrote the parameters into the params
  // buffer and master, m and v through the views above, re-derives the copies of this rank's
  // parameter slices the zero1 update works on and sets the step count.
  void state_loaded(int64_t step_count);

  // Introspection (tests, logs): buckets in launch order, and how many have been launched in
  // the current step.
  struct BucketInfo {
    size_t first_entry, end_entry;  // table entries [first_entry, end_entry)
    int64_t offset, count;          // flat range [offset, offset + count)
  };
  std::vector<BucketInfo> buckets() const;
  size_t launched_buckets() const { return launched_; }

  const AdamWConfig& config() const { return config_; }
  const DistributedOptions& options() const { return options_; }

 private:
  struct Bucket;
  struct Piece;

  void launch_bucket(size_t b);
  double local_norm_squared() const;
  void zero1_update(float lr, double norm);
  Tensor param_slices() const;

  Context* ctx_;
  const ParamTable* table_;
  Tensor params_, grads_;
  AdamWConfig config_;
  DistributedOptions options_;
  int dp_size_ = 1, dp_rank_ = 0;

  std::vector<Bucket> buckets_;
  std::vector<Work> works_;  // one per launched bucket, in launch order
  size_t launched_ = 0;
  bool synced_ = false;
  bool norm_known_ = false;
  double norm_ = 0.0;
  int64_t step_count_ = 0;

  // Counted parts of the flat buffer, as merged [offset, offset + count) runs.
  std::vector<OwnedRange> counted_runs_;
  std::vector<OwnedRange> owned_ranges_;

  // Without zero1: single-process AdamW over the whole (averaged) buffer.
  std::unique_ptr<AdamW> replicated_;
  // Under zero1: state for the owned ranges, and the updated owned slices to all-gather from.
  Buffer master_buf_, m_buf_, v_buf_, param_slices_buf_;
  int64_t owned_numel_ = 0, slices_numel_ = 0;
  std::vector<Piece> pieces_;  // owned slice ∩ parameter, the units of the update
};

}  // namespace tessera
