#include "model/model_layout.h"

#include <fmt/format.h>

#include <algorithm>
#include <string>

#include "tessera/error.h"

namespace tessera::model {

namespace {

std::string divisors(int n) {
  std::string out;
  for (int d = 1; d <= n; ++d)
    if (n % d == 0) out += (out.empty() ? "" : ", ") + std::to_string(d);
  return out;
}

// config_error when tp does not divide `count` of `what` (why it must, and the divisors to choose from).
void divides(int tp, int count, const std::string& what, const std::string& why) {
  if (count % tp == 0) return;
  throw config_error(fmt::format("--tp {} does not divide the model's {} {} ({})", tp, count, what, why),
                     fmt::format("choose --tp among {}", divisors(count)));
}

}  // namespace

void validate_layout(const ModelConfig& config, const ModelLayout& l) {
  if (l.tp < 1 || l.pp < 1 || l.virtual_stages < 1)
    throw config_error(fmt::format("model layout: tp {}, pp {} and virtual stages {} must be at least 1", l.tp, l.pp,
                                   l.virtual_stages),
                       "set --tp, --pp and --virtual-stages to 1 or more");
  divides(l.tp, config.n_head, "attention heads", "tensor parallelism splits the heads across ranks");
  divides(l.tp, config.n_kv_head, "key/value heads",
          "tensor parallelism splits the key/value heads across ranks and does not replicate them");
  divides(l.tp, config.ffn_dim, "MLP columns", "tensor parallelism splits the MLP's columns across ranks");
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

LocalTable local_param_table(const ParamTable& global, int n_layer, const ModelLayout& layout) {
  const int chunks = layout.model_chunks();
  std::vector<bool> runs(size_t(chunks), false);
  for (int c = 0; c < layout.virtual_stages; ++c) runs[size_t(layout.model_chunk(c))] = true;
  auto holds_layer = [&](int layer) {
    for (int k = 0; k < chunks; ++k) {
      LayerRange r = chunk_layers(n_layer, chunks, k);
      if (layer >= r.begin && layer < r.end) return bool(runs[size_t(k)]);
    }
    return false;
  };
  const bool first = runs[0], last = runs[size_t(chunks - 1)];

  LocalTable out;
  for (size_t i = 0; i < global.size(); ++i) {
    const ParamSpec& spec = global[i];
    bool present;
    if (spec.layer < 0)
      present = first || (spec.tied_to_head && last);
    else if (spec.layer >= n_layer)
      present = last;
    else
      present = holds_layer(spec.layer);
    if (!present) continue;
    ParamSpec local = spec;
    local.shape = shard_shape(spec, layout.tp);
    if (spec.split_dim >= 0)
      for (int64_t& part : local.parts) part /= layout.tp;
    out.table.add(std::move(local));
    out.global_index.push_back(i);
  }
  return out;
}

}  // namespace tessera::model
