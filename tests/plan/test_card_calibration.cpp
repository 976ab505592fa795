// Card calibration: the file format, applying a (synthetic) calibration to a cluster, and the
// producer run on this machine's CPU.
#include <array>
#include <cmath>
#include <string>

#include "support/test_support.h"
#include "tessera/card_calibration.h"
#include "tessera/error.h"
#include "tessera/plan.h"

using namespace tessera;
using namespace tessera::plan;

namespace {

// A card whose GEMMs follow the planner's own shape model with a known scale and half dimension,
// attention at known rates, and collectives inside and across nodes.
CardCalibration synthetic_card(const ClusterSpec& preset, double scale, double half_dim) {
  ClusterSpec truth = preset;
  truth.gemm_efficiency = scale, truth.gemm_half_dim = half_dim, truth.hbm_efficiency = 0.9;
  CardCalibration card;
  card.card = "synthetic H100", card.device = "cuda", card.hbm_gbps = 0.9 * preset.hbm_bandwidth / 1e9;
  for (auto [m, n, k] : {std::array<double, 3>{8192, 8192, 8192}, {16384, 1024, 8192}, {16384, 8192, 1024}, {4096, 512, 4096}})
    card.gemm.push_back({int64_t(m), int64_t(n), int64_t(k), "bf16", gemm_efficiency(truth, m, n, k) * preset.peak_flops / 1e12});
  card.gemm.push_back({256, 256, 256, "f32", 0.07});  // ignored: the planner models bf16
  card.attention.push_back({2, 8192, 32, 128, "bf16", 400, 300});
  // 8 ranks in a node at 300 GB/s bus bandwidth; 64 ranks over 8 nodes at 160 GB/s; small sizes for latency.
  auto ag = [](int ranks, int per_node, double bytes, double busbw, double latency) {
    return CardCollective{"all_gather", ranks, per_node, bytes, (ranks - 1) * latency + (ranks - 1.0) / ranks * bytes / busbw};
  };
  card.collectives = {ag(8, 8, 16e9, 300e9, 3e-6), ag(8, 8, 65536, 300e9, 3e-6), ag(64, 8, 16e9, 160e9, 8e-6),
                      ag(64, 8, 1e6, 160e9, 8e-6)};
  return card;
}

}  // namespace

TEST_CASE("plan: a card calibration file round-trips and rejects what is not one", "[plan]") {
  const CardCalibration card = synthetic_card(ClusterSpec::preset("h100", 8), 0.55, 200);
  const CardCalibration back = CardCalibration::parse(card.to_json(), "test");
  CHECK(back.card == card.card);
  REQUIRE(back.gemm.size() == card.gemm.size());
  CHECK(back.gemm[1].n == 1024);
  CHECK(back.gemm[1].tflops == Approx(card.gemm[1].tflops));
  REQUIRE(back.collectives.size() == 4);
  CHECK(back.collectives[2].per_node == 8);
  CHECK(back.collectives[0].bus_bandwidth() == Approx(300e9).epsilon(0.01));
  CHECK_THROWS_AS(CardCalibration::parse("{\"format\": \"something else\", \"version\": 1}", "test"), tessera::Error);
  std::string bad = card.to_json();
  bad.replace(bad.find("\"tflops\": "), 10, "\"tflops\": -");
  CHECK_THROWS_AS(CardCalibration::parse(bad, "test"), tessera::Error);
  CHECK_THROWS_AS(CardCalibration::load("/nonexistent/card.json"), tessera::Error);
}

TEST_CASE("plan: a card calibration replaces the preset's constants and the predictions follow it", "[plan]") {
  const ClusterSpec preset = ClusterSpec::preset("h100", 64);
  ClusterSpec c = preset;
  const auto changes = synthetic_card(preset, 0.55, 200).apply_to(c);
  CHECK(changes.size() >= 6);
  // The fit recovers the scale and half dimension the rates were generated with.
  CHECK(c.gemm_efficiency == Approx(0.55).epsilon(0.02));
  CHECK(c.gemm_half_dim == Approx(200).margin(8));
  CHECK(c.hbm_efficiency == Approx(0.9));
  CHECK(c.attention_efficiency == Approx(400e12 / preset.peak_flops));
  CHECK(c.attention_backward_efficiency == Approx(0.75));
  CHECK(c.intra_bandwidth * c.link_efficiency == Approx(300e9).epsilon(0.01));
  CHECK(8 * c.inter_bandwidth * c.link_efficiency == Approx(160e9).epsilon(0.01));
  CHECK(c.intra_latency == Approx(3e-6).epsilon(0.05));
  CHECK(c.inter_latency == Approx(8e-6).epsilon(0.05));
  CHECK(c.peak_flops == preset.peak_flops);  // MFU keeps its denominator

  // A calibration that measured exactly the preset's rates predicts what the preset does; one that
  // measured half of them predicts a slower step, by less than 2x (communication and the pipeline
  // are not compute).
  const ModelShape m = ModelShape::preset("llama2-13b");
  Layout l;
  l.tp = 4, l.dp = 16, l.sp = true, l.zero = 1, l.micro_batch = 1, l.microbatches = 8;
  CardCalibration same = synthetic_card(preset, preset.gemm_efficiency, preset.gemm_half_dim);
  same.hbm_gbps = preset.hbm_efficiency * preset.hbm_bandwidth / 1e9;
  same.attention = {{2, 8192, 32, 128, "bf16", preset.attention_efficiency * preset.peak_flops / 1e12,
                     preset.attention_backward_efficiency * preset.attention_efficiency * preset.peak_flops / 1e12}};
  same.collectives.clear();
  ClusterSpec cs = preset, half = preset;
  same.apply_to(cs);
  for (CardGemm& g : same.gemm) g.tflops /= 2;
  for (CardAttention& a : same.attention) a.forward_tflops /= 2, a.backward_tflops /= 2;
  same.apply_to(half);
  const Prediction base = predict(m, preset, l, 128), calibrated = predict(m, cs, l, 128), slow = predict(m, half, l, 128);
  CHECK(calibrated.step_time == Approx(base.step_time).epsilon(0.01));
  CHECK(slow.step_time > 1.6 * base.step_time);
  CHECK(slow.step_time < 2.0 * base.step_time);
  CHECK(half.gemm_efficiency == Approx(preset.gemm_efficiency / 2).epsilon(0.02));
}

TEST_CASE("plan: a CPU card calibration (f32 only) is refused by the bf16 planner, with the reason", "[plan]") {
  CardCalibration cpu;
  cpu.card = "CPU", cpu.device = "cpu", cpu.hbm_gbps = 20;
  cpu.gemm.push_back({256, 256, 256, "f32", 0.07});
  ClusterSpec c = ClusterSpec::preset("a100", 8);
  const ClusterSpec before = c;
  try {
    cpu.apply_to(c);
    FAIL("applied an f32-only calibration");
  } catch (const tessera::Error& e) {
    CHECK(std::string(e.what()).find("no bf16") != std::string::npos);
  }
  CHECK(c.hbm_efficiency == before.hbm_efficiency);  // nothing changed
}

TEST_CASE("plan: tessera-calibrate's card producer measures this CPU", "[plan]") {
  CardMeasureOptions o;
  o.quick = true, o.reps = 3;
  const CardCalibration card = measure_card(tessera::test::cpu_context(), nullptr, o);
  CHECK(card.device == "cpu");
  REQUIRE(card.gemm.size() == 3);
  for (const CardGemm& g : card.gemm) {
    CHECK(g.dtype == "f32");
    CHECK(g.tflops > 1e-5);
    CHECK(std::isfinite(g.tflops));
  }
  CHECK(card.hbm_gbps > 0.1);
  REQUIRE(card.attention.size() == 1);
  CHECK(card.attention[0].forward_tflops > 0);
  CHECK(card.attention[0].backward_tflops > 0);
  CHECK(card.collectives.empty());  // one process
  const CardCalibration back = CardCalibration::parse(card.to_json(), "measured");
  CHECK(back.gemm[2].k == card.gemm[2].k);
}
