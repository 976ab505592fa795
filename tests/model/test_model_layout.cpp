// How GPT-2 splits across a layout (one process, no communication): balanced layer chunks, each
// rank's local parameter table, tensor-parallel shards (q|k|v packed parts split head-wise), and the
// layouts the model refuses.
#include <vector>

#include "model/model_layout.h"
#include "model/decoder_params.h"
#include "support/test_support.h"
#include "tessera/error.h"
#include "tessera/model_config.h"

using namespace tessera;

TEST_CASE("model layout: layers split into balanced contiguous chunks", "[model][layout]") {
  auto ranges = [](int layers, int chunks) {
    std::vector<std::pair<int, int>> out;
    for (int k = 0; k < chunks; ++k) {
      model::LayerRange r = model::chunk_layers(layers, chunks, k);
      out.emplace_back(r.begin, r.end);
    }
    return out;
  };
  CHECK(ranges(4, 2) == std::vector<std::pair<int, int>>{{0, 2}, {2, 4}});
  CHECK(ranges(5, 2) == std::vector<std::pair<int, int>>{{0, 3}, {3, 5}});
  CHECK(ranges(7, 4) == std::vector<std::pair<int, int>>{{0, 2}, {2, 4}, {4, 6}, {6, 7}});
  CHECK(ranges(3, 3) == std::vector<std::pair<int, int>>{{0, 1}, {1, 2}, {2, 3}});
}

TEST_CASE("model layout: each rank's table holds its chunks' parameters in local shapes", "[model][layout]") {
  const ModelConfig c = ModelConfig::gpt2(4, 4, 16, 200, 8);  // padded vocabulary 256
  const ParamTable global = model::decoder_param_table(c);
  model::ModelLayout l;
  l.tp = 2;
  l.pp = 2;
  l.tp_rank = 1;

  l.pp_rank = 0;  // model chunk 0: wte, wpe, layers 0-1
  model::LocalTable first = model::local_param_table(global, c.n_layer, l);
  CHECK(first.table.find("transformer.wte.weight") == 0);
  CHECK(first.table.find("transformer.wpe.weight") == 1);
  CHECK(first.table.find("transformer.h.1.mlp.c_proj.bias") >= 0);
  CHECK(first.table.find("transformer.h.2.ln_1.weight") < 0);
  CHECK(first.table.find("transformer.ln_f.weight") < 0);
  auto shape = [](const model::LocalTable& t, const char* name) { return t.table[size_t(t.table.index_of(name))].shape; };
  CHECK(shape(first, "transformer.wte.weight") == std::vector<int64_t>{128, 16});
  CHECK(shape(first, "transformer.wpe.weight") == std::vector<int64_t>{8, 16});
  CHECK(shape(first, "transformer.h.0.attn.c_attn.weight") == std::vector<int64_t>{24, 16});
  CHECK(shape(first, "transformer.h.0.attn.c_attn.bias") == std::vector<int64_t>{24});
  CHECK(shape(first, "transformer.h.0.attn.c_proj.weight") == std::vector<int64_t>{16, 8});
  CHECK(shape(first, "transformer.h.0.mlp.c_fc.weight") == std::vector<int64_t>{32, 16});
  CHECK(shape(first, "transformer.h.0.mlp.c_proj.weight") == std::vector<int64_t>{16, 32});
  CHECK(shape(first, "transformer.h.0.mlp.c_proj.bias") == std::vector<int64_t>{16});
  CHECK(first.global_index[1] == size_t(global.index_of("transformer.wpe.weight")));

  l.pp_rank = 1;  // the last model chunk: the tied wte again, layers 2-3, ln_f
  model::LocalTable last = model::local_param_table(global, c.n_layer, l);
  CHECK(last.table.find("transformer.wte.weight") == 0);
  CHECK(last.table.find("transformer.wpe.weight") < 0);
  CHECK(last.table.find("transformer.h.1.ln_1.weight") < 0);
  CHECK(last.table.find("transformer.h.3.mlp.c_proj.bias") >= 0);
  CHECK(last.table[last.table.size() - 1].name == "transformer.ln_f.bias");

  // Interleaved: pp rank 0 of 2 with 2 virtual stages runs model chunks 0 and 2 of 4.
  l.virtual_stages = 2;
  l.pp_rank = 0;
  model::LocalTable interleaved = model::local_param_table(global, c.n_layer, l);
  CHECK(interleaved.table.find("transformer.h.0.ln_1.weight") >= 0);
  CHECK(interleaved.table.find("transformer.h.1.ln_1.weight") < 0);
  CHECK(interleaved.table.find("transformer.h.2.ln_1.weight") >= 0);
  CHECK(interleaved.table.find("transformer.h.3.ln_1.weight") < 0);
  CHECK(interleaved.table.find("transformer.ln_f.weight") < 0);
}

TEST_CASE("model layout: shards cover every element once; q, k and v split by heads", "[model][layout]") {
  const ModelConfig c = ModelConfig::gpt2(1, 4, 8, 50, 8);
  const ParamTable global = model::decoder_param_table(c);
  const int tp = 2;
  for (const char* name : {"transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_attn.bias",
                           "transformer.h.0.attn.c_proj.weight", "transformer.h.0.mlp.c_fc.weight",
                           "transformer.wte.weight", "transformer.h.0.ln_1.weight"}) {
    INFO(name);
    const ParamSpec& spec = global[size_t(global.index_of(name))];
    int64_t n = 1;
    for (int64_t d : spec.shape) n *= d;
    std::vector<float> values = test::random_uniform(size_t(n), 3);
    std::vector<float> rebuilt(size_t(n), 0.0f);
    const std::vector<int64_t> local = shard_shape(spec, tp);
    int64_t ln = 1;
    for (int64_t d : local) ln *= d;
    CHECK(ln * (spec.split_dim < 0 ? 1 : tp) == n);
    for (int r = 0; r < tp; ++r) {
      std::vector<float> shard(static_cast<size_t>(ln));
      extract_shard(spec, tp, r, values.data(), shard.data());
      insert_shard(spec, tp, r, shard.data(), rebuilt.data());
    }
    CHECK(rebuilt == values);
  }
  // c_attn.weight (3C, C) = q|k|v rows; tp rank 1 holds heads 2-3: rows 4-7 of each of q, k, v.
  const ParamSpec& qkv = global[size_t(global.index_of("transformer.h.0.attn.c_attn.weight"))];
  std::vector<float> rows(24 * 8);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = float(i / 8);  // each element holds its row
  std::vector<float> shard(12 * 8);
  extract_shard(qkv, 2, 1, rows.data(), shard.data());
  std::vector<float> shard_rows;
  for (size_t r = 0; r < 12; ++r) shard_rows.push_back(shard[r * 8]);
  CHECK(shard_rows == std::vector<float>{4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23});
  // c_proj.weight (C, C) is split along its columns: rank 1 holds columns 4-7 of every row.
  const ParamSpec& proj = global[size_t(global.index_of("transformer.h.0.attn.c_proj.weight"))];
  std::vector<float> cols(8 * 8);
  for (size_t i = 0; i < cols.size(); ++i) cols[i] = float(i % 8);
  std::vector<float> proj_shard(8 * 4);
  extract_shard(proj, 2, 1, cols.data(), proj_shard.data());
  CHECK(std::vector<float>(proj_shard.begin(), proj_shard.begin() + 4) == std::vector<float>{4, 5, 6, 7});
}

TEST_CASE("model layout: layouts the model cannot split are config errors naming the flag", "[model][layout]") {
  const ModelConfig c = ModelConfig::gpt2(4, 6, 24, 257, 8);  // padded vocabulary 384
  model::ModelLayout l;
  l.tp = 4;  // 6 heads
  try {
    model::validate_layout(c, l);
    FAIL("tp 4 accepted for 6 heads");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::bad_config);
    CHECK_THAT(e.what(), Catch::Contains("--tp 4") && Catch::Contains("6 attention heads") &&
                             Catch::Contains("1, 2, 3, 6"));
  }
  ModelConfig odd = c;
  odd.padded_vocab_size = 259;
  l.tp = 3;
  CHECK_THROWS_WITH(model::validate_layout(odd, l), Catch::Contains("--tp 3") && Catch::Contains("259"));
  l.tp = 1;
  l.pp = 3;
  l.virtual_stages = 2;
  CHECK_THROWS_WITH(model::validate_layout(c, l), Catch::Contains("--pp 3") && Catch::Contains("--virtual-stages 2") &&
                                                      Catch::Contains("only 4 layers"));
  l.virtual_stages = 1;
  CHECK_NOTHROW(model::validate_layout(c, l));  // 3 chunks of 2, 1 and 1 layers
}
