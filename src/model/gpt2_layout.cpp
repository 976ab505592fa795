#include "model/gpt2_layout.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "tessera/error.h"

namespace tessera::model {

namespace {

const char* kWte = "transformer.wte.weight";

std::string divisors(int n) {
  std::string out;
  for (int d = 1; d <= n; ++d)
    if (n % d == 0) out += (out.empty() ? "" : ", ") + std::to_string(d);
  return out;
}

// A split parameter seen as (outer, parts, part, inner): dim split_dim holds `parts` packed parts
// of `part` elements each; tp rank r owns elements [r*piece, (r+1)*piece) of every part.
struct SplitGeometry {
  int64_t outer = 1, parts = 1, part = 1, inner = 1, piece = 1;
};

SplitGeometry geometry(const ParamSpec& spec, int tp) {
  const int d = spec.split_dim;
  TESSERA_CHECK(d >= 0 && d < int(spec.shape.size()), "parameter " + spec.name + " is not split");
  SplitGeometry g;
  for (int i = 0; i < d; ++i) g.outer *= spec.shape[size_t(i)];
  for (size_t i = size_t(d) + 1; i < spec.shape.size(); ++i) g.inner *= spec.shape[i];
  g.parts = std::max(spec.split_parts, 1);
  const int64_t extent = spec.shape[size_t(d)];
  TESSERA_CHECK(extent % (g.parts * tp) == 0,
                fmt::format("{}: dim {} of {} is not {} parts divisible by tp {}", spec.name, d, extent, g.parts, tp));
  g.part = extent / g.parts;
  g.piece = g.part / tp;
  return g;
}

// Copies between the global tensor and rank's shard; to_shard picks the direction.
void copy_shard(const ParamSpec& spec, int tp, int rank, float* global, float* shard, bool to_shard) {
  if (spec.split_dim < 0 || tp == 1) {
    int64_t n = 1;
    for (int64_t d : spec.shape) n *= d;
    if (to_shard)
      std::memcpy(shard, global, size_t(n) * sizeof(float));
    else
      std::memcpy(global, shard, size_t(n) * sizeof(float));
    return;
  }
  const SplitGeometry g = geometry(spec, tp);
  const size_t run = size_t(g.piece * g.inner);  // contiguous in both
  for (int64_t o = 0; o < g.outer; ++o) {
    for (int64_t p = 0; p < g.parts; ++p) {
      float* gp = global + ((o * g.parts + p) * g.part + int64_t(rank) * g.piece) * g.inner;
      float* sp = shard + ((o * g.parts + p) * g.piece) * g.inner;
      if (to_shard)
        std::memcpy(sp, gp, run * sizeof(float));
      else
        std::memcpy(gp, sp, run * sizeof(float));
    }
  }
}

}  // namespace

void validate_layout(const GPT2Config& config, const ModelLayout& l) {
  if (l.tp < 1 || l.pp < 1 || l.virtual_stages < 1)
    throw config_error(fmt::format("GPT-2 layout: tp {}, pp {} and virtual stages {} must be at least 1", l.tp, l.pp,
                                   l.virtual_stages),
                       "set --tp, --pp and --virtual-stages to 1 or more");
  if (config.n_head % l.tp != 0)
    throw config_error(fmt::format("--tp {} does not divide the model's {} attention heads (tensor parallelism "
                                   "splits the heads across ranks)",
                                   l.tp, config.n_head),
                       fmt::format("choose --tp among {}", divisors(config.n_head)));
  if (config.padded_vocab_size % l.tp != 0)
    throw config_error(fmt::format("--tp {} does not divide the padded vocabulary of {} rows (the embedding and "
                                   "the cross-entropy split the vocabulary across ranks)",
                                   l.tp, config.padded_vocab_size),
                       fmt::format("choose --tp among {}", divisors(config.padded_vocab_size)));
  const int chunks = l.model_chunks();
  if (config.n_layer < chunks)
    throw config_error(fmt::format("--pp {} x --virtual-stages {} = {} model chunks, but the model has only {} "
                                   "layers (every chunk needs at least one)",
                                   l.pp, l.virtual_stages, chunks, config.n_layer),
                       fmt::format("use --pp and --virtual-stages whose product is at most {}", config.n_layer));
}

LayerRange chunk_layers(int n_layer, int chunks, int model_chunk) {
  const int base = n_layer / chunks, extra = n_layer % chunks;
  LayerRange r;
  r.begin = model_chunk * base + std::min(model_chunk, extra);
  r.end = r.begin + base + (model_chunk < extra ? 1 : 0);
  return r;
}

std::vector<int64_t> shard_shape(const ParamSpec& spec, int tp) {
  std::vector<int64_t> shape = spec.shape;
  if (spec.split_dim >= 0 && tp > 1) {
    const SplitGeometry g = geometry(spec, tp);
    shape[size_t(spec.split_dim)] = g.parts * g.piece;
  }
  return shape;
}

void extract_shard(const ParamSpec& spec, int tp, int rank, const float* global, float* shard) {
  copy_shard(spec, tp, rank, const_cast<float*>(global), shard, true);
}

void insert_shard(const ParamSpec& spec, int tp, int rank, const float* shard, float* global) {
  copy_shard(spec, tp, rank, global, const_cast<float*>(shard), false);
}

LocalTable local_param_table(const ParamTable& global, const GPT2Config& config, const ModelLayout& layout) {
  const int chunks = layout.model_chunks();
  std::vector<bool> runs(size_t(chunks), false);
  for (int c = 0; c < layout.virtual_stages; ++c) runs[size_t(layout.model_chunk(c))] = true;
  auto holds_layer = [&](int layer) {
    for (int k = 0; k < chunks; ++k) {
      LayerRange r = chunk_layers(config.n_layer, chunks, k);
      if (layer >= r.begin && layer < r.end) return bool(runs[size_t(k)]);
    }
    return false;
  };
  const bool first = runs[0], last = runs[size_t(chunks - 1)];

  LocalTable out;
  for (size_t i = 0; i < global.size(); ++i) {
    const ParamSpec& spec = global[i];
    bool present;
    if (spec.name == kWte)
      present = first || last;  // the embedding, and the tied lm head
    else if (spec.layer < 0)
      present = first;
    else if (spec.layer >= config.n_layer)
      present = last;
    else
      present = holds_layer(spec.layer);
    if (!present) continue;
    ParamSpec local = spec;
    local.shape = shard_shape(spec, layout.tp);
    out.table.add(std::move(local));
    out.global_index.push_back(i);
  }
  return out;
}

}  // namespace tessera::model
