// Model configurations of every family: presets against published parameter counts, the
// parameter table the decoder builds from a config (names, placement, packed parts, tying,
// sequence-parallel partials, padding), JSON round trips (and checkpoints written before LLaMA),
// and the FLOP conventions.
#include <string>
#include <vector>

#include "model/decoder_params.h"
#include "model/model_layout.h"
#include "support/test_support.h"
#include "tessera/error.h"
#include "tessera/model_config.h"

using namespace tessera;

TEST_CASE("model config: LLaMA presets have the published shapes and parameter counts", "[model][config]") {
  // Meta's model cards / the Hugging Face checkpoints' parameter counts.
  CHECK(ModelConfig::preset("llama3.2-1b").parameter_count() == 1235814400);
  CHECK(ModelConfig::preset("llama3.1-8b").parameter_count() == 8030261248);
  CHECK(ModelConfig::preset("llama3.1-70b").parameter_count() == 70553706496);
  CHECK(ModelConfig::preset("llama3.1-405b").parameter_count() == 405853388800);
  const ModelConfig c = ModelConfig::preset("llama3.1-8b");
  CHECK(c.family == "llama");
  CHECK(c.n_kv_head == 8);
  CHECK(c.norm == NormKind::rmsnorm);
  CHECK(c.position == PositionKind::rope);
  CHECK(c.rope_theta == 500000.0f);
  CHECK(c.rope_scaling.factor == 8.0f);
  CHECK(c.mlp == MlpKind::swiglu);
  CHECK_FALSE(c.bias);
  CHECK_FALSE(c.tie_embeddings);
  CHECK(ModelConfig::preset("llama3.2-1b").tie_embeddings);
  CHECK(c.describe() == "LLaMA L=32 H=32 KV=8 C=4096 F=14336 V=128256 T<=131072, 8.03B parameters");
  const ModelConfig tiny = ModelConfig::preset("llama-tiny");
  CHECK(tiny.vocab_size == 257);
  CHECK(tiny.padded_vocab_size == 384);
  CHECK(tiny.n_kv_head < tiny.n_head);
  for (const std::string& name : {"tiny", "gpt2", "gpt2-xl", "llama-tiny", "llama3.2-1b", "llama3.1-405b"})
    CHECK_NOTHROW(ModelConfig::preset(name).validate());
  try {
    ModelConfig::preset("llama2-7b");
    FAIL("unknown preset accepted");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("llama3.1-8b") && Catch::Contains("gpt2-medium"));
  }
}

TEST_CASE("model config: validation names what is wrong", "[model][config]") {
  ModelConfig c = ModelConfig::llama(2, 4, 3, 32, 64, 100, 16);  // 3 key/value heads for 4 query heads
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("n_kv_head 3"));
  c = ModelConfig::llama(2, 4, 2, 12, 64, 100, 16);  // head size 3: rotary pairs do not fit
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("head size 3"));
  c = ModelConfig::gpt2(2, 2, 8, 11, 5);
  c.norm_eps = 1e-6f;  // LayerNorm's epsilon is fixed
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("1e-5"));
  c = ModelConfig::gpt2(2, 2, 8, 11, 5);
  c.family = "bert";
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("--family") && Catch::Contains("llama"));
}

TEST_CASE("model config: JSON round-trips every field; a checkpoint's GPT-2 config from before LLaMA reads as GPT-2",
          "[model][config]") {
  ModelConfig c = ModelConfig::preset("llama3.1-70b");
  c.norm_eps = 1e-6f;
  c.bias = true;
  const ModelConfig back = ModelConfig::from_json(c.to_json(), "test");
  CHECK(back == c);
  CHECK(back.rope_scaling == c.rope_scaling);
  CHECK(ModelConfig::from_json(ModelConfig::preset("tiny").to_json(), "test") == ModelConfig::preset("tiny"));
  const ModelConfig old = ModelConfig::from_json(
      R"({"n_layer":4,"n_head":4,"n_embd":128,"vocab_size":257,"padded_vocab_size":384,"max_seq_len":256})", "old");
  CHECK(old == ModelConfig::preset("tiny"));
  try {
    ModelConfig::from_json(R"({"family":"llama","n_layer":4})", "meta.json");
    FAIL("incomplete JSON accepted");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::bad_data);
    CHECK_THAT(e.what(), Catch::Contains("meta.json"));
  }
}

TEST_CASE("model config: FLOPs per token count what takes part in a matmul", "[model][config]") {
  const int T = 1024;
  // GPT-2: N without the position table (a lookup); the tied embedding counts once (the head's matmul).
  const ModelConfig g = ModelConfig::preset("gpt2");
  CHECK(g.flops_per_token(T) == Approx(6.0 * (124439808.0 - 1024.0 * 768) + 12.0 * 12 * 768 * T));
  // LLaMA: N without the input embedding (a lookup) but with the untied output layer; SwiGLU's
  // three matrices and the smaller key/value projections are in N as they are.
  const ModelConfig l = ModelConfig::preset("llama3.1-8b");
  CHECK(l.flops_per_token(T) == Approx(6.0 * (8030261248.0 - 128256.0 * 4096) + 12.0 * 32 * 4096 * T));
  CHECK(l.flops_per_token_llmc(T) == Approx(6.0 * 8030261248.0 + 6.0 * 32 * 4096 * T));
  // A tied LLaMA's embedding is its output layer's matmul.
  const ModelConfig t = ModelConfig::preset("llama3.2-1b");
  CHECK(t.flops_per_token(T) == Approx(6.0 * 1235814400.0 + 12.0 * 16 * 2048 * T));
}

TEST_CASE("model config: the table describes placement, packed parts, tying, partial gradients and padding",
          "[model][config]") {
  const ModelConfig c = ModelConfig::llama(2, 4, 2, 32, 48, 100, 16);  // head size 8; padded vocabulary 128
  const ParamTable t = model::decoder_param_table(c);
  // embed, 2 x (input norm, q|k|v, o, post-attention norm, gate|up, down), final norm, lm head.
  REQUIRE(t.size() == 1 + 2 * 6 + 2);
  const ParamSpec& embed = t[0];
  CHECK(embed.name == "model.embed_tokens.weight");
  CHECK(embed.shape == std::vector<int64_t>{128, 32});
  CHECK(embed.real_rows == 100);
  CHECK_FALSE(embed.tied_to_head);
  const ParamSpec& qkv = t[size_t(t.index_of("model.layers.1.self_attn.qkv_proj.weight"))];
  CHECK(qkv.shape == std::vector<int64_t>{4 * 8 + 2 * 2 * 8, 32});
  CHECK(qkv.parts == std::vector<int64_t>{32, 16, 16});
  CHECK(qkv.part_names == std::vector<std::string>{"model.layers.1.self_attn.q_proj.weight",
                                                   "model.layers.1.self_attn.k_proj.weight",
                                                   "model.layers.1.self_attn.v_proj.weight"});
  CHECK(qkv.layer == 1);
  CHECK(qkv.split_dim == 0);
  const ParamSpec& gate_up = t[size_t(t.index_of("model.layers.0.mlp.gate_up_proj.weight"))];
  CHECK(gate_up.shape == std::vector<int64_t>{96, 32});
  CHECK(gate_up.parts == std::vector<int64_t>{48, 48});
  const ParamSpec& down = t[size_t(t.index_of("model.layers.0.mlp.down_proj.weight"))];
  CHECK(down.split_dim == 1);
  const ParamSpec& norm = t[size_t(t.index_of("model.layers.0.input_layernorm.weight"))];
  CHECK(norm.sequence_parallel_partial);
  CHECK(norm.init == ParamInit::ones);
  CHECK(t.find("model.layers.0.input_layernorm.bias") < 0);  // RMSNorm has no bias
  CHECK(t.find("model.layers.0.self_attn.o_proj.bias") < 0);
  const ParamSpec& head = t[t.size() - 1];
  CHECK(head.name == "lm_head.weight");
  CHECK(head.layer == 2);
  CHECK(head.real_rows == 100);
  // Real parameters leave the padded rows of both vocabulary matrices out.
  CHECK(c.parameter_count() == t.parameter_count() - 2 * int64_t(128 - 100) * 32);

  // GPT-2's embedding is tied to its head: with pp = 2 the last stage holds a copy.
  const ModelConfig g = ModelConfig::gpt2(2, 2, 8, 11, 5);
  const ParamTable gt = model::decoder_param_table(g);
  CHECK(gt[0].tied_to_head);
  CHECK(gt[size_t(gt.index_of("transformer.h.0.attn.c_attn.weight"))].stored_transposed);
  model::ModelLayout last;
  last.pp = 2;
  last.pp_rank = 1;
  const model::LocalTable lt = model::local_param_table(gt, g.n_layer, last);
  CHECK(lt.table[0].name == "transformer.wte.weight");
  CHECK(lt.table.find("transformer.wpe.weight") < 0);
  // LLaMA's untied embedding stays on the first stage; its head lives on the last.
  const model::LocalTable ll = model::local_param_table(t, c.n_layer, last);
  CHECK(ll.table.find("model.embed_tokens.weight") < 0);
  CHECK(ll.table.find("lm_head.weight") >= 0);
}

TEST_CASE("model config: tensor parallelism splits query and key/value heads, and refuses what does not divide",
          "[model][config][layout]") {
  const ModelConfig c = ModelConfig::llama(2, 4, 2, 32, 48, 100, 16);
  const ParamTable t = model::decoder_param_table(c);
  const ParamSpec& qkv = t[size_t(t.index_of("model.layers.0.self_attn.qkv_proj.weight"))];
  // Rows: q heads 0-3 (8 rows each), k heads 0-1, v heads 0-1. tp rank 1 of 2 holds q heads 2-3, k
  // head 1 and v head 1, in that order.
  std::vector<float> rows(64 * 32);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = float(i / 32);
  CHECK(shard_shape(qkv, 2) == std::vector<int64_t>{32, 32});
  std::vector<float> shard(32 * 32);
  extract_shard(qkv, 2, 1, rows.data(), shard.data());
  std::vector<float> first_rows;
  for (size_t r = 0; r < 32; r += 8) first_rows.push_back(shard[r * 32]);
  CHECK(first_rows == std::vector<float>{16, 24, 40, 56});
  // Every element lands once.
  std::vector<float> rebuilt(rows.size(), -1.0f);
  for (int r = 0; r < 2; ++r) {
    extract_shard(qkv, 2, r, rows.data(), shard.data());
    insert_shard(qkv, 2, r, shard.data(), rebuilt.data());
  }
  CHECK(rebuilt == rows);
  // A rectangle of the shard maps to one global rectangle per part it touches.
  const std::vector<ShardRect> rects = shard_to_global(qkv, 2, 1, Rect{{12, 0}, {12, 32}});
  REQUIRE(rects.size() == 2);
  CHECK(rects[0].global.offset == std::vector<int64_t>{28, 0});
  CHECK(rects[0].global.shape == std::vector<int64_t>{4, 32});
  CHECK(rects[1].global.offset == std::vector<int64_t>{40, 0});
  CHECK(rects[1].global.shape == std::vector<int64_t>{8, 32});

  model::ModelLayout l;
  l.tp = 4;  // 2 key/value heads: not replicated, refused
  try {
    model::validate_layout(c, l);
    FAIL("tp 4 accepted for 2 key/value heads");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::bad_config);
    CHECK_THAT(e.what(), Catch::Contains("--tp 4") && Catch::Contains("2 key/value heads") && Catch::Contains("1, 2"));
  }
  l.tp = 2;
  CHECK_NOTHROW(model::validate_layout(c, l));
  CHECK_THROWS_WITH(check_splits(qkv, 3), Catch::Contains("qkv_proj") && Catch::Contains("--tp 3"));
}
