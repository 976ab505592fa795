// Data-parallel AdamW: bucketed gradient averaging overlapped with the backward, and ZeRO-1.
// Without zero1 the update is the single-process AdamW's on the averaged buffer (bitwise the
// same without dp); under zero1 the same kernel and hyperparameters run over each owned slice.
#include "tessera/distributed_optimizer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/ops.h"
#include "optim/adamw_step.h"
#include "parallel/grad_buckets.h"
#include "tessera/error.h"

namespace tessera {

using detail::FlatRange;

struct DistributedAdamW::Bucket {
  detail::BucketLayout layout;
  FlatRange owned;            // this rank's real part of the bucket under zero1, flat offsets
  int64_t state_offset = 0;   // where `owned` starts in master / m / v
  // This rank's slice of the parameters, updated by it and all-gathered from it: a view of the
  // parameter buffer itself when dp divides the bucket (the gather runs in place), else of
  // param_slices_buf_.
  Tensor slice;
  // The padded bucket the reduce-scatter works on: a view of grads when dp divides the bucket,
  // else the scratch copy. Rank r's averaged slice lands in place at [r * shard, (r + 1) * shard).
  Tensor reduced;
  // Only when dp does not divide the bucket: the padded copy of its gradients, reused after the
  // update as the all-gather's padded output.
  Buffer scratch;
};

// An owned slice ∩ one parameter: the unit of the zero1 update (weight decay is per parameter).
struct DistributedAdamW::Piece {
  size_t bucket, entry;
  FlatRange range;  // flat offsets, real parameter elements only
};

namespace {

// Sum of one double per rank, added in rank order on every rank (so all get bitwise the same
// value): the values travel as raw bytes through an all-gather, keeping double precision.
double sum_over(Context& ctx, Communicator& comm, double value, Device device) {
  const int n = comm.size();
  if (n == 1) return value;
  std::vector<double> host(size_t(n), 0.0);
  // two int32 words per double: all_gather copies bytes whatever the dtype
  Tensor mine_host(&value, {2}, DType::i32, Device::cpu);
  Tensor all_host(host.data(), {int64_t(2 * n)}, DType::i32, Device::cpu);
  if (device == Device::cpu) {
    comm.all_gather(all_host, mine_host).wait();
  } else {
    Buffer staging(ctx, size_t(2 * n + 2) * 4, device);
    Tensor all = staging.view({int64_t(2 * n + 2)}, DType::i32);
    Tensor mine = all.flat_range(2 * n, 2), gathered = all.flat_range(0, 2 * n);
    copy_tensor(ctx, mine, mine_host);
    comm.all_gather(gathered, mine).wait();
    copy_tensor(ctx, all_host, gathered);
  }
  double total = host[0];
  for (int r = 1; r < n; ++r) total += host[size_t(r)];
  return total;
}

Tensor view_f32(const Buffer& b, int64_t n) { return b.view({n}, DType::f32); }

}  // namespace

DistributedAdamW::DistributedAdamW(Context& ctx, const ParamTable& table, Tensor params, Tensor grads,
                                   const AdamWConfig& config, const DistributedOptions& options)
    : ctx_(&ctx), table_(&table), params_(params), grads_(grads), config_(config), options_(options) {
  detail::check_adamw_setup("DistributedAdamW", table, params, grads, config);
  if (params.device != ctx.device() || grads.device != ctx.device())
    throw config_error(fmt::format("DistributedAdamW: parameters {} and gradients {} must be on the context's "
                                   "device ({})",
                                   params.shape_str(), grads.shape_str(), device_name(ctx.device())));
  if (!options.norm_counts.empty() && options.norm_counts.size() != table.size())
    throw config_error(fmt::format("DistributedAdamW: norm_counts has {} entries for a table of {}",
                                   options.norm_counts.size(), table.size()),
                       "give one entry per parameter, or none");
  if (options.bucket_bytes == 0) throw config_error("DistributedAdamW: bucket_bytes must be positive");
  if (options.dp) {
    dp_size_ = options.dp->size();
    dp_rank_ = options.dp->rank();
  }

  for (const FlatRange& run : detail::counted_runs(table, options.norm_counts))
    counted_runs_.push_back({run.offset, run.count});

  for (const detail::BucketLayout& layout : detail::plan_grad_buckets(table, options.bucket_bytes, dp_size_)) {
    Bucket b;
    b.layout = layout;
    buckets_.push_back(std::move(b));
  }

  if (!options.zero1) {
    replicated_ = std::make_unique<AdamW>(ctx, table, params, grads, config);
    owned_ranges_.push_back({0, table.flat_numel()});
    return;
  }

  // ZeRO-1. State in increasing flat offset: the last bucket holds the first entries.
  const Device device = params.device;
  for (size_t k = buckets_.size(); k-- > 0;) {
    Bucket& b = buckets_[k];
    b.owned = b.layout.owned(dp_rank_);
    b.state_offset = owned_numel_;
    owned_numel_ += b.owned.count;
    if (b.owned.count > 0) owned_ranges_.push_back({b.owned.offset, b.owned.count});
    const int64_t padded = b.layout.padded(dp_size_);
    if (padded == b.layout.range.count) {
      b.reduced = grads.flat_range(b.layout.range.offset, b.layout.range.count);
      b.slice = params.flat_range(b.layout.range.offset + dp_rank_ * b.layout.shard, b.layout.shard);
    } else {
      b.scratch = Buffer(ctx, size_t(padded) * sizeof(float), device);
      b.reduced = view_f32(b.scratch, padded);
      slices_numel_ += b.layout.shard;
    }
    for (size_t e = b.layout.first_entry; e < b.layout.end_entry; ++e) {
      FlatRange r = detail::intersect(b.owned, {table.offset(e), table.numel(e)});
      if (r.count > 0) pieces_.push_back({k, e, r});
    }
  }
  // float32 parameters are their own master weights: the owned slices update in place.
  const size_t state_bytes = size_t(std::max<int64_t>(owned_numel_, 1)) * sizeof(float);
  if (params.dtype != DType::f32) master_buf_ = Buffer(ctx, state_bytes, device);
  m_buf_ = Buffer(ctx, state_bytes, device);
  v_buf_ = Buffer(ctx, state_bytes, device);
  if (slices_numel_ > 0) {
    param_slices_buf_ = Buffer(ctx, size_t(slices_numel_) * dtype_size(params.dtype), device);
    zero_tensor(ctx, param_slices());
  }
  zero_tensor(ctx, m());
  zero_tensor(ctx, v());
  int64_t slice_offset = 0;
  for (size_t k = buckets_.size(); k-- > 0;) {
    Bucket& b = buckets_[k];
    if (b.slice.empty()) {
      b.slice = param_slices().flat_range(slice_offset, b.layout.shard);
      slice_offset += b.layout.shard;
      if (b.owned.count > 0) ops::convert(ctx, b.slice.flat_range(0, b.owned.count),
                                          params.flat_range(b.owned.offset, b.owned.count));
    }
    if (b.owned.count > 0 && master_buf_.data())
      ops::convert(ctx, master().flat_range(b.state_offset, b.owned.count),
                   params.flat_range(b.owned.offset, b.owned.count));
  }
}

DistributedAdamW::~DistributedAdamW() = default;

Tensor DistributedAdamW::master() const {
  if (replicated_) return replicated_->master();
  if (!master_buf_.data()) return Tensor();  // float32 parameters are the master weights
  return view_f32(master_buf_, owned_numel_);
}
Tensor DistributedAdamW::param_slices() const {
  return Tensor(param_slices_buf_.data(), {slices_numel_}, params_.dtype, params_.device);
}
Tensor DistributedAdamW::m() const { return replicated_ ? replicated_->m() : view_f32(m_buf_, owned_numel_); }
Tensor DistributedAdamW::v() const { return replicated_ ? replicated_->v() : view_f32(v_buf_, owned_numel_); }

size_t DistributedAdamW::state_bytes() const {
  if (replicated_) return replicated_->state_bytes();
  size_t total = master_buf_.bytes() + m_buf_.bytes() + v_buf_.bytes() + param_slices_buf_.bytes();
  for (const Bucket& b : buckets_) total += b.scratch.bytes();
  return total;
}

void DistributedAdamW::set_step_count(int64_t n) {
  if (n < 0) throw config_error("DistributedAdamW: step count must not be negative");
  step_count_ = n;
  if (replicated_) replicated_->set_step_count(n);
}

void DistributedAdamW::state_loaded(int64_t step_count) {
  if (!works_.empty() || launched_ != 0 || synced_)
    throw config_error("DistributedAdamW: optimizer state loaded in the middle of a step",
                       "load a checkpoint between steps");
  set_step_count(step_count);
  norm_known_ = false;
  // Slices kept apart from the parameter buffer (buckets dp does not divide) are copies of it.
  for (Bucket& b : buckets_)
    if (b.scratch.data() && b.owned.count > 0)
      ops::convert(*ctx_, b.slice.flat_range(0, b.owned.count), params_.flat_range(b.owned.offset, b.owned.count));
}

std::vector<DistributedAdamW::BucketInfo> DistributedAdamW::buckets() const {
  std::vector<BucketInfo> out;
  for (const Bucket& b : buckets_)
    out.push_back({b.layout.first_entry, b.layout.end_entry, b.layout.range.offset, b.layout.range.count});
  return out;
}

void DistributedAdamW::launch_bucket(size_t k) {
  Bucket& b = buckets_[k];
  ++launched_;
  if (dp_size_ == 1) return;  // nothing to average; under zero1 the single slice is the bucket
  Communicator& dp = *options_.dp;
  const FlatRange range = b.layout.range;
  if (!options_.zero1) {
    works_.push_back(dp.all_reduce(grads_.flat_range(range.offset, range.count), ReduceOp::avg));
    return;
  }
  if (b.scratch.data()) {
    // The padding must be zero again: the previous step's all-gather wrote parameters there.
    zero_tensor(*ctx_, b.reduced.flat_range(range.count, b.reduced.numel() - range.count));
    ops::convert(*ctx_, b.reduced.flat_range(0, range.count), grads_.flat_range(range.offset, range.count));
  }
  // In place: rank r's output is chunk r of the input (both backends allow it: MPI writes the
  // output only after the exchange completed, NCCL documents in-place reduce-scatter).
  const int64_t shard = b.layout.shard;
  works_.push_back(dp.reduce_scatter(b.reduced.flat_range(int64_t(dp_rank_) * shard, shard), b.reduced, ReduceOp::avg));
}

void DistributedAdamW::grads_ready(size_t first_final_entry) {
  if (first_final_entry > table_->size())
    throw config_error(fmt::format("DistributedAdamW::grads_ready: entry {} is past the table's {} entries",
                                   first_final_entry, table_->size()));
  if (synced_)
    throw config_error("DistributedAdamW::grads_ready after finish_grad_sync() in the same step",
                       "call step() or skip_step() before the next step's backward");
  while (launched_ < buckets_.size() && buckets_[launched_].layout.first_entry >= first_final_entry)
    launch_bucket(launched_);
  // Polling drives the MPI backend's progress while the backward goes on.
  for (Work& w : works_) w.is_completed();
}

void DistributedAdamW::finish_grad_sync() {
  if (synced_) return;
  while (launched_ < buckets_.size()) launch_bucket(launched_);
  for (Work& w : works_) w.wait();  // in launch order on every rank
  works_.clear();
  synced_ = true;
}

void DistributedAdamW::skip_step() {
  finish_grad_sync();  // collectives already launched must complete on every rank alike
  launched_ = 0;
  synced_ = false;
  norm_known_ = false;
}

double DistributedAdamW::local_norm_squared() const {
  double total = 0.0;
  if (replicated_) {
    // Gradients are identical across dp: this rank's counted runs are the whole story.
    for (const OwnedRange& run : counted_runs_) total += ops::sum_of_squares(*ctx_, grads_.flat_range(run.offset, run.count));
    return total;
  }
  // Zero1: only the owned slices hold averaged gradients; dp ranks' parts are added later.
  for (size_t k = buckets_.size(); k-- > 0;) {
    const Bucket& b = buckets_[k];
    for (const OwnedRange& run : counted_runs_) {
      FlatRange r = detail::intersect(b.owned, {run.offset, run.count});
      if (r.count == 0) continue;
      total += ops::sum_of_squares(*ctx_, b.reduced.flat_range(r.offset - b.layout.range.offset, r.count));
    }
  }
  return total;
}

double DistributedAdamW::global_grad_norm() {
  finish_grad_sync();
  if (norm_known_) return norm_;
  double sum = local_norm_squared();
  if (options_.zero1 && dp_size_ > 1) sum = sum_over(*ctx_, *options_.dp, sum, params_.device);
  for (Communicator* group : options_.norm_groups)
    if (group) sum = sum_over(*ctx_, *group, sum, params_.device);
  norm_ = std::sqrt(sum);
  norm_known_ = true;
  return norm_;
}

void DistributedAdamW::zero1_update(float lr, double norm) {
  AdamWParams hp = detail::adamw_step_params(config_, lr, step_count_, norm);
  const Tensor all_master = master();
  for (const Piece& p : pieces_) {
    const Bucket& b = buckets_[p.bucket];
    const int64_t in_slice = p.range.offset - b.owned.offset;
    hp.weight_decay = detail::adamw_weight_decay(config_, (*table_)[p.entry]);
    ops::adamw_update(*ctx_, b.slice.flat_range(in_slice, p.range.count),
                      all_master.empty() ? Tensor() : all_master.flat_range(b.state_offset + in_slice, p.range.count),
                      m().flat_range(b.state_offset + in_slice, p.range.count),
                      v().flat_range(b.state_offset + in_slice, p.range.count),
                      b.reduced.flat_range(p.range.offset - b.layout.range.offset, p.range.count), hp);
  }
  // Every rank's updated slices back into every rank's parameter buffer.
  std::vector<Work> gathers;
  for (const Bucket& b : buckets_) {
    const FlatRange range = b.layout.range;
    Tensor mine = b.slice;
    Tensor whole = params_.flat_range(range.offset, range.count);
    if (dp_size_ == 1) {
      if (mine.data != whole.data) ops::convert(*ctx_, whole, mine);
      continue;
    }
    // The averaged gradients are consumed: a padded bucket's scratch takes the padded parameters.
    Tensor target = whole;
    if (b.scratch.data()) target = Tensor(b.scratch.data(), {b.layout.padded(dp_size_)}, params_.dtype, params_.device);
    gathers.push_back(options_.dp->all_gather(target, mine));
  }
  size_t g = 0;
  for (const Bucket& b : buckets_) {
    if (dp_size_ == 1) break;
    gathers[g++].wait();
    if (!b.scratch.data()) continue;
    const FlatRange range = b.layout.range;
    Tensor padded(b.scratch.data(), {b.layout.padded(dp_size_)}, params_.dtype, params_.device);
    ops::convert(*ctx_, params_.flat_range(range.offset, range.count), padded.flat_range(0, range.count));
  }
}

float DistributedAdamW::step(float lr) {
  const double norm = global_grad_norm();
  if (replicated_)
    replicated_->step(lr, norm);
  else
    zero1_update(lr, norm);
  ++step_count_;
  launched_ = 0;
  synced_ = false;
  norm_known_ = false;
  return float(norm);
}

}  // namespace tessera
