// Layout enumeration, ranking and the planner's output (table, flags, JSON).
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "io/json.h"
#include "plan/sim_cache.h"
#include "tessera/error.h"
#include "tessera/plan.h"

namespace tessera::plan {

namespace {

// Context-parallel sizes and variants for the model: none, and for every software variant each power
// of two up to max_cp that keeps min_cp_tokens per rank and splits every sequence into 2cp equal
// chunks (the causal load balance); all-to-all also needs the heads per tp rank to divide by cp.
struct CpChoice {
  int cp;
  ContextParallel kind;
};
std::vector<CpChoice> context_parallel_choices(const ModelShape& m, int tp, unsigned kinds, const PlanOptions& o) {
  std::vector<CpChoice> out = {{1, ContextParallel::ring}};
  for (int cp = 2; cp <= o.max_cp; cp *= 2) {
    if (m.seq_len % (2 * cp) || m.seq_len / cp < o.min_cp_tokens) break;
    for (ContextParallel k : {ContextParallel::ring, ContextParallel::all_gather, ContextParallel::all_to_all}) {
      if (!(kinds & unsigned(k))) continue;
      if (k == ContextParallel::all_to_all && ((m.heads / tp) % cp || (m.kv_heads / tp) % cp)) continue;
      out.push_back({cp, k});
    }
  }
  return out;
}

}  // namespace

std::vector<Layout> enumerate_layouts(const ModelShape& m, const ClusterSpec& c, int global_batch, const PlanOptions& o,
                                      unsigned context_parallel) {
  m.validate();
  c.validate();
  if (global_batch < 1) throw config_error("--global-batch must be positive", "set --global-batch");
  if (global_batch > kMaxGlobalBatch)
    throw config_error("--global-batch " + std::to_string(global_batch) + " is more than the planner handles (at most " +
                           std::to_string(kMaxGlobalBatch) + ")",
                       "check --global-batch");
  std::vector<Layout> out;
  const int n = c.gpus;
  for (int tp = 1; tp <= std::min(c.gpus_per_node, n); tp *= 2) {
    if (m.heads % tp || m.kv_heads % tp || n % tp) continue;
    for (const CpChoice& cpc : context_parallel_choices(m, tp, context_parallel, o)) {
    const int tcp = tp * cpc.cp;
    if (n % tcp) continue;
    for (int pp = 1; pp <= m.layers && int64_t(tcp) * pp <= n; ++pp) {
      if (n % (tcp * pp)) continue;
      if (!o.allow_uneven_pipeline && m.layers % pp) continue;
      const int dp = n / (tcp * pp);
      if (global_batch % dp) continue;
      const int per_rank = global_batch / dp;
      for (int b : o.micro_batches) {
        if (per_rank % b) continue;
        const int mbs = per_rank / b;
        struct Sched { ScheduleKind kind; int v; };
        std::vector<Sched> schedules = {{ScheduleKind::one_f_one_b, 1}};
        if (pp > 1 && mbs % pp == 0)
          for (int v = 2; v <= o.max_virtual_stages; ++v) {
            // Uneven splits: the slowest chunk counts, and a stage may hold one layer fewer than
            // chunks (Llama 3's 126 layers on 16 stages of 8 chunks, the first and last one short).
            const int64_t chunks = int64_t(pp) * v;
            if (chunks > m.layers && (!o.allow_short_stages || chunks >= m.layers + pp)) break;
            if (m.layers % chunks && !o.allow_uneven_pipeline) continue;
            schedules.push_back({ScheduleKind::interleaved_1f1b, v});
          }
        for (const Sched& s : schedules)
          for (int sp = 0; sp <= (tp > 1 ? 1 : 0); ++sp)
            for (int zero = 0; zero <= (dp * cpc.cp > 1 ? o.max_zero : 0); ++zero)
              for (Recompute rc : {Recompute::none, Recompute::selective, Recompute::elementwise, Recompute::full}) {
                Layout l;
                l.tp = tp, l.cp = cpc.cp, l.cp_kind = cpc.kind, l.pp = pp, l.dp = dp, l.sp = sp != 0, l.zero = zero;
                l.recompute = rc, l.micro_batch = b, l.microbatches = mbs, l.schedule = s.kind, l.virtual_stages = s.v;
                out.push_back(l);
              }
      }
    }
    }
  }
  return out;
}

PlanResult plan(const ModelShape& m, const ClusterSpec& c, int global_batch, const SoftwareSpec& sw, const PlanOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  PlanResult r;
  r.software = sw.name;
  r.context_parallel = sw.context_parallel;
  PlanOptions options = o;
  options.max_zero = std::min(o.max_zero, sw.max_zero);
  options.allow_uneven_pipeline = o.allow_uneven_pipeline && sw.uneven_chunks;
  options.allow_short_stages = o.allow_short_stages && sw.short_stages;
  const std::vector<Layout> layouts = enumerate_layouts(m, c, global_batch, options, sw.context_parallel);
  r.layouts_considered = int64_t(layouts.size());
  detail::SimCache cache;
  for (const Layout& l : layouts) {
    if (o.only && !o.only(l)) continue;
    // Flash attention already recomputes the attention core: selective equals none.
    if (sw.flash_attention && l.recompute == Recompute::selective) continue;
    if (l.recompute == Recompute::elementwise && !sw.elementwise_recompute) continue;
    // Context-parallel variants differ only in their exchange: simulate the cheapest one.
    if (l.cp > 1 && detail::context_parallel_dominated(m, c, l, sw)) continue;
    // The first stage keeps at least min(pp, m) microbatches in flight under 1F1B and interleaving:
    // a layout that cannot fit even then needs no simulation.
    if (memory_per_gpu(m, c, l, sw, std::min(l.pp, l.microbatches)).total() > c.memory_bytes) continue;
    Prediction p = detail::predict_cached(m, c, l, global_batch, sw, cache);
    if (!p.fits) continue;
    r.ranked.push_back(std::move(p));
    // Recomputing every layer costs a forward: also try recomputing only as few layers of each chunk
    // as it takes to fit (Megatron's block method), the fewest that fit.
    if (l.recompute != Recompute::full || !sw.partial_recompute) continue;
    const int per_chunk = detail::layers_per_chunk(m, l);
    int lo = 1, hi = per_chunk;  // memory falls as k grows: bisect for the fewest layers that fit
    Prediction fewest;
    while (lo < hi) {
      Layout partial = l;
      partial.recompute_layers = (lo + hi) / 2;
      Prediction q = detail::predict_cached(m, c, partial, global_batch, sw, cache);
      if (q.fits) hi = partial.recompute_layers, fewest = std::move(q);
      else lo = partial.recompute_layers + 1;
    }
    if (hi < per_chunk && (!o.only || o.only(fewest.layout))) r.ranked.push_back(std::move(fewest));
  }
  r.layouts_fitting = int64_t(r.ranked.size());
  // Fastest first; ties (within 0.1%) to the smaller memory.
  std::stable_sort(r.ranked.begin(), r.ranked.end(), [](const Prediction& a, const Prediction& b) {
    if (std::abs(a.step_time - b.step_time) > 1e-3 * std::min(a.step_time, b.step_time)) return a.step_time < b.step_time;
    return a.memory.total() < b.memory.total();
  });
  r.simulations = cache.simulations();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::string train_command(const ModelShape& m, const Prediction& p) {
  const Layout& l = p.layout;
  // tessera-train has no context parallelism: no command it would refuse, only what the layout needs.
  if (l.cp > 1)
    return "(no tessera-train command: this layout splits every sequence over " + std::to_string(l.cp) +
           " GPUs with " + context_parallel_name(l.cp_kind) +
           " context parallelism, which tessera-train cannot run yet; it needs a trainer with context parallelism, "
           "e.g. Megatron-Core's --context-parallel-size " + std::to_string(l.cp) + ")";
  // tessera-train trains the GPT-2 presets, with recomputation none or full: anything else gets the
  // layout flags and a note saying what tessera-train cannot do yet, never flags it would refuse.
  static const char* kTrainable[] = {"tiny", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"};
  bool trainable = false;
  for (const char* name : kTrainable) trainable = trainable || m.name == name;
  const bool recompute_ok = l.recompute != Recompute::selective && l.recompute != Recompute::elementwise;
  char buf[700];
  std::snprintf(buf, sizeof buf,
                "mpirun -np %lld tessera-train --model %s --seq-len %lld --batch-size %d --tp %d --pp %d --dp %d%s --zero %d "
                "--microbatches %d --schedule %s --virtual-stages %d --recompute %s",
                (long long)l.gpus(), m.name.c_str(), (long long)m.seq_len, l.micro_batch, l.tp, l.pp, l.dp, l.sp ? " --sp" : "",
                std::min(l.zero, 1), l.microbatches, schedule_kind_name(l.schedule), l.virtual_stages,
                recompute_ok ? recompute_name(l.recompute) : "full");
  std::string command = buf;
  if (!trainable) command += "   (note: tessera-train trains GPT-2 models only so far; " + m.name + " needs its model first)";
  if (!recompute_ok)
    command += std::string("   (note: the plan assumes ") + recompute_name(l.recompute) +
               " recomputation, which tessera-train does not have yet; full shown)";
  if (l.recompute == Recompute::full && l.recompute_layers > 0)
    command += "   (note: the plan recomputes " + std::to_string(l.recompute_layers) +
               " layers per chunk; tessera-train recomputes all of them)";
  if (l.zero >= 2) command += "   (note: the plan assumes ZeRO-2, which tessera-train does not have yet; ZeRO-1 shown)";
  return command;
}

namespace {
const char* kConvention =
    "MFU: model FLOPs = 3 x forward matmul FLOPs (attention in full, logits included, no recomputation); "
    "for GPT 72 B s l h^2 (1 + s/(6h) + V/(12 l h)) (Narayanan et al. 2021)";
}

std::string format_table(const ModelShape& m, const ClusterSpec& c, int global_batch, const PlanResult& r, int top) {
  std::string out;
  char buf[512];
  out += "model   " + m.describe() + "\n";
  out += "cluster " + c.describe() + "\n";
  out += "software " + r.software + "\n";
  std::snprintf(buf, sizeof buf, "global batch %d sequences (%.2fM tokens); %lld layouts, %lld fit, %lld simulations, %.2f s\n",
                global_batch, double(global_batch) * m.seq_len / 1e6, (long long)r.layouts_considered,
                (long long)r.layouts_fitting, (long long)r.simulations, r.seconds);
  out += buf;
  out += std::string(kConvention) + "\n\n";
  std::snprintf(buf, sizeof buf, "%4s  %-52s %8s %9s %12s %6s %7s %7s\n", "rank", "layout", "mem GB", "step s",
                "tokens/s", "MFU%", "bubble%", "comm%");
  out += buf;
  const int rows = std::min<int>(top, int(r.ranked.size()));
  for (int i = 0; i < rows; ++i) {
    const Prediction& p = r.ranked[size_t(i)];
    std::snprintf(buf, sizeof buf, "%4d  %-52s %8.1f %9.3f %12.4g %6.1f %7.1f %7.1f\n", i + 1, p.layout.describe().c_str(),
                  p.memory.total() / 1e9, p.step_time, p.tokens_per_s, 100 * p.mfu, 100 * p.bubble_fraction,
                  100 * p.exposed_comm_fraction);
    out += buf;
  }
  if (r.ranked.empty()) {
    out += "no layout fits in " + std::to_string(int(c.memory_bytes / 1e9)) + " GB per GPU\n";
    if (!r.context_parallel && m.seq_len >= 16384)
      out += "(software " + r.software + " has no context parallelism; a long sequence may fit split over GPUs with "
             "--software megatron-core, nemo-2024 or llama3 or --context-parallel ring, which tessera-train cannot run yet)\n";
  } else {
    out += "\nchosen: " + train_command(m, r.ranked.front()) + "\n";
  }
  return out;
}

std::string to_json(const ModelShape& m, const ClusterSpec& c, int global_batch, const PlanResult& r, int top) {
  json::Value root = json::Value::object();
  json::Value model = json::Value::object();
  model.set("name", m.name), model.set("layers", m.layers), model.set("hidden", m.hidden), model.set("heads", m.heads);
  model.set("kv_heads", m.kv_heads), model.set("ffn", m.ffn), model.set("vocab", m.vocab), model.set("seq_len", m.seq_len);
  model.set("parameters", m.parameters());
  root.set("model", model);
  json::Value cluster = json::Value::object();
  cluster.set("name", c.name), cluster.set("gpus", c.gpus), cluster.set("gpus_per_node", c.gpus_per_node);
  cluster.set("peak_tflops", c.peak_flops / 1e12), cluster.set("memory_gb", c.memory_bytes / 1e9);
  root.set("cluster", cluster);
  root.set("software", r.software);
  root.set("global_batch", global_batch);
  root.set("mfu_convention", kConvention);
  root.set("layouts_considered", r.layouts_considered), root.set("layouts_fitting", r.layouts_fitting);
  root.set("planning_seconds", r.seconds);
  json::Value rows = json::Value::array();
  for (int i = 0; i < std::min<int>(top, int(r.ranked.size())); ++i) {
    const Prediction& p = r.ranked[size_t(i)];
    const Layout& l = p.layout;
    json::Value row = json::Value::object();
    row.set("tp", l.tp), row.set("cp", l.cp), row.set("pp", l.pp), row.set("dp", l.dp), row.set("sp", l.sp), row.set("zero", l.zero);
    if (l.cp > 1) row.set("cp_kind", context_parallel_name(l.cp_kind));
    row.set("recompute", recompute_name(l.recompute)), row.set("batch_size", l.micro_batch);
    row.set("microbatches", l.microbatches), row.set("schedule", schedule_kind_name(l.schedule));
    row.set("virtual_stages", l.virtual_stages);
    row.set("memory_gb", p.memory.total() / 1e9), row.set("step_s", p.step_time), row.set("tokens_per_s", p.tokens_per_s);
    row.set("mfu", p.mfu), row.set("hfu", p.hfu), row.set("bubble", p.bubble_fraction);
    row.set("exposed_comm", p.exposed_comm_fraction), row.set("command", train_command(m, p));
    rows.push_back(row);
  }
  root.set("layouts", rows);
  return root.dump(2);
}

}  // namespace tessera::plan
