// Straggler verdicts: relative to the median of a rank's peers, with hysteresis both ways.
#include <catch2/catch.hpp>

#include "tessera/error.h"
#include "tessera/stragglers.h"

using namespace tessera;

namespace {
StragglerOptions options() {
  StragglerOptions o;
  o.slowdown = 1.5;
  o.recovered = 1.2;
  o.persist = 2;
  return o;
}
}  // namespace

TEST_CASE("stragglers: a rank slower for two windows is named once, and its recovery after two more", "[resilience][stragglers]") {
  StragglerJudge judge({0, 0, 0, 0}, options());
  CHECK(judge.judge({1.0, 1.0, 1.0, 1.0}, 0, 9).empty());
  CHECK(judge.judge({1.0, 1.1, 2.0, 0.9}, 10, 19).empty());  // one slow window: not yet
  auto named = judge.judge({1.0, 1.0, 2.1, 1.0}, 20, 29);
  REQUIRE(named.size() == 1);
  CHECK(named[0].rank == 2);
  CHECK_FALSE(named[0].recovered);
  CHECK(named[0].slowdown == Approx(2.1));
  CHECK(named[0].since_step == 10);
  CHECK(named[0].step == 29);
  CHECK(judge.named(2));
  CHECK(judge.judge({1.0, 1.0, 2.0, 1.0}, 30, 39).empty());  // still slow: not named again
  CHECK(judge.judge({1.0, 1.0, 1.3, 1.0}, 40, 49).empty());  // between the thresholds: nothing changes
  CHECK(judge.judge({1.0, 1.0, 1.1, 1.0}, 50, 59).empty());
  auto back = judge.judge({1.0, 1.0, 1.0, 1.0}, 60, 69);
  REQUIRE(back.size() == 1);
  CHECK(back[0].recovered);
  CHECK(back[0].rank == 2);
  CHECK(back[0].since_step == 50);
  CHECK_FALSE(judge.named(2));
}

TEST_CASE("stragglers: noise and a slow window now and then name nobody", "[resilience][stragglers]") {
  StragglerJudge judge({0, 0, 0, 0}, options());
  const std::vector<std::vector<double>> windows = {{1.0, 1.2, 0.9, 1.1}, {1.6, 1.0, 1.0, 1.0}, {1.0, 1.4, 1.0, 1.0},
                                                    {1.0, 1.0, 1.7, 1.0}, {1.3, 1.0, 1.0, 1.45}, {0.8, 1.0, 1.0, 1.0}};
  int64_t step = 0;
  for (const auto& w : windows) {
    CHECK(judge.judge(w, step, step + 9).empty());
    step += 10;
  }
}

TEST_CASE("stragglers: ranks are compared within their pipeline stage only", "[resilience][stragglers]") {
  // Stage 0 (ranks 0, 1) has the embedding, stage 1 (ranks 2, 3) the head: different work.
  StragglerJudge judge({0, 0, 1, 1}, options());
  for (int w = 0; w < 3; ++w) CHECK(judge.judge({1.0, 1.0, 3.0, 3.0}, 10 * w, 10 * w + 9).empty());
  CHECK(judge.ratios()[2] == Approx(1.0));
  judge.judge({1.0, 1.0, 3.0, 6.0}, 30, 39);
  auto named = judge.judge({1.0, 1.0, 3.0, 6.0}, 40, 49);
  REQUIRE(named.size() == 1);
  CHECK(named[0].rank == 3);
  CHECK(named[0].slowdown == Approx(2.0));
  // A rank alone in its group has no peers to be slower than.
  StragglerJudge alone({0, 1}, options());
  for (int w = 0; w < 3; ++w) CHECK(alone.judge({1.0, 5.0}, 10 * w, 10 * w + 9).empty());
}

TEST_CASE("stragglers: thresholds are checked", "[resilience][stragglers]") {
  StragglerOptions bad = options();
  bad.slowdown = 1.0;
  CHECK_THROWS_AS(StragglerJudge({0, 0}, bad), Error);
  bad = options();
  bad.recovered = 2.0;
  CHECK_THROWS_AS(StragglerJudge({0, 0}, bad), Error);
}
