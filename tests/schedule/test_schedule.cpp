// Pipeline schedules as data: structure of the generated programs (Megatron-Core's order), the
// rendezvous simulation (completion, bubbles, activation memory) and its diagnosis of broken schedules.
#include <algorithm>
#include <cmath>
#include <functional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "support/test_support.h"
#include "tessera/error.h"
#include "tessera/schedule.h"

using namespace tessera;
using Type = PipelineAction::Type;

namespace {

struct Combo {
  ScheduleKind kind;
  int stages, chunks, microbatches;
};

std::string name(const Combo& c) {
  return std::string(schedule_kind_name(c.kind)) + " p=" + std::to_string(c.stages) + " v=" +
         std::to_string(c.chunks) + " m=" + std::to_string(c.microbatches);
}

// Every valid combination the tests sweep: p 1..8, m 1..3p+1 (multiples of p for interleaved), v 2..4.
std::vector<Combo> all_combos() {
  std::vector<Combo> combos;
  for (int p = 1; p <= 8; ++p)
    for (int m = 1; m <= 3 * p + 1; ++m) {
      combos.push_back({ScheduleKind::gpipe, p, 1, m});
      combos.push_back({ScheduleKind::one_f_one_b, p, 1, m});
      if (m % p == 0)
        for (int v = 2; v <= 4; ++v) combos.push_back({ScheduleKind::interleaved_1f1b, p, v, m});
    }
  return combos;
}

std::string error_text(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

int count_type(const std::vector<PipelineAction>& actions, Type t) {
  return int(std::count_if(actions.begin(), actions.end(), [&](const PipelineAction& a) { return a.type == t; }));
}

// Index of the first action of a type matching a predicate, or -1.
template <class Pred>
int find_action(const std::vector<PipelineAction>& actions, Pred pred) {
  for (size_t i = 0; i < actions.size(); ++i)
    if (pred(actions[i])) return int(i);
  return -1;
}

}  // namespace

TEST_CASE("schedule: kind names parse and print", "[schedule]") {
  for (ScheduleKind k : {ScheduleKind::gpipe, ScheduleKind::one_f_one_b, ScheduleKind::interleaved_1f1b})
    CHECK(parse_schedule_kind(schedule_kind_name(k)) == k);
  CHECK(std::string(schedule_kind_name(ScheduleKind::one_f_one_b)) == "1f1b");
  CHECK(std::string(schedule_kind_name(ScheduleKind::interleaved_1f1b)) == "interleaved");
  try {
    parse_schedule_kind("pipedream");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::bad_config);
    CHECK_THAT(e.what(), Catch::Contains("--schedule") && Catch::Contains("pipedream"));
  }
}

TEST_CASE("schedule: invalid arguments are config errors naming the flag", "[schedule]") {
  auto expect = [](ScheduleKind k, int p, int v, int m, const char* flag) {
    try {
      make_schedule(k, p, v, m);
      FAIL("no error for " << schedule_kind_name(k) << " p=" << p << " v=" << v << " m=" << m);
    } catch (const Error& e) {
      CHECK(e.code() == ExitCode::bad_config);
      CHECK_THAT(e.what(), Catch::Contains(flag));
    }
  };
  expect(ScheduleKind::one_f_one_b, 0, 1, 4, "--pp");
  expect(ScheduleKind::gpipe, 2, 1, 0, "--microbatches");
  expect(ScheduleKind::interleaved_1f1b, 2, 0, 4, "--virtual-stages");
  expect(ScheduleKind::one_f_one_b, 2, 2, 4, "--virtual-stages");
  expect(ScheduleKind::gpipe, 2, 3, 4, "--virtual-stages");
  expect(ScheduleKind::interleaved_1f1b, 2, 1, 4, "--virtual-stages");
  expect(ScheduleKind::interleaved_1f1b, 4, 2, 6, "--microbatches");
  expect(ScheduleKind::interleaved_1f1b, 4, 2, 6, "--pp");
}

TEST_CASE("schedule: model chunks and their locations are inverse", "[schedule]") {
  const PipelineSchedule s = make_schedule(ScheduleKind::interleaved_1f1b, 4, 3, 8);
  CHECK(model_chunk_count(s) == 12);
  CHECK(model_chunk(s, 1, 2) == 9);
  for (int c = 0; c < model_chunk_count(s); ++c) {
    const ChunkLocation at = locate_model_chunk(s, c);
    CHECK(model_chunk(s, at.rank, at.chunk) == c);
  }
}

TEST_CASE("schedule: describe", "[schedule]") {
  CHECK(describe(make_schedule(ScheduleKind::one_f_one_b, 4, 1, 8)) ==
        "1f1b: 4 stages x 1 chunk, 8 microbatches, bubble 27.3%");
  CHECK(describe(make_schedule(ScheduleKind::interleaved_1f1b, 2, 2, 4)) ==
        "interleaved: 2 stages x 2 chunks, 4 microbatches, bubble 11.1%");
  CHECK(describe(make_schedule(ScheduleKind::gpipe, 1, 1, 1)) == "gpipe: 1 stage x 1 chunk, 1 microbatch, bubble 0.0%");
  CHECK(describe(PipelineAction{Type::send_activation, 3, 1, 2}) == "send_activation(mb 3, chunk 1) to rank 2");
}

TEST_CASE("schedule: every rank runs each forward and backward once, with the edge rules", "[schedule]") {
  for (const Combo& c : all_combos()) {
    INFO(name(c));
    const PipelineSchedule s = make_schedule(c.kind, c.stages, c.chunks, c.microbatches);
    REQUIRE(s.per_rank.size() == size_t(c.stages));
    const int last = c.stages * c.chunks - 1;
    for (int r = 0; r < c.stages; ++r) {
      std::multiset<std::tuple<int, int, int>> computed;  // (type, microbatch, chunk)
      for (const PipelineAction& a : s.per_rank[size_t(r)]) {
        REQUIRE(a.microbatch >= 0);
        REQUIRE(a.microbatch < c.microbatches);
        REQUIRE(a.chunk >= 0);
        REQUIRE(a.chunk < c.chunks);
        const int mc = model_chunk(s, r, a.chunk);
        if (!a.is_communication()) {
          computed.insert({int(a.type), a.microbatch, a.chunk});
          continue;
        }
        CHECK(a.peer != r);
        if (a.type == Type::recv_activation) CHECK(mc != 0);
        if (a.type == Type::send_activation) CHECK(mc != last);
        if (a.type == Type::recv_gradient) CHECK(mc != last);
        if (a.type == Type::send_gradient) CHECK(mc != 0);
      }
      REQUIRE(computed.size() == size_t(2 * c.microbatches * c.chunks));
      for (int m = 0; m < c.microbatches; ++m)
        for (int k = 0; k < c.chunks; ++k) {
          CHECK(computed.count({int(Type::forward), m, k}) == 1);
          CHECK(computed.count({int(Type::backward), m, k}) == 1);
        }
      // One message per pipeline edge and microbatch, each way.
      // (With one stage every edge stays on the rank.)
      const int edges_out = c.stages == 1 ? 0 : c.chunks - (r == c.stages - 1 ? 1 : 0);
      const int edges_in = c.stages == 1 ? 0 : c.chunks - (r == 0 ? 1 : 0);
      CHECK(count_type(s.per_rank[size_t(r)], Type::send_activation) == edges_out * c.microbatches);
      CHECK(count_type(s.per_rank[size_t(r)], Type::recv_gradient) == edges_out * c.microbatches);
      CHECK(count_type(s.per_rank[size_t(r)], Type::recv_activation) == edges_in * c.microbatches);
      CHECK(count_type(s.per_rank[size_t(r)], Type::send_gradient) == edges_in * c.microbatches);
    }
  }
}

TEST_CASE("schedule: forwards before the first backward follow Megatron's warm-up", "[schedule]") {
  for (const Combo& c : all_combos()) {
    if (c.kind == ScheduleKind::gpipe) continue;
    INFO(name(c));
    const PipelineSchedule s = make_schedule(c.kind, c.stages, c.chunks, c.microbatches);
    const int total = c.microbatches * c.chunks;
    for (int r = 0; r < c.stages; ++r) {
      const auto& actions = s.per_rank[size_t(r)];
      const int first_backward = find_action(actions, [](const PipelineAction& a) { return a.type == Type::backward; });
      int forwards_before = 0;
      for (int i = 0; i < first_backward; ++i) forwards_before += actions[size_t(i)].type == Type::forward;
      const int warmup = c.kind == ScheduleKind::one_f_one_b
                             ? std::min(c.stages - r - 1, c.microbatches)
                             : std::min((c.stages - r - 1) * 2 + (c.chunks - 1) * c.stages, total);
      // The first steady step runs one more forward before its backward.
      CHECK(forwards_before == std::min(warmup + 1, total));
    }
  }
}

TEST_CASE("schedule: a single stage needs no transfers", "[schedule]") {
  const PipelineSchedule f = make_schedule(ScheduleKind::one_f_one_b, 1, 1, 3);
  const std::vector<Type> expected_1f1b = {Type::forward, Type::backward, Type::forward,
                                           Type::backward, Type::forward, Type::backward};
  REQUIRE(f.per_rank[0].size() == expected_1f1b.size());
  for (size_t i = 0; i < expected_1f1b.size(); ++i) {
    CHECK(f.per_rank[0][i].type == expected_1f1b[i]);
    CHECK(f.per_rank[0][i].microbatch == int(i / 2));
  }
  const PipelineSchedule g = make_schedule(ScheduleKind::gpipe, 1, 1, 3);
  REQUIRE(g.per_rank[0].size() == 6);
  for (size_t i = 0; i < 6; ++i) {
    CHECK(g.per_rank[0][i].type == (i < 3 ? Type::forward : Type::backward));
    CHECK(g.per_rank[0][i].microbatch == int(i % 3));
  }
  const PipelineSchedule v = make_schedule(ScheduleKind::interleaved_1f1b, 1, 3, 2);
  for (const PipelineAction& a : v.per_rank[0]) CHECK_FALSE(a.is_communication());
  CHECK(simulate(v).bubble_fraction == Approx(0.0).margin(1e-12));
}

TEST_CASE("schedule: every schedule completes under rendezvous, with the textbook bubble", "[schedule]") {
  for (const Combo& c : all_combos()) {
    INFO(name(c));
    const PipelineSchedule s = make_schedule(c.kind, c.stages, c.chunks, c.microbatches);
    SimulationResult res;
    REQUIRE_NOTHROW(res = simulate(s, SimulationCosts{1.0, 2.0, 0.0}));
    REQUIRE(res.busy_per_rank.size() == size_t(c.stages));
    for (double busy : res.busy_per_rank) CHECK(busy == Approx(3.0 * c.microbatches * c.chunks));
    const double p = c.stages, m = c.microbatches;
    if (c.kind != ScheduleKind::interleaved_1f1b) {
      CHECK(std::abs(res.bubble_fraction - (p - 1) / (m + p - 1)) < 1e-9);
      CHECK(std::abs(res.makespan - 3.0 * (m + p - 1)) < 1e-9);
      CHECK(std::abs(ideal_bubble_fraction(s) - (p - 1) / (m + p - 1)) < 1e-12);
    } else {
      const double ideal = ideal_bubble_fraction(s);
      CHECK(std::abs(ideal - (p - 1) / (c.chunks * m + p - 1)) < 1e-12);
      // Megatron's interleaved order with uniform costs reaches the textbook bubble exactly.
      CHECK(std::abs(res.bubble_fraction - ideal) < 1e-9);
      // Rank 0 holds its warm-up forwards plus one (capped at all of them).
      const int total = c.microbatches * c.chunks;
      CHECK(res.in_flight_per_rank[0] == std::min(2 * (c.stages - 1) + (c.chunks - 1) * c.stages + 1, total));
      if (c.stages > 1) {
        const SimulationResult plain = simulate(make_schedule(ScheduleKind::one_f_one_b, c.stages, 1, c.microbatches));
        CHECK(res.bubble_fraction < plain.bubble_fraction);
      }
    }
    // With a transfer cost everything still completes, only later.
    const SimulationResult slow = simulate(s, SimulationCosts{1.0, 2.0, 0.25});
    CHECK(slow.makespan >= res.makespan);
    if (c.stages > 1) CHECK(slow.makespan > res.makespan);
  }
}

TEST_CASE("schedule: activation memory, 1F1B keeps min(p, m) microbatches in flight, GPipe all", "[schedule]") {
  for (int p = 1; p <= 8; ++p)
    for (int m = 1; m <= 3 * p + 1; ++m) {
      INFO("p=" << p << " m=" << m);
      const SimulationResult f = simulate(make_schedule(ScheduleKind::one_f_one_b, p, 1, m));
      const SimulationResult g = simulate(make_schedule(ScheduleKind::gpipe, p, 1, m));
      CHECK(f.in_flight_per_rank[0] == std::min(p, m));
      CHECK(f.peak_in_flight == std::min(p, m));
      for (int r = 0; r < p; ++r) CHECK(f.in_flight_per_rank[size_t(r)] == std::min(p - r, m));
      CHECK(g.in_flight_per_rank[0] == m);
      CHECK(g.peak_in_flight == m);
    }
}

TEST_CASE("schedule: transfer times follow rendezvous semantics", "[schedule]") {
  // Two stages, one microbatch: F0 | send | F1 | B1 | send | B0, each message costs 0.5.
  const PipelineSchedule s = make_schedule(ScheduleKind::one_f_one_b, 2, 1, 1);
  const SimulationResult res = simulate(s, SimulationCosts{1.0, 2.0, 0.5});
  CHECK(res.makespan == Approx(7.0));
  CHECK(res.busy_per_rank[0] == Approx(3.0));
  CHECK(res.bubble_fraction == Approx(1.0 - 6.0 / 14.0));
  // Rank 1's receive is posted at 0 and completes when rank 0's send (posted at 1) has gone through.
  const auto& r1 = s.per_rank[1];
  REQUIRE(r1[0].type == Type::recv_activation);
  CHECK(res.start[1][0] == Approx(0.0));
  CHECK(res.finish[1][0] == Approx(1.5));
  REQUIRE(r1[1].type == Type::forward);
  CHECK(res.start[1][1] == Approx(1.5));
}

TEST_CASE("schedule: broken schedules make the simulation throw", "[schedule]") {
  const PipelineSchedule good = make_schedule(ScheduleKind::one_f_one_b, 4, 1, 8);
  REQUIRE_NOTHROW(simulate(good));

  SECTION("two receives swapped: FIFO mismatch") {
    PipelineSchedule s = good;
    auto& a = s.per_rank[1];
    std::vector<size_t> recvs;
    for (size_t i = 0; i < a.size(); ++i)
      if (a[i].type == Type::recv_activation) recvs.push_back(i);
    REQUIRE(recvs.size() >= 2);
    std::swap(a[recvs[0]], a[recvs[1]]);
    const std::string text = error_text([&] { simulate(s); });
    CHECK_THAT(text, Catch::Contains("FIFO mismatch") && Catch::Contains("rank 0") && Catch::Contains("rank 1"));
  }
  SECTION("a receive dropped: the forward runs without its input") {
    PipelineSchedule s = good;
    auto& a = s.per_rank[2];
    a.erase(a.begin() + find_action(a, [](const PipelineAction& x) { return x.type == Type::recv_activation; }));
    CHECK_THAT(error_text([&] { simulate(s); }), Catch::Contains("rank 2") && Catch::Contains("before its activation"));
  }
  SECTION("a send dropped: the receive is matched with the wrong message") {
    PipelineSchedule s = good;
    auto& a = s.per_rank[3];
    a.erase(a.begin() + find_action(a, [](const PipelineAction& x) { return x.type == Type::send_gradient; }));
    CHECK_THAT(error_text([&] { simulate(s); }), Catch::Contains("FIFO mismatch") || Catch::Contains("deadlock"));
  }
  SECTION("the last activation send dropped: a deadlock naming the waiting ranks") {
    PipelineSchedule s = make_schedule(ScheduleKind::gpipe, 2, 1, 2);
    auto& a = s.per_rank[0];
    const int i = find_action(a, [](const PipelineAction& x) { return x.type == Type::send_activation && x.microbatch == 1; });
    a.erase(a.begin() + i);
    const std::string text = error_text([&] { simulate(s); });
    CHECK_THAT(text, Catch::Contains("deadlock") && Catch::Contains("rank 1 waits") &&
                         Catch::Contains("recv_activation(mb 1, chunk 0) from rank 0 (unmatched)"));
  }
  SECTION("transfers posted in crossing order deadlock") {
    PipelineSchedule s;
    s.kind = ScheduleKind::one_f_one_b;
    s.stages = 2;
    s.per_rank = {{{Type::recv_gradient, 0, 0, 1}, {Type::forward, 0, 0}, {Type::send_activation, 0, 0, 1},
                   {Type::backward, 0, 0}},
                  {{Type::recv_activation, 0, 0, 0}, {Type::forward, 0, 0}, {Type::backward, 0, 0},
                   {Type::send_gradient, 0, 0, 0}}};
    const std::string text = error_text([&] { simulate(s); });
    CHECK_THAT(text, Catch::Contains("deadlock") && Catch::Contains("rank 0 waits") && Catch::Contains("rank 1 waits"));
  }
  SECTION("backward before forward, duplicate forward, wrong peer, missing work") {
    PipelineSchedule s;
    s.kind = ScheduleKind::one_f_one_b;
    s.per_rank = {{{Type::backward, 0, 0}, {Type::forward, 0, 0}}};
    CHECK_THAT(error_text([&] { simulate(s); }), Catch::Contains("before its forward"));
    s.per_rank = {{{Type::forward, 0, 0}, {Type::forward, 0, 0}, {Type::backward, 0, 0}}};
    CHECK_THAT(error_text([&] { simulate(s); }), Catch::Contains("runs twice"));
    s.per_rank = {{{Type::forward, 0, 0}}};
    CHECK_THAT(error_text([&] { simulate(s); }), Catch::Contains("never runs the backward"));
    PipelineSchedule t = make_schedule(ScheduleKind::one_f_one_b, 3, 1, 2);
    for (PipelineAction& a : t.per_rank[1])
      if (a.type == Type::send_activation) a.peer = 0;
    CHECK_THAT(error_text([&] { simulate(t); }), Catch::Contains("the other side of model chunk 1 is rank 2"));
  }
}

TEST_CASE("schedule: forward-only (evaluation) runs every model chunk in order, receiving from the one before",
          "[schedule]") {
  const PipelineSchedule s = make_forward_schedule(2, 2, 2);  // model chunks 0..3 on ranks 0, 1, 0, 1
  CHECK(s.kind == ScheduleKind::gpipe);
  auto list = [&](int rank) {
    std::vector<std::string> out;
    for (const PipelineAction& a : s.per_rank[size_t(rank)]) out.push_back(describe(a));
    return out;
  };
  CHECK(list(0) == std::vector<std::string>{"forward(mb 0, chunk 0)", "send_activation(mb 0, chunk 0) to rank 1",
                                            "recv_activation(mb 0, chunk 1) from rank 1", "forward(mb 0, chunk 1)",
                                            "send_activation(mb 0, chunk 1) to rank 1", "forward(mb 1, chunk 0)",
                                            "send_activation(mb 1, chunk 0) to rank 1",
                                            "recv_activation(mb 1, chunk 1) from rank 1", "forward(mb 1, chunk 1)",
                                            "send_activation(mb 1, chunk 1) to rank 1"});
  CHECK(list(1).front() == "recv_activation(mb 0, chunk 0) from rank 0");
  CHECK(list(1).back() == "forward(mb 1, chunk 1)");
  // One stage: computations only, chunk after chunk.
  const PipelineSchedule one = make_forward_schedule(1, 2, 1);
  CHECK(one.per_rank[0].size() == 2);
  for (const PipelineAction& a : one.per_rank[0]) CHECK(a.type == Type::forward);
  CHECK_THROWS_AS(make_forward_schedule(0, 1, 1), Error);
}
