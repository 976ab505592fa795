// Every collective of the Communicator interface on every backend this machine has: the MPI backend
// with CPU tensors, the MPI backend with GPU tensors (staged), and NCCL (one GPU per rank only).
// Inputs differ per rank and are known to every rank, so each rank checks its result exactly:
// reductions add in rank order, as the MPI backend promises.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"
#include "tessera/communicator.h"
#include "tessera/error.h"

using namespace tessera;

namespace {

// Values a given rank contributes (never zero, distinct per rank and index).
std::vector<float> rank_values(int rank, int64_t n, uint64_t salt) {
  return test::random_uniform(size_t(n), 1000003ull * uint64_t(rank + 1) + salt, 0.5f, 1.5f);
}

struct Backend {
  std::string name;
  Context* ctx;
  std::unique_ptr<Communicator> comm;
};

// The backends available here. GPU ones are listed only when this rank has a GPU.
std::vector<Backend>& backends() {
  static std::vector<Backend> list = [] {
    std::vector<Backend> b;
    Context& cpu = test::cpu_context();
    b.push_back({"mpi/cpu", &cpu, make_mpi_communicator(cpu)});
    std::string reason;
    if (Context* gpu = test::gpu_context(&reason)) {
      b.push_back({"mpi/gpu-staged", gpu, make_mpi_communicator(*gpu)});
      auto chosen = make_communicator(*gpu);
      if (std::string(chosen->backend()) == "nccl") b.push_back({"nccl", gpu, std::move(chosen)});
    }
    return b;
  }();
  return list;
}

const std::vector<int64_t> kSizes = {1, 7, 1000, 4099, 65537, 1 << 20};

void expect_equal(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  REQUIRE(got.size() == want.size());
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) bad += got[i] == want[i] ? 0 : 1;
  INFO(what << ": " << bad << " of " << got.size() << " elements differ");
  CHECK(bad == 0);
}

}  // namespace

// The GPU check asks for the GPU backends by environment (TESSERA_REQUIRE_GPU=1: a GPU per rank, so
// the staged MPI backend runs on it; TESSERA_REQUIRE_NCCL=1: NCCL too): without them the tests
// below would pass on the CPU backend alone.
TEST_CASE("collectives: the GPU backends the environment requires are here", "[collectives]") {
  auto has = [](const char* name) {
    for (const auto& be : backends())
      if (be.name == name) return true;
    return false;
  };
  std::string reason;
  test::gpu_context(&reason);
  if (test::gpu_required()) {
    INFO("TESSERA_REQUIRE_GPU=1: " << reason);
    CHECK(has("mpi/gpu-staged"));
  }
  const char* nccl = std::getenv("TESSERA_REQUIRE_NCCL");
  if (nccl != nullptr && std::string(nccl) == "1") {
    INFO("TESSERA_REQUIRE_NCCL=1: NCCL runs only when every rank has a GPU of its own");
    CHECK(has("nccl"));
  }
}

TEST_CASE("collectives: all_reduce sum, avg and max in rank order", "[collectives]") {
  for (auto& be : backends()) {
    Communicator& comm = *be.comm;
    for (int64_t n : kSizes) {
      for (ReduceOp op : {ReduceOp::sum, ReduceOp::avg, ReduceOp::max}) {
        auto mine = rank_values(comm.rank(), n, 1);
        auto data = test::upload(*be.ctx, mine, {n});
        comm.all_reduce(data.tensor, op).wait();
        std::vector<float> want(static_cast<size_t>(n));
        std::vector<std::vector<float>> all;
        for (int r = 0; r < comm.size(); ++r) all.push_back(rank_values(r, n, 1));
        for (int64_t i = 0; i < n; ++i) {
          float acc = all[0][size_t(i)];
          for (int r = 1; r < comm.size(); ++r)
            acc = op == ReduceOp::max ? std::max(acc, all[size_t(r)][size_t(i)]) : acc + all[size_t(r)][size_t(i)];
          want[size_t(i)] = op == ReduceOp::avg ? acc * (1.0f / float(comm.size())) : acc;
        }
        auto got = test::download(*be.ctx, data.tensor);
        if (be.name == "nccl") {
          CHECK(test::max_relative_error(got, want) < 1e-6);  // NCCL's order is its own
        } else {
          expect_equal(got, want, be.name + " all_reduce n=" + std::to_string(n));
        }
      }
    }
  }
}

TEST_CASE("collectives: reduce_scatter gives each rank its reduced chunk", "[collectives]") {
  for (auto& be : backends()) {
    Communicator& comm = *be.comm;
    for (int64_t n : {int64_t(1), int64_t(513), int64_t(100003)}) {
      auto input = test::upload(*be.ctx, rank_values(comm.rank(), n * comm.size(), 2), {n * comm.size()});
      auto output = test::poisoned(*be.ctx, {n});
      comm.reduce_scatter(output.tensor, input.tensor, ReduceOp::sum).wait();
      std::vector<float> want(static_cast<size_t>(n));
      for (int r = 0; r < comm.size(); ++r) {
        auto theirs = rank_values(r, n * comm.size(), 2);
        for (int64_t i = 0; i < n; ++i) {
          float v = theirs[size_t(comm.rank() * n + i)];
          want[size_t(i)] = r == 0 ? v : want[size_t(i)] + v;
        }
      }
      auto got = test::download(*be.ctx, output.tensor);
      if (be.name == "nccl")
        CHECK(test::max_relative_error(got, want) < 1e-6);
      else
        expect_equal(got, want, be.name + " reduce_scatter n=" + std::to_string(n));
    }
  }
}

TEST_CASE("collectives: all_gather concatenates in rank order (f32 and bf16)", "[collectives]") {
  for (auto& be : backends()) {
    Communicator& comm = *be.comm;
    for (DType dtype : {DType::f32, DType::bf16}) {
      for (int64_t n : {int64_t(1), int64_t(333), int64_t(262147)}) {
        auto mine = rank_values(comm.rank(), n, 3);
        test::DeviceTensor input;
        input.buffer = Buffer::for_tensor(*be.ctx, {n}, dtype);
        input.tensor = input.buffer.view({n}, dtype);
        {
          // bf16 on the CPU: fill through host conversion (upload only makes f32 on a CPU context)
          auto staged = test::upload(*be.ctx, mine, {n});
          if (dtype == DType::f32) {
            copy_tensor(*be.ctx, input.tensor, staged.tensor);
          } else {
            std::vector<bf16> h(static_cast<size_t>(n));
            for (int64_t i = 0; i < n; ++i) h[size_t(i)] = float_to_bf16(mine[size_t(i)]);
            copy_tensor(*be.ctx, input.tensor, Tensor(h.data(), {n}, DType::bf16, Device::cpu));
          }
        }
        auto output = test::poisoned(*be.ctx, {n * comm.size()}, dtype);
        comm.all_gather(output.tensor, input.tensor).wait();
        auto got = test::download(*be.ctx, output.tensor);
        std::vector<float> want;
        for (int r = 0; r < comm.size(); ++r) {
          auto theirs = rank_values(r, n, 3);
          for (float v : theirs) want.push_back(dtype == DType::bf16 ? bf16_to_float(float_to_bf16(v)) : v);
        }
        expect_equal(got, want, be.name + " all_gather n=" + std::to_string(n));
      }
    }
  }
}

TEST_CASE("collectives: broadcast from every root", "[collectives]") {
  for (auto& be : backends()) {
    Communicator& comm = *be.comm;
    for (int root = 0; root < comm.size(); ++root) {
      const int64_t n = 4097;
      auto data = test::upload(*be.ctx, rank_values(comm.rank(), n, 4), {n});
      comm.broadcast(data.tensor, root).wait();
      expect_equal(test::download(*be.ctx, data.tensor), rank_values(root, n, 4),
                   be.name + " broadcast root " + std::to_string(root));
    }
  }
}

TEST_CASE("collectives: batched send/recv around a ring in both directions", "[collectives]") {
  for (auto& be : backends()) {
    Communicator& comm = *be.comm;
    const int next = (comm.rank() + 1) % comm.size(), prev = (comm.rank() + comm.size() - 1) % comm.size();
    for (int64_t n : {int64_t(1), int64_t(1000), int64_t(300001)}) {
      auto to_next = test::upload(*be.ctx, rank_values(comm.rank(), n, 5), {n});
      auto to_prev = test::upload(*be.ctx, rank_values(comm.rank(), n, 6), {n});
      auto from_prev = test::poisoned(*be.ctx, {n});
      auto from_next = test::poisoned(*be.ctx, {n});
      // Receives listed before sends on purpose: a batch must not deadlock whatever its order.
      comm.exchange({{PeerTransfer::Kind::recv, from_prev.tensor, prev},
                     {PeerTransfer::Kind::recv, from_next.tensor, next},
                     {PeerTransfer::Kind::send, to_next.tensor, next},
                     {PeerTransfer::Kind::send, to_prev.tensor, prev}})
          .wait();
      expect_equal(test::download(*be.ctx, from_prev.tensor), rank_values(prev, n, 5), be.name + " from prev");
      expect_equal(test::download(*be.ctx, from_next.tensor), rank_values(next, n, 6), be.name + " from next");
    }
  }
}

// A batch with an invalid transfer throws before anything is posted (MPI), or with its NCCL group
// closed again (NCCL): the next batch and the next collective run as if it never happened.
TEST_CASE("collectives: a failed exchange leaves nothing behind", "[collectives]") {
  for (auto& be : backends()) {
    Communicator& comm = *be.comm;
    INFO(be.name);
    const int64_t n = 4099;
    const int next = (comm.rank() + 1) % comm.size(), prev = (comm.rank() + comm.size() - 1) % comm.size();
    auto stale = test::poisoned(*be.ctx, {n});
    auto junk = test::upload(*be.ctx, rank_values(comm.rank(), n, 9), {n});
    // The valid receive comes first: posted and abandoned, it would take the next exchange's message.
    const std::vector<PeerTransfer> bad = {{PeerTransfer::Kind::recv, stale.tensor, prev},
                                           {PeerTransfer::Kind::send, junk.tensor, comm.size() + 3}};
    CHECK_THROWS_AS(comm.exchange(bad).wait(), tessera::Error);
    auto to_next = test::upload(*be.ctx, rank_values(comm.rank(), n, 10), {n});
    auto from_prev = test::poisoned(*be.ctx, {n});
    comm.exchange({{PeerTransfer::Kind::recv, from_prev.tensor, prev}, {PeerTransfer::Kind::send, to_next.tensor, next}})
        .wait();
    expect_equal(test::download(*be.ctx, from_prev.tensor), rank_values(prev, n, 10), be.name + " after a failed exchange");
    auto data = test::upload(*be.ctx, rank_values(comm.rank(), n, 11), {n});
    comm.all_reduce(data.tensor, ReduceOp::max).wait();
    std::vector<float> want = rank_values(0, n, 11);
    for (int r = 1; r < comm.size(); ++r) {
      auto theirs = rank_values(r, n, 11);
      for (int64_t i = 0; i < n; ++i) want[size_t(i)] = std::max(want[size_t(i)], theirs[size_t(i)]);
    }
    expect_equal(test::download(*be.ctx, data.tensor), want, be.name + " all_reduce after a failed exchange");
  }
}

TEST_CASE("collectives: several groups at once after split", "[collectives]") {
  for (auto& be : backends()) {
    Communicator& comm = *be.comm;
    if (comm.size() < 2) continue;
    // Two independent splits alive together: parity groups and halves.
    auto parity = comm.split(comm.rank() % 2, comm.rank());
    auto halves = comm.split(comm.rank() < comm.size() / 2 ? 0 : 1, -comm.rank());  // reversed order
    const int64_t n = 10007;
    auto a = test::upload(*be.ctx, rank_values(comm.rank(), n, 7), {n});
    auto b = test::upload(*be.ctx, rank_values(comm.rank(), n, 8), {n});
    Work wa = parity->all_reduce(a.tensor, ReduceOp::sum);
    Work wb = halves->all_reduce(b.tensor, ReduceOp::sum);
    wb.wait();
    wa.wait();

    std::vector<int> parity_members, half_members;
    for (int r = 0; r < comm.size(); ++r) {
      if (r % 2 == comm.rank() % 2) parity_members.push_back(r);
      if ((r < comm.size() / 2) == (comm.rank() < comm.size() / 2)) half_members.push_back(r);
    }
    std::reverse(half_members.begin(), half_members.end());  // keys were -rank
    CHECK(parity->size() == int(parity_members.size()));
    CHECK(halves->size() == int(half_members.size()));
    CHECK(halves->rank() == int(std::find(half_members.begin(), half_members.end(), comm.rank()) - half_members.begin()));
    auto sum_over = [&](const std::vector<int>& members, uint64_t salt) {
      std::vector<float> s(static_cast<size_t>(n));
      for (size_t k = 0; k < members.size(); ++k) {
        auto v = rank_values(members[k], n, salt);
        for (int64_t i = 0; i < n; ++i) s[size_t(i)] = k == 0 ? v[size_t(i)] : s[size_t(i)] + v[size_t(i)];
      }
      return s;
    };
    auto want_a = sum_over(parity_members, 7), want_b = sum_over(half_members, 8);
    auto got_a = test::download(*be.ctx, a.tensor), got_b = test::download(*be.ctx, b.tensor);
    if (be.name == "nccl") {
      CHECK(test::max_relative_error(got_a, want_a) < 1e-6);
      CHECK(test::max_relative_error(got_b, want_b) < 1e-6);
    } else {
      expect_equal(got_a, want_a, be.name + " parity group");
      expect_equal(got_b, want_b, be.name + " halves group");
    }
    parity->barrier();
    halves->barrier();
  }
}

TEST_CASE("collectives: mismatched sizes are rejected with a clear error", "[collectives]") {
  auto& be = backends().front();
  auto in = test::upload(*be.ctx, rank_values(0, 10, 9), {10});
  auto out = test::poisoned(*be.ctx, {3});
  if (be.comm->size() > 1) {
    CHECK_THROWS_WITH(be.comm->reduce_scatter(out.tensor, in.tensor, ReduceOp::sum), Catch::Contains("chunks"));
    CHECK_THROWS_WITH(be.comm->all_gather(out.tensor, in.tensor), Catch::Contains("chunks"));
  }
  CHECK_THROWS_WITH(be.comm->broadcast(in.tensor, be.comm->size()), Catch::Contains("out of range"));
}

TEST_CASE("launch: rank information comes from the launcher's environment", "[collectives]") {
  LaunchInfo info = detect_launch();
  auto& comm = *backends().front().comm;
  CHECK(info.source == "open-mpi");
  CHECK(info.rank == comm.rank());
  CHECK(info.world_size == comm.size());
  CHECK(info.local_rank >= 0);
  CHECK(info.local_rank < info.local_size);
}

TEST_CASE("collectives: all_gather and reduce_scatter in place", "[collectives]") {
  for (auto& be : backends()) {
    Communicator& comm = *be.comm;
    const int64_t n = 1031;
    // all_gather: this rank's chunk already sits at its place in the output.
    std::vector<float> initial(size_t(n * comm.size()), -7.0f);
    auto mine = rank_values(comm.rank(), n, 11);
    std::copy(mine.begin(), mine.end(), initial.begin() + comm.rank() * n);
    auto whole = test::upload(*be.ctx, initial, {n * comm.size()});
    comm.all_gather(whole.tensor, whole.tensor.flat_range(comm.rank() * n, n)).wait();
    std::vector<float> want;
    for (int r = 0; r < comm.size(); ++r) {
      auto theirs = rank_values(r, n, 11);
      want.insert(want.end(), theirs.begin(), theirs.end());
    }
    expect_equal(test::download(*be.ctx, whole.tensor), want, be.name + " all_gather in place");

    // reduce_scatter: the output is this rank's chunk of the input.
    auto input = test::upload(*be.ctx, rank_values(comm.rank(), n * comm.size(), 12), {n * comm.size()});
    Tensor out = input.tensor.flat_range(comm.rank() * n, n);
    comm.reduce_scatter(out, input.tensor, ReduceOp::sum).wait();
    std::vector<float> sum(static_cast<size_t>(n), 0.0f);
    for (int r = 0; r < comm.size(); ++r) {
      auto theirs = rank_values(r, n * comm.size(), 12);
      for (int64_t i = 0; i < n; ++i)
        sum[size_t(i)] = r == 0 ? theirs[size_t(comm.rank() * n + i)] : sum[size_t(i)] + theirs[size_t(comm.rank() * n + i)];
    }
    auto got = test::download(*be.ctx, out);
    if (be.name == "nccl")
      CHECK(test::max_relative_error(got, sum) < 1e-6);
    else
      expect_equal(got, sum, be.name + " reduce_scatter in place");
  }
}

TEST_CASE("collectives: bf16 reductions sum in float32 in rank order and round once", "[collectives]") {
  for (auto& be : backends()) {
    Communicator& comm = *be.comm;
    for (int64_t n : {int64_t(7), int64_t(4099)}) {
      // The values as bf16 holds them, and their float32 sum in rank order rounded once.
      auto mine = test::round_to_bf16(rank_values(comm.rank(), n * comm.size(), 5));
      std::vector<float> sum(size_t(n * comm.size()), 0.0f);
      for (int r = 0; r < comm.size(); ++r) {
        const auto theirs = test::round_to_bf16(rank_values(r, n * comm.size(), 5));
        for (size_t i = 0; i < sum.size(); ++i) sum[i] = r == 0 ? theirs[i] : sum[i] + theirs[i];
      }
      const std::vector<float> want = test::round_to_bf16(sum);
      auto data = test::upload(*be.ctx, mine, {n * comm.size()}, DType::bf16);
      comm.all_reduce(data.tensor, ReduceOp::sum).wait();
      auto output = test::poisoned(*be.ctx, {n}, DType::bf16);
      auto input = test::upload(*be.ctx, mine, {n * comm.size()}, DType::bf16);
      comm.reduce_scatter(output.tensor, input.tensor, ReduceOp::sum).wait();
      const std::vector<float> want_chunk(want.begin() + comm.rank() * n, want.begin() + (comm.rank() + 1) * n);
      const auto reduced = test::download(*be.ctx, data.tensor), scattered = test::download(*be.ctx, output.tensor);
      if (be.name == "nccl") {  // NCCL rounds after each step of its ring
        CHECK(test::max_relative_error(reduced, want) < 2e-2);
        CHECK(test::max_relative_error(scattered, want_chunk) < 2e-2);
      } else {
        expect_equal(reduced, want, be.name + " bf16 all_reduce n=" + std::to_string(n));
        expect_equal(scattered, want_chunk, be.name + " bf16 reduce_scatter n=" + std::to_string(n));
      }
    }
  }
}

TEST_CASE("collectives: a group of this process alone", "[collectives]") {
  Context& ctx = test::cpu_context();
  std::unique_ptr<Communicator> self = make_self_communicator(ctx);
  CHECK(self->size() == 1);
  CHECK(self->rank() == 0);
  const std::vector<float> values = rank_values(0, 6, 9);
  auto data = test::upload(ctx, values, {6});
  self->all_reduce(data.tensor, ReduceOp::avg).wait();
  CHECK(test::download(ctx, data.tensor) == values);
  auto out = test::poisoned(ctx, {6});
  self->reduce_scatter(out.tensor, data.tensor, ReduceOp::sum).wait();
  CHECK(test::download(ctx, out.tensor) == values);
  auto gathered = test::poisoned(ctx, {6});
  self->all_gather(gathered.tensor, data.tensor).wait();
  CHECK(test::download(ctx, gathered.tensor) == values);
  self->broadcast(data.tensor, 0).wait();
  CHECK_THROWS_AS(self->broadcast(data.tensor, 1), Error);
  CHECK_THROWS_AS(self->exchange({PeerTransfer{PeerTransfer::Kind::send, data.tensor, 1}}), Error);
  CHECK(self->split(0, 0) != nullptr);
  CHECK(self->split(-1, 0) == nullptr);
  self->abort();
  try {
    self->barrier();
    FAIL("an aborted communicator still works");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::hang_or_peer);
  }
}
