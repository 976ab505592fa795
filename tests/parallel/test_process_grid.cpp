// The process grid: Megatron's rank order, group membership, and layouts that do not fit.
#include <catch2/catch.hpp>

#include <set>
#include <vector>

#include "parallel/world.h"
#include "support/test_support.h"
#include "tessera/parallel.h"

using namespace tessera;
using test::world;

namespace {

// Every (tp, pp) combination whose product divides the world size.
std::vector<ParallelLayout> layouts_for(int world_size) {
  std::vector<ParallelLayout> out;
  for (int tp = 1; tp <= world_size; ++tp)
    for (int pp = 1; tp * pp <= world_size; ++pp)
      if (world_size % (tp * pp) == 0) {
        ParallelLayout l;
        l.tp = tp;
        l.pp = pp;
        out.push_back(l);
      }
  return out;
}
}  // namespace

TEST_CASE("process grid: ranks are ordered tp, then dp, then pp, and groups hold the right ranks", "[grid]") {
  Communicator& w = world();
  for (const ParallelLayout& requested : layouts_for(w.size())) {
    ProcessGrid grid(w, requested);
    const ParallelLayout& l = grid.layout();
    INFO(l.describe());
    REQUIRE(l.tp * l.pp * l.dp == w.size());
    CHECK(grid.rank_of(grid.tp_rank(), grid.dp_rank(), grid.pp_rank()) == w.rank());
    CHECK(grid.tp().size() == l.tp);
    CHECK(grid.dp().size() == l.dp);
    CHECK(grid.pp().size() == l.pp);
    CHECK(grid.tp().rank() == grid.tp_rank());
    CHECK(grid.dp().rank() == grid.dp_rank());
    CHECK(grid.pp().rank() == grid.pp_rank());

    // Group membership seen through the groups themselves: gather world ranks over each group.
    auto members = [&](Communicator& group) {
      Buffer in(test::cpu_context(), 4, Device::cpu), out(test::cpu_context(), 4 * size_t(group.size()), Device::cpu);
      *static_cast<float*>(in.data()) = float(w.rank());
      group.all_gather(out.view({group.size()}, DType::f32), in.view({1}, DType::f32)).wait();
      std::vector<int> ranks;
      for (int i = 0; i < group.size(); ++i) ranks.push_back(int(static_cast<float*>(out.data())[i]));
      return ranks;
    };
    auto tp_members = members(grid.tp());
    for (int i = 0; i < l.tp; ++i) CHECK(tp_members[size_t(i)] == grid.rank_of(i, grid.dp_rank(), grid.pp_rank()));
    auto dp_members = members(grid.dp());
    for (int i = 0; i < l.dp; ++i) CHECK(dp_members[size_t(i)] == grid.rank_of(grid.tp_rank(), i, grid.pp_rank()));
    auto pp_members = members(grid.pp());
    for (int i = 0; i < l.pp; ++i) CHECK(pp_members[size_t(i)] == grid.rank_of(grid.tp_rank(), grid.dp_rank(), i));

    if (l.pp > 1 && (grid.is_first_stage() || grid.is_last_stage())) {
      REQUIRE(grid.embedding() != nullptr);
      auto emb = members(*grid.embedding());
      CHECK(emb == std::vector<int>{grid.rank_of(grid.tp_rank(), grid.dp_rank(), 0),
                                    grid.rank_of(grid.tp_rank(), grid.dp_rank(), l.pp - 1)});
    } else {
      CHECK(grid.embedding() == nullptr);
    }
  }
}

TEST_CASE("process grid: layouts that do not fit are refused with the flag to change", "[grid]") {
  const int n = world().size();
  auto refuse = [&](ParallelLayout l, const char* text) {
    CHECK_THROWS_WITH(l.resolved(n), Catch::Contains(text));
  };
  ParallelLayout l;
  l.tp = n + 1;
  refuse(l, "not divisible by tp x pp");
  l = ParallelLayout{};
  l.dp = n + 1;
  refuse(l, "does not match the world");
  l = ParallelLayout{};
  l.sequence_parallel = true;
  refuse(l, "--sp needs tensor parallelism");
  l = ParallelLayout{};
  l.zero_stage = 2;
  refuse(l, "--zero 2");
  l = ParallelLayout{};
  l.virtual_stages = 2;
  refuse(l, "--virtual-stages needs --schedule interleaved");
  l = ParallelLayout{};
  l.schedule = ScheduleKind::interleaved_1f1b;
  l.virtual_stages = 2;
  l.pp = 1;
  l.microbatches = 3;
  CHECK_NOTHROW(l.resolved(n));  // pp = 1 divides anything
  l.tp = 0;
  refuse(l, "--tp must be at least 1");
}
