// The card-calibration file (card_calibration.h): reading, writing, and applying it to a cluster.
#include "tessera/card_calibration.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "io/json.h"
#include "tessera/error.h"

namespace tessera::plan {

namespace {

constexpr const char* kFormat = "tessera-card-calibration";

double positive(const json::Value& v, const char* key, const std::string& where) {
  const double x = v.at(key).as_double();
  if (!(x > 0) || !std::isfinite(x))
    throw data_error(std::string("card calibration: '") + key + "' must be a positive number", where);
  return x;
}

int64_t positive_int(const json::Value& v, const char* key, const std::string& where) {
  const int64_t x = v.at(key).as_int64();
  if (x <= 0) throw data_error(std::string("card calibration: '") + key + "' must be a positive integer", where);
  return x;
}

// Algorithm bandwidth to bus bandwidth, as nccl-tests: all-reduce moves 2(n-1)/n of the data per
// rank, all-gather and reduce-scatter (n-1)/n.
double bus_factor(const std::string& op, int n) {
  if (n <= 1) return 0;
  return (op == "all_reduce" ? 2.0 : 1.0) * (n - 1) / n;
}

}  // namespace

double CardCollective::bus_bandwidth() const { return seconds > 0 ? bus_factor(op, ranks) * bytes / seconds : 0; }

CardCalibration CardCalibration::parse(const std::string& json_text, const std::string& where) {
  const json::Value v = json::parse(json_text, where);
  if (!v.is_object() || !v.contains("format") || v.at("format").as_string() != kFormat)
    throw data_error(std::string("not a card calibration (\"format\" must be \"") + kFormat + "\")", where,
                     "write one with tessera-calibrate --card --out FILE");
  if (v.at("version").as_int64() != 1) throw data_error("card calibration: unsupported version", where);
  CardCalibration c;
  c.card = v.at("card").as_string();
  c.device = v.at("device").as_string();
  if (v.contains("hbm_gbps")) c.hbm_gbps = positive(v, "hbm_gbps", where);
  if (v.contains("gemm"))
    for (const json::Value& g : v.at("gemm").items())
      c.gemm.push_back({positive_int(g, "m", where), positive_int(g, "n", where), positive_int(g, "k", where),
                        g.at("dtype").as_string(), positive(g, "tflops", where)});
  if (v.contains("attention"))
    for (const json::Value& a : v.at("attention").items())
      c.attention.push_back({positive_int(a, "batch", where), positive_int(a, "seq", where), positive_int(a, "heads", where),
                             positive_int(a, "head_dim", where), a.at("dtype").as_string(),
                             positive(a, "forward_tflops", where), positive(a, "backward_tflops", where)});
  if (v.contains("collectives"))
    for (const json::Value& x : v.at("collectives").items()) {
      CardCollective k;
      k.op = x.at("op").as_string();
      if (k.op != "all_reduce" && k.op != "all_gather" && k.op != "reduce_scatter")
        throw data_error("card calibration: unknown collective '" + k.op + "'", where, "use all_reduce, all_gather or reduce_scatter");
      k.ranks = int(positive_int(x, "ranks", where)), k.per_node = int(positive_int(x, "per_node", where));
      k.bytes = positive(x, "bytes", where), k.seconds = positive(x, "seconds", where);
      if (k.ranks < 2 || k.per_node > k.ranks)
        throw data_error("card calibration: a collective needs 2 or more ranks, at most all of them per node", where);
      c.collectives.push_back(k);
    }
  return c;
}

CardCalibration CardCalibration::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw config_error("cannot read the card calibration '" + path + "'", "check --card-calibration");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

std::string CardCalibration::to_json() const {
  json::Value root = json::Value::object();
  root.set("format", kFormat), root.set("version", 1), root.set("card", card), root.set("device", device);
  if (hbm_gbps > 0) root.set("hbm_gbps", hbm_gbps);
  json::Value g = json::Value::array();
  for (const CardGemm& x : gemm) {
    json::Value e = json::Value::object();
    e.set("m", x.m), e.set("n", x.n), e.set("k", x.k), e.set("dtype", x.dtype), e.set("tflops", x.tflops);
    g.push_back(e);
  }
  root.set("gemm", g);
  json::Value a = json::Value::array();
  for (const CardAttention& x : attention) {
    json::Value e = json::Value::object();
    e.set("batch", x.batch), e.set("seq", x.seq), e.set("heads", x.heads), e.set("head_dim", x.head_dim);
    e.set("dtype", x.dtype), e.set("forward_tflops", x.forward_tflops), e.set("backward_tflops", x.backward_tflops);
    a.push_back(e);
  }
  root.set("attention", a);
  json::Value k = json::Value::array();
  for (const CardCollective& x : collectives) {
    json::Value e = json::Value::object();
    e.set("op", x.op), e.set("ranks", x.ranks), e.set("per_node", x.per_node), e.set("bytes", x.bytes);
    e.set("seconds", x.seconds), e.set("busbw_gbps", x.bus_bandwidth() / 1e9);
    k.push_back(e);
  }
  root.set("collectives", k);
  return root.dump(2);
}

namespace {

// gemm_efficiency and gemm_half_dim that best reproduce the measured rates (as fractions of the
// card's peak): for each half dimension on a grid, the least-squares scale; the best pair.
void fit_gemm(ClusterSpec& c, const std::vector<CardGemm>& bf16, std::vector<std::string>& changes) {
  auto shape_terms = [&](const CardGemm& g, double half_dim) {
    ClusterSpec unit = c;
    unit.gemm_efficiency = 1, unit.gemm_half_dim = half_dim;
    return gemm_efficiency(unit, double(g.m), double(g.n), double(g.k));
  };
  double best_error = INFINITY, best_scale = c.gemm_efficiency, best_half = c.gemm_half_dim;
  std::vector<double> grid;
  if (bf16.size() == 1) grid = {c.gemm_half_dim};  // one shape fixes the scale only
  else
    for (double d = 0; d <= 1024; d += 8) grid.push_back(d);
  for (double half : grid) {
    double fs = 0, ss = 0;
    for (const CardGemm& g : bf16) {
      const double f = g.tflops * 1e12 / c.peak_flops, s = shape_terms(g, half);
      fs += f * s, ss += s * s;
    }
    const double scale = fs / ss;
    double error = 0;
    for (const CardGemm& g : bf16) error += std::pow(g.tflops * 1e12 / c.peak_flops - scale * shape_terms(g, half), 2);
    if (error < best_error - 1e-15) best_error = error, best_scale = scale, best_half = half;
  }
  char line[200];
  std::snprintf(line, sizeof line, "gemm_efficiency %.3f -> %.3f, gemm_half_dim %.0f -> %.0f (%zu bf16 GEMM shapes, rms %.3f of peak)",
                c.gemm_efficiency, best_scale, c.gemm_half_dim, best_half, bf16.size(), std::sqrt(best_error / bf16.size()));
  changes.push_back(line);
  c.gemm_efficiency = best_scale, c.gemm_half_dim = best_half;
}

void apply_collectives(ClusterSpec& c, const std::vector<CardCollective>& all, std::vector<std::string>& changes) {
  // Within a node (every rank on one node) and across nodes, separately: the largest buffer gives
  // the bandwidth, the smallest (with it) the latency per ring step.
  for (bool inter : {false, true}) {
    std::vector<CardCollective> v;
    for (const CardCollective& k : all)
      if ((k.per_node < k.ranks) == inter) v.push_back(k);
    if (v.empty()) continue;
    std::sort(v.begin(), v.end(), [](const CardCollective& a, const CardCollective& b) { return a.bytes < b.bytes; });
    const CardCollective& big = v.back();
    char line[200];
    if (!inter) {
      const double bw = big.bus_bandwidth() / c.link_efficiency;
      std::snprintf(line, sizeof line, "intra_bandwidth %.0f -> %.0f GB/s (%s busbw %.0f GB/s on %d ranks)", c.intra_bandwidth / 1e9,
                    bw / 1e9, big.op.c_str(), big.bus_bandwidth() / 1e9, big.ranks);
      c.intra_bandwidth = bw;
    } else {
      // A group spanning nodes runs at min(intra, per_node x inter) x link_efficiency.
      const double bw = big.bus_bandwidth() / (c.link_efficiency * big.per_node);
      std::snprintf(line, sizeof line, "inter_bandwidth %.1f -> %.1f GB/s per GPU (%s busbw %.0f GB/s on %d ranks, %d per node)",
                    c.inter_bandwidth / 1e9, bw / 1e9, big.op.c_str(), big.bus_bandwidth() / 1e9, big.ranks, big.per_node);
      c.inter_bandwidth = bw;
    }
    changes.push_back(line);
    const CardCollective& small = v.front();
    if (v.size() < 2 || small.bytes >= big.bytes) continue;
    // time = steps x latency + bus_factor x bytes / busbw (ring steps: n-1, twice for all-reduce).
    const double steps = (small.op == "all_reduce" ? 2.0 : 1.0) * (small.ranks - 1);
    const double latency = std::max(0.0, (small.seconds - bus_factor(small.op, small.ranks) * small.bytes / big.bus_bandwidth()) / steps);
    double& target = inter ? c.inter_latency : c.intra_latency;
    std::snprintf(line, sizeof line, "%s %.1f -> %.1f us (from %.0f-byte %s)", inter ? "inter_latency" : "intra_latency",
                  target * 1e6, latency * 1e6, small.bytes, small.op.c_str());
    target = latency;
    changes.push_back(line);
  }
}

}  // namespace

std::vector<std::string> CardCalibration::apply_to(ClusterSpec& c) const {
  std::vector<CardGemm> bf16;
  for (const CardGemm& g : gemm)
    if (g.dtype == "bf16") bf16.push_back(g);
  double fwd = 0, bwd = 0;
  int n = 0;
  for (const CardAttention& a : attention)
    if (a.dtype == "bf16") fwd += a.forward_tflops, bwd += a.backward_tflops, ++n;
  if (bf16.empty() && n == 0)
    throw config_error("the card calibration of '" + card + "' (" + device + ") has no bf16 GEMM or attention measurement",
                       "the planner models bf16 training: calibrate on a GPU (tessera-calibrate --card)");
  std::vector<std::string> changes;
  char line[200];
  if (hbm_gbps > 0) {  // first: the GEMM shape terms depend on it
    const double e = hbm_gbps * 1e9 / c.hbm_bandwidth;
    std::snprintf(line, sizeof line, "hbm_efficiency %.3f -> %.3f (copy %.0f GB/s of %.0f)", c.hbm_efficiency, e, hbm_gbps,
                  c.hbm_bandwidth / 1e9);
    changes.push_back(line);
    c.hbm_efficiency = e;
  }
  if (!bf16.empty()) fit_gemm(c, bf16, changes);
  if (n > 0) {
    const double ef = fwd / n * 1e12 / c.peak_flops, eb = bwd / fwd;
    std::snprintf(line, sizeof line, "attention_efficiency %.3f -> %.3f, attention_backward_efficiency %.3f -> %.3f (%d shapes)",
                  c.attention_efficiency, ef, c.attention_backward_efficiency, eb, n);
    changes.push_back(line);
    c.attention_efficiency = ef, c.attention_backward_efficiency = eb;
  }
  apply_collectives(c, collectives, changes);
  return changes;
}

}  // namespace tessera::plan
