// DistributedAdamW under mpirun: bucketed data-parallel averaging and ZeRO-1 against one process
// running AdamW on the dp-average of every rank's gradients (which every rank computes locally,
// since each rank's gradients come from a fixed seed), the global norm over dp shards and other
// groups, progressive bucket launches, and run-to-run reproducibility.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "parallel/world.h"
#include "support/test_support.h"
#include "tessera/buffer.h"
#include "tessera/communicator.h"
#include "tessera/distributed_optimizer.h"
#include "tessera/error.h"
#include "tessera/optimizer.h"
#include "tessera/param_table.h"

using namespace tessera;
using test::world;
using test::bitwise_equal;
using test::round_to_bf16;

namespace {

constexpr int kSteps = 4;

// A few parameters of odd sizes, decayed and not, with alignment padding between them.
ParamTable make_table() {
  ParamTable t;
  auto add = [&](const char* name, std::vector<int64_t> shape, bool decay) {
    ParamSpec s;
    s.name = name;
    s.shape = std::move(shape);
    s.weight_decay = decay;
    t.add(s);
  };
  add("wte.weight", {37, 9}, true);
  add("ln.weight", {9}, false);  // the "replicated across tp" one in the norm-group test
  add("ln.bias", {9}, false);
  add("fc.weight", {23, 9}, true);
  add("fc.bias", {23}, false);
  add("proj.weight", {9, 23}, true);
  add("head.weight", {5, 7}, true);
  return t;
}

const ParamTable& table() {
  static const ParamTable t = make_table();
  return t;
}

// Flat host vector laid out by the table: each entry from its own seed, padding zero.
std::vector<float> flat_values(uint64_t seed, float stddev) {
  const ParamTable& t = table();
  std::vector<float> flat(size_t(t.flat_numel()), 0.0f);
  for (size_t i = 0; i < t.size(); ++i) {
    auto v = test::random_normal(size_t(t.numel(i)), seed * 131 + i, stddev);
    std::copy(v.begin(), v.end(), flat.begin() + t.offset(i));
  }
  return flat;
}

std::vector<float> initial_params() { return flat_values(7, 0.5f); }
// What world rank `rank` computes in its backward at `step` (a different gradient per rank).
std::vector<float> rank_grads(int rank, int step, float stddev) {
  return flat_values(1000 + 97 * uint64_t(rank) + 13 * uint64_t(step), stddev);
}
float lr_at(int step) { return 0.01f * float(step + 1); }

// The dp-average as the MPI backend computes it: sum in rank order, then times 1/n.
std::vector<float> average(const std::vector<int>& ranks, int step, float stddev) {
  std::vector<float> acc = rank_grads(ranks[0], step, stddev);
  for (size_t k = 1; k < ranks.size(); ++k) {
    auto g = rank_grads(ranks[k], step, stddev);
    for (size_t j = 0; j < acc.size(); ++j) acc[j] += g[j];
  }
  const float inv = 1.0f / float(ranks.size());
  for (float& x : acc) x *= inv;
  return acc;
}

struct Buffers {
  Buffer param_storage, grad_storage;
  Tensor params, grads;
  Buffers() {
    Context& ctx = test::cpu_context();
    const int64_t n = table().flat_numel();
    param_storage = Buffer(ctx, size_t(n) * 4, Device::cpu);
    grad_storage = Buffer(ctx, size_t(n) * 4, Device::cpu);
    params = param_storage.view({n}, DType::f32);
    grads = grad_storage.view({n}, DType::f32);
    auto p = initial_params();
    std::memcpy(params.data, p.data(), p.size() * 4);
  }
  void set_grads(const std::vector<float>& g) { std::memcpy(grads.data, g.data(), g.size() * 4); }
  std::vector<float> param_values() const {
    return std::vector<float>(params.ptr<float>(), params.ptr<float>() + params.numel());
  }
};

struct Result {
  std::vector<float> params;
  std::vector<float> norms;
  std::vector<float> m;  // AdamW's first moment over the whole flat buffer (reference only)
};

// One process: AdamW on the dp-average of `dp_ranks`' gradients, with the given global norms
// (or its own norm when `norms` is empty).
Result reference(const std::vector<int>& dp_ranks, const AdamWConfig& config, float stddev,
                 const std::vector<double>& norms = {}) {
  Buffers b;
  AdamW opt(test::cpu_context(), table(), b.params, b.grads, config);
  Result r;
  for (int s = 0; s < kSteps; ++s) {
    b.set_grads(average(dp_ranks, s, stddev));
    r.norms.push_back(norms.empty() ? opt.step(lr_at(s)) : opt.step(lr_at(s), norms[size_t(s)]));
  }
  r.params = b.param_values();
  r.m = test::download(test::cpu_context(), opt.m());
  return r;
}

// This rank's run of DistributedAdamW, announcing gradients entry by entry as a backward would.
struct Run {
  std::unique_ptr<Buffers> buffers = std::make_unique<Buffers>();
  std::unique_ptr<DistributedAdamW> opt;
  Result result;
};

Run run_distributed(const DistributedOptions& options, const AdamWConfig& config, int world_rank, float stddev) {
  Run run;
  Buffers& b = *run.buffers;
  run.opt = std::make_unique<DistributedAdamW>(test::cpu_context(), table(), b.params, b.grads, config, options);
  for (int s = 0; s < kSteps; ++s) {
    b.set_grads(rank_grads(world_rank, s, stddev));
    for (size_t i = table().size(); i-- > 0;) run.opt->grads_ready(i);
    run.result.norms.push_back(run.opt->step(lr_at(s)));
  }
  run.result.params = b.param_values();
  return run;
}


std::vector<int> all_ranks() {
  std::vector<int> r;
  for (int k = 0; k < world().size(); ++k) r.push_back(k);
  return r;
}

AdamWConfig no_clip_config() {
  AdamWConfig c;
  c.weight_decay = 0.1f;
  c.grad_clip = 0.0f;
  return c;
}

}  // namespace

TEST_CASE("distributed optimizer: without dp it is bitwise the single-process AdamW", "[dist-optim]") {
  AdamWConfig config;  // clipping on (norms here exceed 1)
  config.grad_clip = 1.0f;
  const int me = world().rank();
  Result want = reference({me}, config, 0.1f);
  REQUIRE(want.norms[0] > 1.0f);
  DistributedOptions options;  // dp null
  options.bucket_bytes = 300 * 4;
  Result got = run_distributed(options, config, me, 0.1f).result;
  CHECK(bitwise_equal(got.params, want.params));
  CHECK(bitwise_equal(got.norms, want.norms));
}

TEST_CASE("distributed optimizer: data-parallel averaging equals one process on the whole batch",
          "[dist-optim]") {
  const AdamWConfig config = no_clip_config();
  Result want = reference(all_ranks(), config, 0.05f);
  DistributedOptions options;
  options.dp = &world();
  options.bucket_bytes = 256 * 4;
  Result got = run_distributed(options, config, world().rank(), 0.05f).result;
  CHECK(test::max_relative_error(got.params, want.params) < 1e-6);
  CHECK(test::max_relative_error(got.norms, want.norms) < 1e-6);
  // Parameters really moved (the comparison is not between two untouched buffers).
  CHECK(test::max_abs_error(got.params, initial_params()) > 1e-3);
}

TEST_CASE("distributed optimizer: ZeRO-1 equals one process and shards its state", "[dist-optim]") {
  const AdamWConfig config = no_clip_config();
  const int dp = world().size();
  Result want = reference(all_ranks(), config, 0.05f);
  DistributedOptions options;
  options.dp = &world();
  options.bucket_bytes = 256 * 4;
  const size_t plain_bytes = run_distributed(options, config, world().rank(), 0.05f).opt->state_bytes();
  options.zero1 = true;
  Run run = run_distributed(options, config, world().rank(), 0.05f);
  const Result& got = run.result;
  DistributedAdamW* opt = run.opt.get();
  const size_t zero_bytes = opt->state_bytes();
  CHECK(test::max_relative_error(got.params, want.params) < 1e-6);
  CHECK(test::max_relative_error(got.norms, want.norms) < 1e-6);

  // The owned ranges tile this rank's share; over all ranks they tile the flat buffer once.
  int64_t owned = 0;
  for (const auto& r : opt->owned_ranges()) owned += r.count;
  std::vector<float> owned_all(size_t(dp), 0.0f);
  float mine = float(owned);
  world().all_gather(Tensor(owned_all.data(), {dp}, DType::f32, Device::cpu),
                     Tensor(&mine, {1}, DType::f32, Device::cpu))
      .wait();
  double total = 0;
  for (float x : owned_all) total += x;
  CHECK(int64_t(total) == table().flat_numel());
  CHECK(owned <= table().flat_numel() / dp + 64);

  // float32 parameters are their own master weights (no copy); m holds the reference's first
  // moments over the owned ranges.
  CHECK(opt->master().empty());
  auto m = test::download(test::cpu_context(), opt->m());
  REQUIRE(int64_t(m.size()) == owned);
  std::vector<float> want_m;
  for (const auto& r : opt->owned_ranges())
    for (int64_t j = r.offset; j < r.offset + r.count; ++j) want_m.push_back(want.m[size_t(j)]);
  CHECK(test::max_relative_error(m, want_m, 1e-4) < 1e-5);

  // State: m and v for this rank's share only, where the plain optimizer keeps m and v of
  // everything; so it falls by dp. A dp that does not divide the buckets (odd dp) adds padded
  // scratch copies of them, so the exact size is checked where it divides.
  CHECK(plain_bytes == size_t(2 * 4 * table().flat_numel()));
  if (64 % dp == 0) {
    CHECK(zero_bytes == size_t(4 * 2 * owned));
    CHECK(zero_bytes * size_t(dp) <= plain_bytes + size_t(dp) * 64 * 8);
  }
}

TEST_CASE("distributed optimizer: clipping uses the true global norm", "[dist-optim]") {
  AdamWConfig config;
  config.grad_clip = 0.5f;
  Result want = reference(all_ranks(), config, 0.2f);
  for (float n : want.norms) REQUIRE(n > 1.0f);  // clipping triggers at every step
  for (bool zero1 : {false, true}) {
    DistributedOptions options;
    options.dp = &world();
    options.zero1 = zero1;
    options.bucket_bytes = 100 * 4;
    Result got = run_distributed(options, config, world().rank(), 0.2f).result;
    INFO("zero1 " << zero1);
    CHECK(test::max_relative_error(got.norms, want.norms) < 1e-6);
    CHECK(test::max_relative_error(got.params, want.params) < 1e-6);
  }
}

TEST_CASE("distributed optimizer: buckets launch as the backward declares gradients final", "[dist-optim]") {
  const ParamTable& t = table();
  Buffers b;
  DistributedOptions options;
  options.dp = &world();
  options.bucket_bytes = 1;  // every parameter in a bucket of its own
  DistributedAdamW opt(test::cpu_context(), t, b.params, b.grads, no_clip_config(), options);
  auto buckets = opt.buckets();
  REQUIRE(buckets.size() == t.size());
  for (size_t k = 0; k < buckets.size(); ++k) {
    CHECK(buckets[k].first_entry == t.size() - 1 - k);  // reverse table order
    CHECK(buckets[k].offset == t.offset(buckets[k].first_entry));
  }
  b.set_grads(rank_grads(world().rank(), 0, 0.05f));
  CHECK(opt.launched_buckets() == 0);
  opt.grads_ready(t.size());  // nothing final yet
  CHECK(opt.launched_buckets() == 0);
  opt.grads_ready(t.size() - 1);
  CHECK(opt.launched_buckets() == 1);
  opt.grads_ready(t.size() - 3);
  CHECK(opt.launched_buckets() == 3);
  opt.grads_ready(t.size() - 3);  // repeating is harmless
  CHECK(opt.launched_buckets() == 3);
  opt.finish_grad_sync();
  CHECK(opt.launched_buckets() == t.size());
  auto avg = average(all_ranks(), 0, 0.05f);
  CHECK(test::max_relative_error(test::download(test::cpu_context(), b.grads), avg) == 0.0);
  opt.step(0.01f);
  CHECK(opt.launched_buckets() == 0);

  // Buckets of several parameters: a bucket launches once its lowest entry is final.
  DistributedOptions grouped = options;
  grouped.bucket_bytes = 400 * 4;
  DistributedAdamW opt2(test::cpu_context(), t, b.params, b.grads, no_clip_config(), grouped);
  auto groups = opt2.buckets();
  REQUIRE(groups.size() > 1);
  REQUIRE(groups.size() < t.size());
  for (size_t i = t.size(); i-- > 0;) {
    opt2.grads_ready(i);
    size_t ready = 0;
    for (const auto& g : groups) ready += g.first_entry >= i ? 1 : 0;
    CHECK(opt2.launched_buckets() == ready);
  }
  opt2.finish_grad_sync();

  // Many tiny buckets give the result of one big bucket.
  for (bool zero1 : {false, true}) {
    INFO("zero1 " << zero1);
    DistributedOptions tiny = options, big = options;
    tiny.zero1 = big.zero1 = zero1;
    big.bucket_bytes = size_t(1) << 30;
    Result a = run_distributed(tiny, no_clip_config(), world().rank(), 0.05f).result;
    Result c = run_distributed(big, no_clip_config(), world().rank(), 0.05f).result;
    if (zero1)
      CHECK(test::max_relative_error(a.params, c.params) < 1e-6);  // the norm sums in another order
    else
      CHECK(bitwise_equal(a.params, c.params));
  }
}

TEST_CASE("distributed optimizer: the norm sums over other groups and skips replicated copies",
          "[dist-optim]") {
  // World = dp x tp with tp fastest: tp group {g*tp .. g*tp+tp-1}, dp group {t, t+tp, ...}.
  const int world_size = world().size(), me = world().rank();
  const int tp = world_size % 2 == 0 ? 2 : 1;
  const int tp_rank = me % tp;
  auto tp_group = world().split(me / tp, me);
  auto dp_group = world().split(tp_rank, me);
  REQUIRE(tp_group->rank() == tp_rank);
  const size_t replicated = 1;  // "ln.weight": every tp rank holds a copy; only tp rank 0's counts
  std::vector<uint8_t> counts(table().size(), 1);
  counts[replicated] = tp_rank == 0 ? 1 : 0;

  auto dp_ranks_of = [&](int t) {
    std::vector<int> r;
    for (int k = t; k < world_size; k += tp) r.push_back(k);
    return r;
  };
  // Reference norm: each tp rank's dp-averaged gradient, counted entries only, summed over tp.
  AdamWConfig config;
  config.grad_clip = 0.5f;
  const float stddev = 0.2f;
  std::vector<double> norms;
  for (int s = 0; s < kSteps; ++s) {
    double sum = 0;
    for (int t = 0; t < tp; ++t) {
      auto avg = average(dp_ranks_of(t), s, stddev);
      for (size_t i = 0; i < table().size(); ++i) {
        if (i == replicated && t != 0) continue;
        for (int64_t j = 0; j < table().numel(i); ++j) {
          double g = avg[size_t(table().offset(i) + j)];
          sum += g * g;
        }
      }
    }
    norms.push_back(std::sqrt(sum));
  }
  Result want = reference(dp_ranks_of(tp_rank), config, stddev, norms);

  for (bool zero1 : {false, true}) {
    INFO("zero1 " << zero1 << ", tp " << tp);
    DistributedOptions options;
    options.dp = dp_group.get();
    options.zero1 = zero1;
    options.bucket_bytes = 128 * 4;
    options.norm_groups = {tp_group.get()};
    options.norm_counts = counts;
    Result got = run_distributed(options, config, me, stddev).result;
    for (int s = 0; s < kSteps; ++s) CHECK(std::abs(got.norms[size_t(s)] - norms[size_t(s)]) <= 1e-6 * norms[size_t(s)]);
    CHECK(test::max_relative_error(got.params, want.params) < 1e-6);
    // Every rank of the world got bitwise the same norms.
    std::vector<float> everyone(size_t(world_size * kSteps));
    world().all_gather(Tensor(everyone.data(), {int64_t(everyone.size())}, DType::f32, Device::cpu),
                       Tensor(got.norms.data(), {kSteps}, DType::f32, Device::cpu))
        .wait();
    for (int r = 0; r < world_size; ++r)
      CHECK(std::memcmp(everyone.data() + r * kSteps, everyone.data(), kSteps * sizeof(float)) == 0);
  }
}

TEST_CASE("distributed optimizer: two runs are bitwise identical", "[dist-optim]") {
  AdamWConfig config;
  config.grad_clip = 0.5f;
  for (bool zero1 : {false, true}) {
    INFO("zero1 " << zero1);
    DistributedOptions options;
    options.dp = &world();
    options.zero1 = zero1;
    options.bucket_bytes = 200 * 4;
    Result a = run_distributed(options, config, world().rank(), 0.2f).result;
    Result b = run_distributed(options, config, world().rank(), 0.2f).result;
    CHECK(bitwise_equal(a.params, b.params));
    CHECK(bitwise_equal(a.norms, b.norms));
  }
}

TEST_CASE("distributed optimizer: rejects a norm_counts of the wrong length", "[dist-optim]") {
  Buffers b;
  DistributedOptions options;
  options.norm_counts = {1, 0};
  CHECK_THROWS_AS(DistributedAdamW(test::cpu_context(), table(), b.params, b.grads, AdamWConfig{}, options), Error);
}

TEST_CASE("distributed optimizer: GPU tensors (f32 and bf16 parameters) match one process on the GPU",
          "[dist-optim]") {
  TESSERA_REQUIRE_GPU(gpu);  // the same on every rank: all skip or all run
  Context& ctx = *gpu;
  auto comm = make_mpi_communicator(ctx);  // staged through the host: ranks may share one GPU
  const int64_t n = table().flat_numel();
  const AdamWConfig config = no_clip_config();
  for (DType dtype : {DType::f32, DType::bf16}) {
    auto run = [&](bool distributed, bool zero1) {
      auto params = test::upload(ctx, initial_params(), {n}, dtype);
      auto grads = test::upload(ctx, std::vector<float>(size_t(n), 0.0f), {n});
      DistributedOptions options;
      options.dp = comm.get();
      options.zero1 = zero1;
      options.bucket_bytes = 256 * 4;
      std::unique_ptr<AdamW> single;
      std::unique_ptr<DistributedAdamW> dist;
      if (distributed)
        dist = std::make_unique<DistributedAdamW>(ctx, table(), params.tensor, grads.tensor, config, options);
      else
        single = std::make_unique<AdamW>(ctx, table(), params.tensor, grads.tensor, config);
      for (int s = 0; s < kSteps; ++s) {
        auto g = distributed ? rank_grads(comm->rank(), s, 0.05f) : average(all_ranks(), s, 0.05f);
        copy_tensor(ctx, grads.tensor, Tensor(g.data(), {n}, DType::f32, Device::cpu));
        if (distributed) {
          for (size_t i = table().size(); i-- > 0;) dist->grads_ready(i);
          dist->step(lr_at(s));
        } else {
          single->step(lr_at(s));
        }
      }
      ctx.synchronize();
      return test::download(ctx, params.tensor);
    };
    const auto want = run(false, false);
    for (bool zero1 : {false, true}) {
      INFO(dtype_name(dtype) << " zero1 " << zero1);
      CHECK(test::max_relative_error(run(true, zero1), want) < (dtype == DType::f32 ? 1e-6 : 1e-2));
    }
  }
}
