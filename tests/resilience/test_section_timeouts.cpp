// Deadlines learned from a run's own section durations, and the watchdog that uses them.
#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

#include "tessera/section_timeouts.h"

using namespace tessera;

TEST_CASE("section timeouts: the initial timeout until a section is learned, then factor x p99 over the floor",
          "[resilience][timeouts]") {
  SectionTimeoutOptions o;
  o.initial_s = 600;
  o.floor_s = 2;
  o.warmup = 2;
  o.min_samples = 5;
  SectionTimeouts t(o);
  CHECK(t.deadline("train step") == 600);
  // The warm-up (slow first steps) is ignored.
  t.observe("train step", 50.0);
  t.observe("train step", 40.0);
  for (int i = 0; i < 4; ++i) t.observe("train step", 0.1);
  CHECK_FALSE(t.learned("train step"));
  CHECK(t.deadline("train step") == 600);
  CHECK_THAT(t.describe("train step"), Catch::Contains("initial 600 s") && Catch::Contains("4 of 5"));
  t.observe("train step", 0.1);
  REQUIRE(t.learned("train step"));
  CHECK(t.deadline("train step") == 2);  // 5 x 0.1 = 0.5 s is below the floor
  CHECK_THAT(t.describe("train step"), Catch::Contains("learned 2.0 s") && Catch::Contains("the floor"));
  // A slower section: 5 x its largest duration (p99 of fewer than 100 is the maximum).
  for (double s : {0.5, 0.7, 0.6, 0.9, 0.8}) t.observe("all_reduce(dp)", s);
  for (double s : {0.5, 0.7}) t.observe("all_reduce(dp)", s);
  CHECK(t.deadline("all_reduce(dp)") == Approx(5 * 0.9));
  CHECK_THAT(t.describe("all_reduce(dp)"), Catch::Contains("the percentile"));
  // Other sections are untouched.
  CHECK(t.deadline("evaluation") == 600);
}

TEST_CASE("section timeouts: only the recent window counts", "[resilience][timeouts]") {
  SectionTimeoutOptions o;
  o.floor_s = 0.01;
  o.warmup = 0;
  o.min_samples = 3;
  o.window = 10;
  SectionTimeouts t(o);
  for (int i = 0; i < 10; ++i) t.observe("step", 1.0);
  CHECK(t.deadline("step") == Approx(5.0));
  for (int i = 0; i < 10; ++i) t.observe("step", 0.2);  // the job got faster: old durations leave the window
  CHECK(t.deadline("step") == Approx(1.0));
}
