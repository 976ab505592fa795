// The planner: published scaling results reproduced from their stated model, layout and hardware
// (tests/plan/published.json), the memory model, the simulated bubble, collective formulas, the
// checkpoint interval and the planning time at 16,384 GPUs.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "io/json.h"
#include "support/test_support.h"
#include "published_cases.h"
#include "tessera/error.h"
#include "tessera/plan.h"
#include "tessera/model_config.h"

using namespace tessera;
using namespace tessera::plan;

namespace {

using testing::PlannedCase;
using testing::planned_cases;

// The published-run table of one set ("fit" or "test"), and its cases outside `tolerance` (or without
// a fitting stated layout). Errors are throughput errors: positive means predicted faster. Without
// `table` only the set's summary line is printed.
struct SetReport {
  int cases = 0, within_10 = 0, within_15 = 0;
  double worst = 0;
  std::vector<std::string> misses;  // outside the tolerance
};

SetReport report_set(const std::string& set, double tolerance, bool table = true) {
  SetReport rep;
  if (table)
    std::printf("\n%s set (%s)\n%-58s %10s %10s %8s  %s\n", set.c_str(),
                set == "fit" ? "may shape the constants" : "never shapes the constants: the planner's honest accuracy", "case",
                "published", "predicted", "error", "stated layout");
  for (const PlannedCase& pc : planned_cases()) {
    if (pc.c.set != set) continue;
    ++rep.cases;
    const bool seconds = pc.c.metric == "step_time_s";
    char published[32];
    std::snprintf(published, sizeof published, seconds ? "%.2f s" : "%.1f%%", seconds ? pc.c.published : 100 * pc.c.published);
    if (!pc.stated) {
      if (table) std::printf("%-58s %10s %10s %8s  (no fitting layout)\n", pc.c.name.c_str(), published, "none", "-");
      rep.misses.push_back(pc.c.name + ": no fitting layout with the stated fields");
      rep.worst = 1e9;
      continue;
    }
    const double v = testing::metric_value(pc.c, *pc.stated);
    char predicted[32];
    std::snprintf(predicted, sizeof predicted, seconds ? "%.2f s" : "%.1f%%", seconds ? v : 100 * v);
    if (table)
      std::printf("%-58s %10s %10s %+7.1f%%  %s (MFU %.1f%%, bubble %.1f%%, comm %.1f%%, %.0f GB)\n", pc.c.name.c_str(), published,
                  predicted, 100 * pc.error, pc.stated->layout.describe().c_str(), 100 * pc.stated->mfu,
                  100 * pc.stated->bubble_fraction, 100 * pc.stated->exposed_comm_fraction, pc.stated->memory.total() / 1e9);
    const double e = std::abs(pc.error);
    rep.worst = std::max(rep.worst, e);
    rep.within_10 += e <= 0.10;
    rep.within_15 += e <= 0.15;
    if (e > tolerance) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%+.1f%%", 100 * pc.error);
      rep.misses.push_back(pc.c.name + ": " + buf);
    }
  }
  std::printf("%s set: %d cases, %d within 10%%, %d within 15%%, worst %.1f%%\n", set.c_str(), rep.cases, rep.within_10,
              rep.within_15, 100 * rep.worst);
  return rep;
}

std::string lines(const std::vector<std::string>& items) {
  std::string report;
  for (const std::string& f : items) report += "\n  " + f;
  return report;
}

}  // namespace

// Each of the two set tests prints both sets' errors (the other as its summary line): the fit
// set's alone would flatter the planner.
TEST_CASE("plan: the fit set's published results are reproduced within 10%", "[plan]") {
  const SetReport fit = report_set("fit", 0.10);
  report_set("test", 0.25, false);
  CHECK(fit.cases >= 17);
  INFO("fit-set cases outside 10% (or without a fitting layout):" << lines(fit.misses));
  CHECK(fit.misses.empty());
}

TEST_CASE("plan: the test set (never fitted) is reported, and stays within its recorded accuracy", "[plan]") {
  report_set("fit", 0.10, false);
  const SetReport test = report_set("test", 0.25);
  // At least 10 runs from at least four sources, A100 and H100.
  CHECK(test.cases >= 10);
  // The goal is 8 of them within 10% and all within 15%; the planner reaches the first, not
  // the second (README, "Checked against published results": the misses and why). These bounds
  // record today's accuracy so that a change that loses it fails here.
  INFO("test-set cases outside 25% (or without a fitting layout):" << lines(test.misses));
  CHECK(test.misses.empty());
  CHECK(test.within_10 >= 12);
  CHECK(test.within_15 >= 16);
}

TEST_CASE("plan: every published layout fits in memory (each was trained)", "[plan]") {
  std::vector<std::string> rejected;
  for (const PlannedCase& pc : planned_cases())
    if (!pc.stated) rejected.push_back(pc.c.name);
  INFO("published layouts the memory model rejects:" << lines(rejected));
  CHECK(rejected.empty());
}

TEST_CASE("plan: the planner's best layout reaches at least the published utilisation", "[plan]") {
  std::vector<std::string> below;
  std::printf("\n%-58s %10s  %s\n", "case", "best/publ.", "planner's best layout");
  for (const PlannedCase& pc : planned_cases()) {
    REQUIRE(pc.best);
    if (pc.stated) CHECK(pc.best_ratio >= 1 + pc.error - 1e-9);
    std::printf("%-58s %9.1f%%  %s\n", pc.c.name.c_str(), 100 * pc.best_ratio, pc.best->layout.describe().c_str());
    // At least the published figure, within the 10% the reproduction allows.
    if (pc.best_ratio < 0.9) below.push_back(pc.c.name);
  }
  INFO("cases where the planner's best is below 90% of the published figure:" << lines(below));
  CHECK(below.empty());
}

TEST_CASE("plan: per-GPU memory matches published and framework-reported figures within 10%", "[plan]") {
  const auto cases = testing::load_memory_cases();
  REQUIRE(cases.size() >= 3);
  for (const testing::MemoryCase& mc : cases) {
    INFO(mc.name);
    if (mc.kind == "activations") {
      const testing::PublishedCase& c = mc.layout;
      Layout l;
      l.tp = c.tp, l.cp = c.cp, l.pp = c.pp, l.dp = c.cluster.gpus / (c.tp * c.cp * c.pp), l.sp = c.sp > 0;
      l.zero = std::max(0, c.zero), l.recompute = c.recompute, l.micro_batch = c.micro_batch;
      l.microbatches = c.global_batch / (l.dp * c.micro_batch);
      const Prediction p = predict(c.model, c.cluster, l, c.global_batch, c.software);
      std::printf("memory: %s: predicted %.2f GB of activations, published %.2f GB (%+.1f%%)\n", mc.name.c_str(),
                  p.memory.activations / 1e9, mc.published_gb, 100 * (p.memory.activations / 1e9 / mc.published_gb - 1));
      CHECK(p.memory.activations / 1e9 == Approx(mc.published_gb).epsilon(0.10));
    } else {
      // Model states of `parameters` parameters on one GPU (a model small enough to stand for itself).
      const double layer = ModelShape::gpt(1, 1024, 16, 1, 1024).layer_parameters();
      ModelShape m = ModelShape::gpt(int64_t(mc.parameters / layer), 1024, 16, 1, 1024);
      m.tied_embedding = true, m.learned_positions = false;
      SoftwareSpec sw;
      sw.grad_bytes = mc.grad_bytes, sw.optimizer_bytes = mc.optimizer_bytes;
      for (const auto& [stage, expect] : mc.expect_gb) {
        Layout l;
        l.dp = mc.dp, l.zero = stage;
        const Memory mem = memory_per_gpu(m, ClusterSpec::preset("a100", mc.dp), l, sw, 1);
        const double states = (mem.parameters + mem.gradients + mem.optimizer) / 1e9 * (mc.parameters / (m.parameters()));
        std::printf("memory: %s, ZeRO-%d: predicted %.2f GB, published %.2f GB\n", mc.name.c_str(), stage, states, expect);
        CHECK(states == Approx(expect).epsilon(0.10));
      }
    }
  }
}

TEST_CASE("plan: memory model (ZeRO, sequence parallelism, full recomputation)", "[plan]") {
  const ModelShape m = ModelShape::gpt(24, 2048, 16, 51200, 2048);
  const ClusterSpec c = ClusterSpec::preset("a100", 64);
  SoftwareSpec sw;
  sw.flash_attention = false;
  Layout l;
  l.tp = 4, l.pp = 2, l.dp = 8, l.micro_batch = 2, l.microbatches = 8;
  const Memory plain = memory_per_gpu(m, c, l, sw, 2);
  Layout zero = l;
  zero.zero = 1;
  const Memory sharded = memory_per_gpu(m, c, zero, sw, 2);
  CHECK(sharded.optimizer == Approx(plain.optimizer / 8).epsilon(1e-12));
  CHECK(sharded.parameters == Approx(plain.parameters));
  CHECK(sharded.gradients == Approx(plain.gradients));
  CHECK(plain.optimizer == Approx(6 * plain.parameters));  // 12 bytes vs 2 per parameter

  // Korthikanti et al. 2022: sbh (10 + 24/t + 5as/(ht)) without SP; SP divides all of it by t.
  const double s = 2048, b = 2, h = 2048, a = 16, t = 4, sbh = s * b * h;
  CHECK(layer_activation_bytes(m, l, sw) == Approx(sbh * (10 + 24 / t + 5 * a * s / (h * t))));
  Layout sp = l;
  sp.sp = true;
  CHECK(layer_activation_bytes(m, sp, sw) == Approx(sbh * (34 + 5 * a * s / h) / t));
  // The LayerNorm/dropout part (10 sbh) is what SP divides by t.
  CHECK(layer_activation_bytes(m, l, sw) - layer_activation_bytes(m, sp, sw) == Approx(10 * sbh * (1 - 1 / t)));
  Layout tp1 = l;
  tp1.tp = 1;
  CHECK(layer_activation_bytes(m, tp1, sw) == Approx(sbh * (34 + 5 * a * s / h)));
  // Selective recomputation drops the 5as^2b term; full keeps only the layer input.
  Layout sel = sp;
  sel.recompute = Recompute::selective;
  CHECK(layer_activation_bytes(m, sel, sw) == Approx(34 * sbh / t));
  Layout full = l;
  full.recompute = Recompute::full;
  CHECK(layer_activation_bytes(m, full, sw) == Approx(2 * sbh));
  full.sp = true;
  CHECK(layer_activation_bytes(m, full, sw) == Approx(2 * sbh / t));
  // Activations scale with the in-flight microbatches the schedule reports.
  const Memory two = memory_per_gpu(m, c, l, sw, 2), four = memory_per_gpu(m, c, l, sw, 4);
  CHECK(four.activations - two.activations == Approx(2 * 12 * layer_activation_bytes(m, l, sw)));
}

TEST_CASE("plan: the simulated 1F1B bubble is (p-1)/(m+p-1) with uniform compute and free p2p", "[plan]") {
  // Make p2p free: one GPU per node and infinite-like links make the transfers negligible.
  ModelShape m = ModelShape::gpt(16, 1024, 16, 1024, 512);
  ClusterSpec c = ClusterSpec::preset("h100", 4);
  c.intra_bandwidth = c.inter_bandwidth = 1e30;
  c.intra_latency = c.inter_latency = 0;
  SoftwareSpec sw;
  for (int m_count : {4, 8, 16}) {
    Layout l;
    l.pp = 4, l.dp = 1, l.micro_batch = 1, l.microbatches = m_count;
    const Prediction p = predict(m, c, l, m_count, sw);
    CHECK(p.bubble_fraction == Approx(3.0 / (m_count + 3)).epsilon(1e-9));
    CHECK(p.peak_in_flight == std::min(4, m_count));
  }
}

TEST_CASE("plan: collective times follow nccl-tests' bus bandwidth with a latency term", "[plan]") {
  ClusterSpec c = ClusterSpec::preset("a100", 64);
  const double S = 256e6, B = c.intra_bandwidth * c.link_efficiency, a = c.intra_latency;
  for (int n : {2, 4, 8}) {
    CHECK(all_reduce_time(c, S, n, n) == Approx(2.0 * (n - 1) / n * S / B + 2.0 * (n - 1) * a));
    CHECK(all_gather_time(c, S, n, n) == Approx(double(n - 1) / n * S / B + (n - 1) * a));
  }
  CHECK(all_reduce_time(c, S, 1, 1) == 0);
  // Across nodes: one member per node runs at the NIC's bandwidth; eight per node at min(NVLink, 8 NICs).
  const double inter = c.inter_bandwidth * c.link_efficiency;
  const double lat8 = std::ceil(std::log2(8.0)) * c.inter_latency;
  CHECK(all_reduce_time(c, S, 8, 1) == Approx(2.0 * 7 / 8 * S / inter + 2 * lat8));
  const double bw64 = std::min(c.intra_bandwidth, 8 * c.inter_bandwidth) * c.link_efficiency;
  CHECK(all_reduce_time(c, S, 64, 8) == Approx(2.0 * 63 / 64 * S / bw64 + 2 * (7 * a + lat8)));
  CHECK(all_reduce_time(c, S, 64, 8) < all_reduce_time(c, S, 64, 1));
  // All-gather and reduce-scatter have only rings: across nodes, n-1 steps each waiting for an
  // inter-node hop (NCCL's tree serves all-reduce only).
  CHECK(all_gather_time(c, S, 64, 8) == Approx(63.0 / 64 * S / bw64 + 63 * c.inter_latency));
  CHECK(all_gather_time(c, 1024, 4096, 8) > 4095 * c.inter_latency);
  // All-to-all: (n-1)/n of the buffer leaves each rank, over NVLink to its node and its NIC beyond.
  CHECK(all_to_all_time(c, S, 8, 8) == Approx(7 * c.intra_latency + 7.0 / 8 * S / B));
  CHECK(all_to_all_time(c, S, 16, 8) == Approx(c.inter_latency + 7 * a + 8.0 / 16 * S / inter));
}

TEST_CASE("plan: Young/Daly checkpoint interval and goodput", "[plan]") {
  CHECK(young_daly_interval(10, 3600) == Approx(std::sqrt(2.0 * 10 * 3600)));
  FailureModel f;  // one failure per 50,000 GPU-hours, Llama 3's rate
  const FailureEstimate e = estimate_failures(f, 16384);
  CHECK(e.mtbf_s == Approx(50000.0 * 3600 / 16384));
  CHECK(e.interval_s == Approx(std::sqrt(2 * f.checkpoint_blocking_s * e.mtbf_s)));
  CHECK(e.effective_ratio > 0.5);
  CHECK(e.effective_ratio < 1.0);
  // More GPUs fail more often: shorter interval, lower goodput.
  const FailureEstimate small = estimate_failures(f, 1024);
  CHECK(small.interval_s > e.interval_s);
  CHECK(small.effective_ratio > e.effective_ratio);
  // The interval never undercuts the time a checkpoint takes to become durable.
  f.checkpoint_total_s = 1e5;
  CHECK(estimate_failures(f, 16384).interval_s == 1e5);
  for (int n : {1024, 4096, 16384}) {
    const FailureEstimate x = estimate_failures(FailureModel{}, n);
    std::printf("failures at %5d GPUs: MTBF %.2f h, checkpoint every %.1f min, effective %.1f%%\n", n,
                x.mtbf_s / 3600, x.interval_s / 60, 100 * x.effective_ratio);
  }
}

TEST_CASE("plan: every layout of a 16,384-GPU cluster is planned quickly", "[plan]") {
  const ModelShape m = ModelShape::preset("llama3-405b");
  const ClusterSpec c = ClusterSpec::preset("h100", 16384);
  const auto t0 = std::chrono::steady_clock::now();
  const PlanResult r = plan::plan(m, c, 2048);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("planned %lld layouts (%lld fit, %lld simulations) of llama3-405b on 16,384 H100 in %.2f s\n",
              (long long)r.layouts_considered, (long long)r.layouts_fitting, (long long)r.simulations, seconds);
  CHECK(seconds < 10);  // the bound for every layout of a 16,384-GPU cluster
  REQUIRE(!r.ranked.empty());
  CHECK(r.ranked.front().layout.tp * r.ranked.front().layout.pp * r.ranked.front().layout.dp == 16384);
  CHECK(train_command(m, r.ranked.front()).find("--tp ") != std::string::npos);
}

namespace {

// Megatron-Core's strong scaling (Megatron-LM README, images/strong_scaling.png, r0.8.0): its GPT-3
// (96 x 12288, vocab 131,072, seq 4096: 177B) at a fixed batch of 1,152 sequences from 96 to 4,608
// H100, 47% MFU falling to 42%. The planner's best layout per GPU count, with Megatron-Core's software.
struct StrongScalingPoint {
  int gpus = 0;
  Prediction best;
};

const std::vector<StrongScalingPoint>& strong_scaling_curve() {
  static const std::vector<StrongScalingPoint> curve = [] {
    const ModelShape m = ModelShape::preset("mcore-177b");
    const SoftwareSpec sw = SoftwareSpec::preset("megatron-core");
    std::vector<StrongScalingPoint> points;
    std::printf("\nstrong scaling, mcore-177b on H100, global batch 1152 (published: 47%% at 96, 42%% at 4,608)\n");
    for (int gpus : {96, 192, 384, 768, 1536, 2304, 3072, 4608}) {
      const PlanResult r = plan::plan(m, ClusterSpec::preset("h100", gpus), 1152, sw);
      REQUIRE(!r.ranked.empty());
      const Prediction& b = r.ranked.front();
      std::printf("%6d GPUs: MFU %.1f%%  %s (bubble %.1f%%, comm %.1f%%)\n", gpus, 100 * b.mfu, b.layout.describe().c_str(),
                  100 * b.bubble_fraction, 100 * b.exposed_comm_fraction);
      points.push_back({gpus, b});
    }
    return points;
  }();
  return curve;
}

}  // namespace

TEST_CASE("plan: strong scaling reproduces Megatron-Core's 47% -> 42% (177B GPT, 96 -> 4,608 H100)", "[plan]") {
  const auto& curve = strong_scaling_curve();
  const Prediction& small = curve.front().best;
  const Prediction& large = curve.back().best;
  CHECK(small.mfu == Approx(0.47).epsilon(0.10));
  CHECK(large.mfu == Approx(0.42).epsilon(0.10));
  // Fewer microbatches per pipeline at the large end: a larger bubble and more exposed communication,
  // still more tokens per second.
  CHECK(large.mfu < small.mfu);
  CHECK(large.bubble_fraction > small.bubble_fraction);
  CHECK(large.exposed_comm_fraction > small.exposed_comm_fraction);
  for (size_t i = 1; i < curve.size(); ++i) CHECK(curve[i].best.tokens_per_s > curve[i - 1].best.tokens_per_s);
}

TEST_CASE("plan: stragglers and jitter through the cluster simulation", "[plan]") {
  const ModelShape m = ModelShape::preset("llama3-70b");
  const SoftwareSpec sw = SoftwareSpec::preset("megatron-core");
  auto best = [&](int gpus) {
    const PlanResult r = plan::plan(m, ClusterSpec::preset("h100", gpus), 1024, sw);
    REQUIRE(!r.ranked.empty());
    return r.ranked.front();
  };
  const Prediction p = best(1024);
  // Undisturbed, the simulation reproduces the prediction's step (up to the cache's 1% cost bins).
  const StragglerEstimate none = predict_stragglers(p, StragglerModel{});
  CHECK(none.loss() == 0.0);
  CHECK(none.base_step_time == Approx(p.step_time).epsilon(0.02));
  // One GPU 10% slower slows its stage: the step loses less than 10% (communication, the optimizer
  // and other stages' idle time absorb part of it), but a real share of it.
  StragglerModel slow;
  slow.slowdown = 0.10;
  const double slow_loss = predict_stragglers(p, slow).loss();
  std::printf("one GPU 10%% slower at 1,024 H100 (%s): step +%.1f%%\n", p.layout.describe().c_str(), 100 * slow_loss);
  CHECK(slow_loss > 0.03);
  CHECK(slow_loss < 0.10);
  // Per-GPU jitter: the expected slowest of more GPUs per stage is slower, so the loss grows with scale
  // (the same layout per replica, weak-scaled from 32 to 512 data-parallel replicas).
  StragglerModel jitter;
  jitter.jitter = 0.02;
  Layout l;
  l.tp = 8, l.pp = 4, l.sp = true, l.zero = 1, l.micro_batch = 1, l.microbatches = 8;
  l.schedule = ScheduleKind::interleaved_1f1b, l.virtual_stages = 5;
  auto weak = [&](int dp) {
    l.dp = dp;
    return predict(m, ClusterSpec::preset("h100", 32 * dp), l, 8 * dp, sw);
  };
  const double small = predict_stragglers(weak(32), jitter).loss();
  const double large = predict_stragglers(weak(512), jitter).loss();
  std::printf("jitter 2%% per GPU and step: +%.1f%% at 1,024 GPUs, +%.1f%% at 16,384\n", 100 * small, 100 * large);
  CHECK(small > 0.02);
  CHECK(large > small);
  StragglerModel bad;
  bad.jitter = -1;
  CHECK_THROWS_AS(predict_stragglers(p, bad), tessera::Error);
}

TEST_CASE("plan: GEMM efficiency, ZeRO-2 and partial recomputation in the cost model", "[plan]") {
  const ClusterSpec h100 = ClusterSpec::preset("h100", 8), a100 = ClusterSpec::preset("a100", 8);
  // Longer K hides the output tile's store better; H100's higher FLOPs per byte make short K cost more.
  CHECK(gemm_efficiency(h100, 8192, 8192, 1024) < gemm_efficiency(h100, 8192, 8192, 8192));
  CHECK(gemm_efficiency(h100, 8192, 8192, 1024) / gemm_efficiency(h100, 8192, 8192, 8192) <
        gemm_efficiency(a100, 8192, 8192, 1024) / gemm_efficiency(a100, 8192, 8192, 8192));
  CHECK(gemm_efficiency(h100, 8192, 8192, 4096, 4) < gemm_efficiency(h100, 8192, 8192, 4096, 2));
  CHECK(gemm_efficiency(h100, 1e9, 1e9, 1e9) == Approx(h100.gemm_efficiency).epsilon(1e-3));

  const ModelShape m = ModelShape::preset("llama2-70b");
  const SoftwareSpec sw;
  Layout l;
  l.tp = 8, l.pp = 4, l.dp = 4, l.sp = true, l.zero = 1, l.micro_batch = 1, l.microbatches = 8;
  const ClusterSpec c = ClusterSpec::preset("h100", 128);
  const Prediction z1 = predict(m, c, l, 32, sw);
  l.zero = 2;
  const Prediction z2 = predict(m, c, l, 32, sw);
  CHECK(z2.memory.gradients == Approx(z1.memory.gradients / 4));
  CHECK(z2.step_time >= z1.step_time);  // a reduce-scatter after every microbatch
  l.zero = 1, l.recompute = Recompute::full;
  const Prediction all = predict(m, c, l, 32, sw);
  l.recompute_layers = 10;  // of 20 per chunk
  const Prediction half = predict(m, c, l, 32, sw);
  l.recompute = Recompute::none, l.recompute_layers = 0;
  const Prediction none = predict(m, c, l, 32, sw);
  CHECK(half.memory.activations < none.memory.activations);
  CHECK(half.memory.activations > all.memory.activations);
  CHECK(half.step_time < all.step_time);
  CHECK(half.step_time > none.step_time);
  CHECK(half.layout.describe().find("rc=full:10") != std::string::npos);
  CHECK_THROWS_AS(SoftwareSpec::preset("deepspeed"), tessera::Error);
}

TEST_CASE("plan: element-wise recomputation keeps less than none and costs less than full", "[plan]") {
  const ModelShape m = ModelShape::preset("llama3-405b");
  const SoftwareSpec sw = SoftwareSpec::preset("llama3");
  const ClusterSpec c = ClusterSpec::preset("h100", 8192);
  Layout l;
  l.tp = 8, l.pp = 16, l.dp = 64, l.sp = true, l.zero = 1, l.micro_batch = 1, l.microbatches = 32;
  l.schedule = ScheduleKind::interleaved_1f1b, l.virtual_stages = 8;
  const double s = m.seq_len, h = m.hidden, f = m.ffn, t = l.tp;
  Layout none = l, ew = l, full = l;
  ew.recompute = Recompute::elementwise, full.recompute = Recompute::full;
  // The two norm outputs (2sbh each, split under SP) and the SwiGLU product (2sbf) are not kept.
  CHECK(layer_activation_bytes(m, none, sw) - layer_activation_bytes(m, ew, sw) == Approx((4 * s * h + 2 * s * f) / t));
  const Prediction pn = predict(m, c, none, 2048, sw), pe = predict(m, c, ew, 2048, sw), pf = predict(m, c, full, 2048, sw);
  CHECK(pe.memory.activations < pn.memory.activations);
  CHECK(pe.chunk_backward > pn.chunk_backward);  // the step itself is simulated in 1% bins
  CHECK(pe.step_time < 1.02 * pn.step_time);     // element-wise work only
  CHECK(pf.step_time > 1.2 * pn.step_time);   // a whole extra forward
  // Llama 3's stated layout fits in 80 GB with element-wise recomputation, not without.
  CHECK(!pn.fits);
  CHECK(pe.fits);
  CHECK(parse_recompute("elementwise") == Recompute::elementwise);
  CHECK(std::string(recompute_name(Recompute::elementwise)) == "elementwise");
  // tessera-train has no element-wise recomputation: the plan's command says so and shows full.
  CHECK(train_command(m, pe).find("--recompute full") != std::string::npos);
  CHECK(train_command(m, pe).find("elementwise recomputation") != std::string::npos);
}

TEST_CASE("plan: sizes are 64-bit and bounded, absurd ones are refused naming their flag", "[plan]") {
  // 4 x 1.2e9 does not fit in 32 bits: the FFN size once wrapped to 505,032,704.
  const ModelShape wide = ModelShape::gpt(2, 1200000000, 1, 100, 16);
  CHECK(wide.ffn == int64_t(4) * 1200000000);
  auto refusal = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const tessera::Error& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  CHECK(refusal([&] { wide.validate(); }).find("--hidden") != std::string::npos);
  ModelShape m = ModelShape::preset("gpt2");
  m.seq_len = int64_t(1) << 30;
  CHECK(refusal([&] { m.validate(); }).find("--seq-len") != std::string::npos);
  m = ModelShape::preset("gpt2");
  m.kv_heads = 24;  // more than the 12 heads
  CHECK(refusal([&] { m.validate(); }).find("--kv-heads") != std::string::npos);
  const ClusterSpec many = ClusterSpec::preset("h100", 2000000000);
  CHECK(refusal([&] { many.validate(); }).find("--gpus") != std::string::npos);
  CHECK(refusal([&] { enumerate_layouts(ModelShape::preset("gpt2"), ClusterSpec::preset("h100", 8), 2000000000); })
            .find("--global-batch") != std::string::npos);
  // The largest sizes accepted still give finite predictions (no product wraps).
  ModelShape big = ModelShape::gpt(1000, 1 << 17, 1024, 1 << 20, 1 << 16);
  big.validate();
  CHECK(std::isfinite(big.parameters()));
  CHECK(big.parameters() > 1e14);
  Layout l;
  l.tp = 8, l.pp = 1000, l.dp = 1, l.sp = true, l.recompute = Recompute::full, l.micro_batch = 1, l.microbatches = 1000;
  const Prediction p = predict(big, ClusterSpec::preset("h100", 8000), l, 1000);
  CHECK(std::isfinite(p.step_time));
  CHECK(p.step_time > 0);
  CHECK(p.memory.total() > 0);
}

TEST_CASE("plan: tessera-train's preset names plan the model it trains", "[plan]") {
  for (const std::string& name : {"tiny", "gpt2", "llama-tiny", "llama3.2-1b", "llama3.1-8b", "llama3.1-70b",
                                  "llama3.1-405b"}) {
    INFO(name);
    const ModelConfig c = ModelConfig::preset(name);
    const ModelShape m = ModelShape::preset(name);
    CHECK(m.name == name);
    CHECK(m.parameters() == double(c.parameter_count()));
    CHECK(m.gated_mlp == (c.mlp == MlpKind::swiglu));
    CHECK(m.kv_heads == c.n_kv_head);
  }
  // Llama 3.1 is Llama 3's shape with scaled rotary frequencies, pretrained at its original 8192 positions.
  const ModelShape l31 = ModelShape::preset("llama3.1-8b"), l3 = ModelShape::preset("llama3-8b");
  CHECK(l31.seq_len == 8192);
  CHECK(l31.model_flops_per_sequence() == l3.model_flops_per_sequence());
  CHECK(l31.parameters() == l3.parameters());
  CHECK(ModelShape::preset("llama-tiny").seq_len == ModelConfig::preset("llama-tiny").max_seq_len);
  CHECK_THROWS_AS(ModelShape::preset("llama3.1-9b"), Error);
}
