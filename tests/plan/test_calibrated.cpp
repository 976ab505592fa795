// The calibrated planner's Trainer model: stragglers and jitter through the pipeline simulation.
#include <catch2/catch.hpp>

#include "support/test_support.h"
#include "tessera/calibration.h"
#include "tessera/error.h"

namespace {

using namespace tessera;

// A synthetic calibration: every op at 10 GFLOP/s (or 10 GB/s), collectives 10 us + bytes / 5 GB/s.
plan::Calibration synthetic() {
  plan::Calibration c;
  c.ranks = 8, c.batch_size = 4, c.seq_len = 64;
  for (const char* op : {"matmul_forward", "matmul_backward", "attention_forward", "attention_backward", "gelu_backward",
                         "crossentropy_forward", "crossentropy_backward", "embedding_forward", "embedding_backward",
                         "layernorm_forward", "layernorm_backward", "residual_forward", "adamw", "sum_of_squares"})
    for (double work : {1e6, 1e8}) c.ops.push_back({op, {int64_t(work)}, work, work / 1e10});
  for (const char* op : {"all_reduce", "all_gather", "reduce_scatter", "sendrecv"})
    for (int g : {2, 4, 8})
      for (double bytes : {1e3, 1e6}) c.collectives.push_back({op, g, bytes, 1e-5 + bytes / 5e9});
  return c;
}

plan::TrainerLayout layout(int tp, int pp, int dp, int mb) {
  plan::TrainerLayout l;
  l.tp = tp, l.pp = pp, l.dp = dp, l.microbatches = mb, l.batch_size = 4, l.seq_len = 64;
  return l;
}

}  // namespace

TEST_CASE("calibrated plan: one rank x% slower slows the step by about x% of its computation", "[plan]") {
  const ModelConfig cfg = ModelConfig::preset("tiny");
  const plan::Calibration cal = synthetic();
  for (const plan::TrainerLayout& l : {layout(1, 1, 2, 1), layout(1, 2, 1, 8), layout(2, 2, 2, 4)}) {
    const plan::TrainerPrediction base = plan::predict_trainer_step(cfg, cal, l);
    plan::Disturbance d;
    d.slow_rank = l.ranks() - 1;  // on the last pipeline stage
    d.slowdown = 0.10;
    const plan::TrainerPrediction slow = plan::predict_trainer_step(cfg, cal, l, d);
    const double loss = slow.step_time - base.step_time;
    INFO(l.describe() << ": base " << base.step_time << " s, with a 10% straggler " << slow.step_time << " s");
    // At most 10% of the pipeline's time, and (the straggler's stage being on the critical path of a
    // synchronous step) at least 10% of that stage's share, i.e. more than 5% of the pipeline's.
    CHECK(loss <= 0.10 * base.pipeline_time * 1.0001);
    CHECK(loss >= 0.05 * base.pipeline_time);
  }
}

TEST_CASE("calibrated plan: the step-time loss from per-step jitter grows with the ranks", "[plan]") {
  const ModelConfig cfg = ModelConfig::preset("tiny");
  const plan::Calibration cal = synthetic();
  plan::Disturbance d;
  d.jitter = 0.05;
  double previous = 0;
  for (int dp : {1, 2, 8, 64}) {
    const plan::TrainerLayout l = layout(1, 2, dp, 8);
    const double base = plan::predict_trainer_step(cfg, cal, l).step_time;
    const double jittered = plan::predict_trainer_step(cfg, cal, l, d).step_time;
    const double loss = jittered / base - 1;
    INFO("ranks " << l.ranks() << ": loss " << 100 * loss << "%");
    CHECK(loss > previous);
    previous = loss;
  }
  CHECK(previous > 0.05);  // 128 ranks: the slowest of 64 replicas per stage is > 2 sigma slower
}

TEST_CASE("calibrated plan: step_scale multiplies every kernel, survives the file, and is checked", "[plan]") {
  const ModelConfig cfg = ModelConfig::preset("tiny");
  plan::Calibration cal = synthetic();
  const plan::TrainerLayout one = layout(1, 1, 1, 1);
  const double base = plan::predict_trainer_step(cfg, cal, one).step_time;
  CHECK(cal.op_time("matmul_forward", {int64_t(1e6)}, 1e6) == Approx(1e-4));
  cal.step_scale = 1.25;
  CHECK(cal.op_time("matmul_forward", {int64_t(1e6)}, 1e6) == Approx(1.25e-4));  // an exact sample
  CHECK(cal.op_time("matmul_forward", {7}, 3e7) == Approx(1.25 * 3e-3));          // the fitted line
  // One rank, no collectives: the whole step is kernels.
  CHECK(plan::predict_trainer_step(cfg, cal, one).step_time == Approx(1.25 * base));
  const plan::Calibration back = plan::Calibration::parse(cal.to_json(), "test");
  CHECK(back.step_scale == 1.25);
  std::string text = cal.to_json();
  const std::string field = "\"step_scale\": 1.25";
  REQUIRE(text.find(field) != std::string::npos);
  text.replace(text.find(field), field.size(), "\"step_scale\": -1");
  CHECK_THROWS_AS(plan::Calibration::parse(text, "test"), tessera::Error);
  // An older file without the field: 1.
  text.replace(text.find("\"step_scale\": -1,"), std::string("\"step_scale\": -1,").size(), "");
  CHECK(plan::Calibration::parse(text, "test").step_scale == 1);
}
