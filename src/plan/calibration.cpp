// Calibration files: parsing, writing, and the fits the calibrated planner looks times up in.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "io/file_util.h"
#include "io/json.h"
#include "tessera/calibration.h"
#include "tessera/error.h"

namespace tessera::plan {

namespace {

// Least squares time = a + work * b over the samples (b >= 0, a >= 0); one sample: through the origin.
struct Line {
  double a = 0, b = 0;
  double at(double work) const { return a + b * work; }
};

Line fit(const std::vector<std::pair<double, double>>& xy) {
  Line l;
  if (xy.empty()) return l;
  double sx = 0, sy = 0;
  for (const auto& p : xy) sx += p.first, sy += p.second;
  const double n = double(xy.size()), mx = sx / n, my = sy / n;
  double sxx = 0, sxy = 0;
  for (const auto& p : xy) sxx += (p.first - mx) * (p.first - mx), sxy += (p.first - mx) * (p.second - my);
  if (xy.size() >= 2 && sxx > 0) {
    l.b = std::max(0.0, sxy / sxx);
    l.a = std::max(0.0, my - l.b * mx);
  } else {
    l.b = mx > 0 ? my / mx : 0;
  }
  return l;
}

}  // namespace

Calibration Calibration::parse(const std::string& json_text, const std::string& where) {
  const json::Value v = json::parse(json_text, where);
  if (!v.is_object() || !v.find("ops") || !v.find("collectives"))
    throw data_error("not a tessera calibration file (no ops and collectives)", where,
                     "write one with mpirun -np N tessera-calibrate --out FILE");
  Calibration c;
  c.ranks = int(v.at("ranks").as_int64());
  c.threads = int(v.at("threads").as_int64());
  if (v.contains("cores")) c.cores = int(v.at("cores").as_int64());
  if (v.contains("idle_speedup")) c.idle_speedup = v.at("idle_speedup").as_double();
  if (v.contains("step_scale")) c.step_scale = v.at("step_scale").as_double();
  if (!(c.step_scale > 0) || c.step_scale > 100)
    throw data_error("step_scale " + std::to_string(c.step_scale) + " is not a plausible ratio of a step's kernel time to "
                     "the kernels' own", where, "calibrate again with tessera-calibrate");
  if (const json::Value* d = v.find("device")) c.device = d->as_string();
  if (const json::Value* d = v.find("model")) c.model = d->as_string();
  if (const json::Value* d = v.find("batch_size")) c.batch_size = int(d->as_int64());
  if (const json::Value* d = v.find("seq_len")) c.seq_len = int(d->as_int64());
  for (const json::Value& o : v.at("ops").items()) {
    OpSample s;
    s.op = o.at("op").as_string();
    for (const json::Value& d : o.at("dims").items()) s.dims.push_back(d.as_int64());
    s.work = o.at("work").as_double();
    s.seconds = o.at("s").as_double();
    c.ops.push_back(std::move(s));
  }
  for (const json::Value& o : v.at("collectives").items()) {
    CollectiveSample s;
    s.op = o.at("op").as_string();
    s.group = int(o.at("group").as_int64());
    s.bytes = o.at("bytes").as_double();
    s.seconds = o.at("s").as_double();
    c.collectives.push_back(std::move(s));
  }
  return c;
}

namespace {

// The text of an input named by a flag. Anything but a regular file is refused before it is opened
// (a FIFO would block the read forever); any failure is a config error pointing at the flag.
std::string read_flag_file(const std::string& path, const std::string& what, const std::string& flag) {
  try {
    return io::read_file(path, what);
  } catch (const Error& e) {
    throw config_error(e.what_happened(), "check " + flag, path);
  }
}

}  // namespace

Calibration Calibration::load(const std::string& path) {
  return parse(read_flag_file(path, "calibration file", "--calibration"), path);
}

std::string Calibration::to_json() const {
  json::Value root = json::Value::object();
  root.set("kind", "tessera-calibration");
  root.set("ranks", ranks), root.set("threads", threads), root.set("cores", cores), root.set("device", device);
  root.set("idle_speedup", idle_speedup), root.set("step_scale", step_scale), root.set("model", model);
  root.set("batch_size", batch_size), root.set("seq_len", seq_len);
  json::Value list = json::Value::array();
  for (const OpSample& s : ops) {
    json::Value o = json::Value::object();
    o.set("op", s.op);
    json::Value dims = json::Value::array();
    for (int64_t d : s.dims) dims.push_back(d);
    o.set("dims", dims), o.set("work", s.work), o.set("s", s.seconds);
    list.push_back(o);
  }
  root.set("ops", list);
  json::Value coll = json::Value::array();
  for (const CollectiveSample& s : collectives) {
    json::Value o = json::Value::object();
    o.set("op", s.op), o.set("group", s.group), o.set("bytes", s.bytes), o.set("s", s.seconds);
    coll.push_back(o);
  }
  root.set("collectives", coll);
  return root.dump(1);
}

double Calibration::op_time(const std::string& op, const std::vector<int64_t>& dims, double work) const {
  std::vector<std::pair<double, double>> xy;
  for (const OpSample& s : ops) {
    if (s.op != op) continue;
    if (s.dims == dims) return step_scale * s.seconds;
    xy.emplace_back(s.work, s.seconds);
  }
  if (xy.empty())
    throw config_error("the calibration file has no samples of " + op,
                       "calibrate again with tessera-calibrate for this model and batch");
  return step_scale * fit(xy).at(work);
}

namespace {
// The group size measured for `op` closest to `group` (0 when `op` was never measured).
int nearest_group(const std::vector<CollectiveSample>& samples, const std::string& op, int group) {
  int nearest = 0;
  for (const CollectiveSample& s : samples)
    if (s.op == op && (nearest == 0 || std::abs(s.group - group) < std::abs(nearest - group))) nearest = s.group;
  return nearest;
}
}  // namespace

double Calibration::sync_time(int group) const {
  if (group <= 1) return 0;
  const int nearest = nearest_group(collectives, "sync", group);
  for (const CollectiveSample& s : collectives)
    if (s.op == "sync" && s.group == nearest) return s.seconds;
  return 0;
}

double Calibration::collective_time(const std::string& op, int group, double bytes) const {
  if (group <= 1 || bytes <= 0) return 0;
  const int nearest = nearest_group(collectives, op, group);
  std::vector<std::pair<double, double>> xy;
  for (const CollectiveSample& s : collectives)
    if (s.op == op && s.group == nearest) xy.emplace_back(s.bytes, s.seconds);
  if (xy.empty())
    throw config_error("the calibration file has no " + op + " samples",
                       "calibrate with at least as many ranks as the layout's groups");
  return fit(xy).at(bytes);
}

std::vector<MeasuredStep> read_throughput_log(const std::string& path) {
  std::istringstream in(read_flag_file(path, "throughput log", "--measured"));
  std::vector<MeasuredStep> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const json::Value v = json::parse(line, path);
    if (!v.find("kind") || v.at("kind").as_string() != "throughput") continue;
    out.push_back({v.at("layout").as_string(), int(v.at("ranks").as_int64()), v.at("ms").as_double()});
  }
  return out;
}

void require_calibrated_pieces(const ModelConfig& c) {
  const ModelConfig gpt2 = ModelConfig::gpt2(c.n_layer, c.n_head, c.n_embd, c.vocab_size, c.max_seq_len);
  if (c.norm != gpt2.norm || c.position != gpt2.position || c.mlp != gpt2.mlp || c.bias != gpt2.bias ||
      c.tie_embeddings != gpt2.tie_embeddings || c.n_kv_head != c.n_head || c.ffn_dim != gpt2.ffn_dim)
    throw config_error("calibration models GPT-2's kernels (LayerNorm, learned positions, a GELU MLP of 4C, "
                       "multi-head attention, tied head); " + c.describe() + " is not calibrated yet",
                       "calibrate and predict a GPT-2 model, or plan this one without --calibration");
}

std::vector<OpSample> trainer_op_shapes(const ModelConfig& config, int B, int T, int tp) {
  require_calibrated_pieces(config);
  const int64_t C = config.n_embd, N = int64_t(B) * T, Cl = C / tp, NHl = config.n_head / tp, hd = C / config.n_head;
  const int64_t Vl = config.padded_vocab_size / tp;
  std::vector<OpSample> out;
  auto add = [&](const char* op, std::vector<int64_t> dims, double work) { out.push_back({op, std::move(dims), work, 0}); };
  // Matmuls {rows, K, OC, flag}: flag = gelu epilogue (forward) or bias gradient (backward).
  const int64_t shapes[4][2] = {{C, 3 * Cl}, {Cl, C}, {C, 4 * Cl}, {4 * Cl, C}};
  for (int k = 0; k < 4; ++k) {
    add("matmul_forward", {N, shapes[k][0], shapes[k][1], k == 2 ? 1 : 0}, 2.0 * N * shapes[k][0] * shapes[k][1]);
    add("matmul_backward", {N, shapes[k][0], shapes[k][1], 1}, 4.0 * N * shapes[k][0] * shapes[k][1]);
  }
  add("matmul_forward", {N, C, Vl, 0}, 2.0 * N * C * Vl);  // the tied lm head
  add("matmul_backward", {N, C, Vl, 0}, 4.0 * N * C * Vl);
  add("attention_forward", {B, T, NHl, hd}, 2.0 * B * NHl * T * T * hd);
  add("attention_backward", {B, T, NHl, hd}, 5.0 * B * NHl * T * T * hd);
  add("gelu_backward", {N, 4 * Cl}, 12.0 * N * 4 * Cl);
  add("crossentropy_forward", {N, Vl}, 4.0 * N * Vl);
  add("crossentropy_backward", {N, Vl}, 8.0 * N * Vl);
  add("embedding_forward", {B, T, C, Vl}, 8.0 * N * C);
  add("embedding_backward", {B, T, C, Vl}, 12.0 * N * C);
  for (int64_t rows : {N, tp > 1 ? N / tp : int64_t(0)}) {
    if (rows <= 0) continue;
    add("layernorm_forward", {rows, C}, 8.0 * rows * C);
    add("layernorm_backward", {rows, C}, 16.0 * rows * C);
    add("residual_forward", {rows, C}, 12.0 * rows * C);
  }
  return out;
}

}  // namespace tessera::plan
