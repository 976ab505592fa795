// The decoder on the CPU, for each family (GPT-2 and LLaMA): GPT-2's configuration and
// initialisation, and for both the hand-written backward against finite differences of the whole
// model's loss, training to overfit, determinism, recomputation and gradient accumulation.
#include <cmath>
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "support/test_support.h"
#include "tessera/error.h"
#include "tessera/model.h"
#include "tessera/optimizer.h"

using namespace tessera;

namespace {

// A model of `family` with these sizes: GPT-2's pieces, or LLaMA's with half as many key/value
// heads as query heads (one when there is one head) and a SwiGLU twice as wide as the channels.
ModelConfig sized(const std::string& family, int n_layer, int n_head, int n_embd, int vocab_size, int max_seq_len) {
  if (family == "gpt2") return ModelConfig::gpt2(n_layer, n_head, n_embd, vocab_size, max_seq_len);
  ModelConfig c = ModelConfig::llama(n_layer, n_head, std::max(n_head / 2, 1), n_embd, 2 * n_embd, vocab_size, max_seq_len);
  c.rope_theta = 10000.0f;
  return c;
}

#define EACH_FAMILY() GENERATE(as<std::string>(), "gpt2", "llama")

ModelOptions f32_options(Recompute recompute = Recompute::none) {
  ModelOptions o;
  o.precision = Precision::f32;
  o.recompute = recompute;
  return o;
}

// Every real parameter value drawn from N(mean, std) (mean 1 for norm weights), padded vocabulary
// rows left at zero: larger weights than the initialisation, so every gradient is well above float32
// rounding and every code path carries signal.
void randomize(Model& model, uint64_t seed, float std) {
  const ParamTable& table = model.params();
  for (size_t i = 0; i < table.size(); ++i) {
    Tensor p = model.param(i);
    int64_t n = table.numel(i);
    if (table[i].real_rows > 0) n = n / table[i].shape[0] * table[i].real_rows;
    auto values = test::random_normal(size_t(n), seed + i, std);
    const float mean = table[i].init == ParamInit::ones ? 1.0f : 0.0f;
    float* dst = p.ptr<float>();
    for (int64_t j = 0; j < n; ++j) dst[j] = mean + values[size_t(j)];
  }
}

std::vector<float> host_copy(const Tensor& t) {
  const float* p = t.ptr<float>();
  return std::vector<float>(p, p + t.numel());
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.data, b.data, a.nbytes()) == 0;
}

}  // namespace

TEST_CASE("gpt2: presets, parameter counts and description", "[model]") {
  ModelConfig gpt2 = ModelConfig::preset("gpt2");
  CHECK(gpt2.padded_vocab_size == 50304);
  CHECK(gpt2.parameter_count() == 124439808);  // Hugging Face's gpt2
  CHECK(gpt2.describe() == "GPT-2 L=12 H=12 C=768 V=50257 (padded 50304) T<=1024, 124.4M parameters");
  CHECK(ModelConfig::preset("gpt2-medium").parameter_count() == 354823168);
  CHECK(ModelConfig::preset("gpt2-large").parameter_count() == 774030080);
  CHECK(ModelConfig::preset("gpt2-xl").parameter_count() == 1557611200);

  ModelConfig tiny = ModelConfig::preset("tiny");
  CHECK(tiny.n_layer == 4);
  CHECK(tiny.n_head == 4);
  CHECK(tiny.n_embd == 128);
  CHECK(tiny.vocab_size == 257);
  CHECK(tiny.padded_vocab_size == 384);
  CHECK(tiny.max_seq_len == 256);
  CHECK(ModelConfig::pad_vocab(128) == 128);
  CHECK(ModelConfig::pad_vocab(129) == 256);

  try {
    ModelConfig::preset("gpt3");
    FAIL("unknown preset accepted");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::bad_config);
    CHECK_THAT(e.what(), Catch::Contains("gpt2-medium") && Catch::Contains("tiny"));
  }
  CHECK_THROWS_AS(ModelConfig::gpt2(2, 3, 8, 11, 5).validate(), Error);  // 8 % 3 != 0
  CHECK_THROWS_AS(ModelConfig::gpt2(0, 2, 8, 11, 5).validate(), Error);
  ModelConfig bad_pad = ModelConfig::gpt2(2, 2, 8, 200, 5);
  bad_pad.padded_vocab_size = 150;
  CHECK_THROWS_AS(bad_pad.validate(), Error);
}

TEST_CASE("gpt2: parameter table layout, flops conventions and precision rules", "[model]") {
  Context& ctx = test::cpu_context();
  ModelConfig c = ModelConfig::gpt2(2, 2, 8, 11, 5);
  auto model_owner = make_model(ctx, c, f32_options()); Model& model = *model_owner;
  const ParamTable& t = model.params();
  REQUIRE(t.size() == 2 + 12 * 2 + 2);
  CHECK(t[0].name == "transformer.wte.weight");
  CHECK(t[0].shape == std::vector<int64_t>{128, 8});
  CHECK(t[1].name == "transformer.wpe.weight");
  const ParamSpec& qkv = t[size_t(t.index_of("transformer.h.1.attn.c_attn.weight"))];
  CHECK(qkv.shape == std::vector<int64_t>{24, 8});
  CHECK(qkv.layer == 1);
  CHECK(qkv.split_dim == 0);
  CHECK(qkv.weight_decay);
  const ParamSpec& proj = t[size_t(t.index_of("transformer.h.0.mlp.c_proj.weight"))];
  CHECK(proj.shape == std::vector<int64_t>{8, 32});
  CHECK(proj.split_dim == 1);
  CHECK(proj.init_std == Approx(0.02f / 2.0f));
  CHECK_FALSE(t[size_t(t.index_of("transformer.h.0.ln_1.weight"))].weight_decay);
  CHECK_FALSE(t[size_t(t.index_of("transformer.h.0.attn.c_attn.bias"))].weight_decay);
  CHECK(t[t.size() - 1].name == "transformer.ln_f.bias");
  CHECK(t[t.size() - 1].layer == 2);
  // Real parameters = the table's minus the padded wte rows.
  CHECK(c.parameter_count() == t.parameter_count() - int64_t(128 - 11) * 8);

  CHECK(model.param_buffer().numel() == t.flat_numel());
  CHECK(model.grad_buffer().dtype == DType::f32);
  CHECK(model.dtype() == DType::f32);
  CHECK(model.param(2).shape_str() == "(8) f32 cpu");

  auto automatic_owner = make_model(ctx, c); Model& automatic = *automatic_owner;
  CHECK(automatic.dtype() == DType::f32);  // Precision::automatic on the CPU
  // PaLM: 6N + 12*L*C*T with N excluding wpe; llm.c: 6N + 6*L*C*T with N all real parameters.
  CHECK(c.flops_per_token(4) == Approx(6.0 * double(c.parameter_count() - 5 * 8) + 12.0 * 2 * 8 * 4));
  CHECK(c.flops_per_token_llmc(4) == Approx(6.0 * double(c.parameter_count()) + 6.0 * 2 * 8 * 4));

  ModelOptions bf16;
  bf16.precision = Precision::bf16;
  try {
    auto m_owner = make_model(ctx, c, bf16); Model& m = *m_owner;
    FAIL("bf16 accepted on a CPU context");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::bad_config);
  }
}

TEST_CASE("gpt2: init_weights follows the table and is reproducible from the seed", "[model]") {
  Context& ctx = test::cpu_context();
  ModelConfig c = ModelConfig::gpt2(2, 2, 64, 300, 64);
  auto model_owner = make_model(ctx, c, f32_options()); Model& model = *model_owner;
  model.init_weights(42);
  const ParamTable& t = model.params();
  auto stats = [&](const std::string& name, double* mean, double* std) {
    std::vector<float> v = host_copy(model.param(size_t(t.index_of(name))));
    double s = 0, s2 = 0;
    for (float x : v) s += x;
    *mean = s / double(v.size());
    for (float x : v) s2 += (x - *mean) * (x - *mean);
    *std = std::sqrt(s2 / double(v.size()));
  };
  double mean, std;
  stats("transformer.h.0.mlp.c_fc.weight", &mean, &std);
  CHECK(std::fabs(mean) < 1e-3);
  CHECK(std == Approx(0.02).epsilon(0.03));
  stats("transformer.h.1.attn.c_proj.weight", &mean, &std);
  CHECK(std == Approx(0.02 / 2.0).epsilon(0.05));
  stats("transformer.h.1.ln_2.weight", &mean, &std);
  CHECK(mean == 1.0);
  CHECK(std == 0.0);
  stats("transformer.h.1.mlp.c_fc.bias", &mean, &std);
  CHECK(mean == 0.0);
  CHECK(std == 0.0);

  std::vector<float> wte = host_copy(model.param(0));
  for (int64_t r = 0; r < c.padded_vocab_size; ++r) {
    bool any = false;
    for (int64_t k = 0; k < c.n_embd; ++k) any |= wte[size_t(r * c.n_embd + k)] != 0.0f;
    if (r < c.vocab_size)
      REQUIRE(any);
    else
      REQUIRE_FALSE(any);
  }
  // Values depend on the parameter's name, not its position: a deeper model's first blocks match.
  auto deeper_owner = make_model(ctx, ModelConfig::gpt2(3, 2, 64, 300, 64), f32_options()); Model& deeper = *deeper_owner;
  deeper.init_weights(42);
  const std::string name = "transformer.h.1.attn.c_attn.weight";
  CHECK(host_copy(deeper.param(size_t(deeper.params().index_of(name)))) ==
        host_copy(model.param(size_t(t.index_of(name)))));
  CHECK(bitwise_equal(deeper.param(0), model.param(0)));
  deeper.init_weights(43);
  CHECK_FALSE(bitwise_equal(deeper.param(0), model.param(0)));
}

TEST_CASE("model: loss at initialisation is close to ln(vocab_size)", "[model]") {
  Context& ctx = test::cpu_context();
  const std::string preset = GENERATE(as<std::string>(), "tiny", "llama-tiny");
  INFO(preset);
  ModelConfig c = ModelConfig::preset(preset);
  auto model_owner = make_model(ctx, c, f32_options()); Model& model = *model_owner;
  model.init_weights(1337);
  const int B = 2, T = 64;
  auto tokens = test::random_ints(size_t(B * T), 1, 0, c.vocab_size);
  auto targets = test::random_ints(size_t(B * T), 2, 0, c.vocab_size);
  float loss = model.forward(tokens.data(), targets.data(), B, T);
  CHECK(std::fabs(loss - std::log(float(c.vocab_size))) < 0.1);
  CHECK(model.activation_bytes() > 0);

  // Without targets: NaN, and the logits are readable; their cross-entropy is the loss above.
  float none = model.forward(tokens.data(), nullptr, B, T);
  CHECK(std::isnan(none));
  std::vector<float> row(size_t(c.vocab_size));
  double total = 0;
  for (int b = 0; b < B; ++b) {
    for (int t = 0; t < T; ++t) {
      model.logits_row(b, t, row.data());
      double mx = -INFINITY, sum = 0;
      for (float x : row) mx = std::max(mx, double(x));
      for (float x : row) sum += std::exp(double(x) - mx);
      total += mx + std::log(sum) - row[size_t(targets[size_t(b * T + t)])];
    }
  }
  CHECK(total / (B * T) == Approx(loss).epsilon(1e-5));
  CHECK_THROWS_AS(model.logits_row(B, 0, row.data()), Error);
  CHECK_THROWS_AS(model.backward(), Error);  // the last forward had no targets
}

TEST_CASE("model: bad inputs are refused with the right error kind", "[model]") {
  Context& ctx = test::cpu_context();
  const std::string family = EACH_FAMILY();
  INFO(family);
  ModelConfig c = sized(family, 1, 2, 8, 11, 5);
  auto model_owner = make_model(ctx, c, f32_options()); Model& model = *model_owner;
  model.init_weights(1);
  std::vector<int32_t> tokens(12, 3), targets(12, 4);
  try {
    model.forward(tokens.data(), targets.data(), 2, 6);  // T > max_seq_len
    FAIL("T > max_seq_len accepted");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::bad_config);
  }
  tokens[7] = 11;
  try {
    model.forward(tokens.data(), targets.data(), 2, 5);
    FAIL("token outside the vocabulary accepted");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::bad_data);
    CHECK_THAT(e.what(), Catch::Contains("11") && Catch::Contains("b=1, t=2"));
  }
  tokens[7] = 3;
  targets[0] = -1;
  try {
    model.forward(tokens.data(), targets.data(), 2, 5);
    FAIL("negative target accepted");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::bad_data);
  }
  targets[0] = 4;
  CHECK_THROWS_AS(model.backward(), Error);  // no forward succeeded yet
  model.forward(tokens.data(), targets.data(), 2, 5);
  model.backward();
  CHECK_THROWS_AS(model.backward(), Error);  // one backward per forward
  CHECK_THROWS_AS(model.logits_row(0, 0, std::vector<float>(11).data()), Error);  // consumed by backward
}

TEST_CASE("model: backward matches finite differences of the model's loss for every parameter", "[model]") {
  Context& ctx = test::cpu_context();
  const std::string family = EACH_FAMILY();
  INFO(family);
  ModelConfig c = sized(family, 2, 2, 8, 11, 5);
  auto model_owner = make_model(ctx, c, f32_options()); Model& model = *model_owner;
  randomize(model, 7, 0.3f);
  const int B = 2, T = 5;
  auto tokens = test::random_ints(size_t(B * T), 3, 0, c.vocab_size);
  auto targets = test::random_ints(size_t(B * T), 4, 0, c.vocab_size);
  model.zero_grad();
  model.forward(tokens.data(), targets.data(), B, T);
  const float scale = 2.0f;  // backward's loss_scale multiplies every gradient
  model.backward(scale);

  const ParamTable& table = model.params();
  // Balances truncation (h^2; the LLaMA's loss curves most along its embedding rows, which feed an
  // RMSNorm of 8 channels) against float32 rounding of the loss (1/h).
  const float h = 3e-3f;
  for (size_t i = 0; i < table.size(); ++i) {
    const ParamSpec& spec = table[i];
    int64_t n = table.numel(i);
    std::vector<float> analytic = host_copy(model.grad(i));
    if (spec.real_rows > 0) {
      // Padded vocabulary rows take no part in the loss: their gradient stays exactly zero.
      for (int64_t j = spec.real_rows * c.n_embd; j < n; ++j) REQUIRE(analytic[size_t(j)] == 0.0f);
      n = spec.real_rows * c.n_embd;
    }
    float* p = model.param(i).ptr<float>();
    double diff2 = 0, ref2 = 0, worst = 0;
    for (int64_t j = 0; j < n; ++j) {
      const float saved = p[j];
      p[j] = saved + h;
      const double up = model.forward(tokens.data(), targets.data(), B, T);
      p[j] = saved - h;
      const double down = model.forward(tokens.data(), targets.data(), B, T);
      p[j] = saved;
      const double numeric = scale * (up - down) / (2.0 * h);
      const double err = std::fabs(double(analytic[size_t(j)]) - numeric);
      diff2 += err * err;
      ref2 += numeric * numeric;
      worst = std::max(worst, err / (std::fabs(numeric) + 2e-3));
    }
    INFO(spec.name << ": |analytic - numeric| / |numeric| = " << std::sqrt(diff2 / ref2) << ", worst element "
                   << worst);
    CHECK(ref2 > 1e-8);  // the check has something to compare
    CHECK(std::sqrt(diff2 / ref2) < 5e-3);
    CHECK(worst < 5e-2);
  }
}

TEST_CASE("model: AdamW overfits a single batch", "[model][optim]") {
  Context& ctx = test::cpu_context();
  const std::string family = EACH_FAMILY();
  INFO(family);
  ModelConfig c = sized(family, 2, 4, 64, 97, 32);
  auto model_owner = make_model(ctx, c, f32_options()); Model& model = *model_owner;
  model.init_weights(5);
  AdamWConfig ac;
  ac.weight_decay = 0.0f;
  AdamW opt(ctx, model.params(), model.param_buffer(), model.grad_buffer(), ac);
  const int B = 2, T = 32;
  auto tokens = test::random_ints(size_t(B * T), 11, 0, c.vocab_size);
  auto targets = test::random_ints(size_t(B * T), 12, 0, c.vocab_size);
  float first = 0, loss = 0;
  int step = 0;
  for (; step < 300; ++step) {
    model.zero_grad();
    loss = model.forward(tokens.data(), targets.data(), B, T);
    if (step == 0) first = loss;
    if (loss < 0.05f) break;
    model.backward();
    opt.step(3e-3f);
  }
  INFO("loss " << first << " -> " << loss << " after " << step << " steps");
  CHECK(loss < 0.05f);
  CHECK(opt.step_count() == step);
}

TEST_CASE("model: the same seed gives bitwise identical training; another seed differs", "[model][optim]") {
  Context& ctx = test::cpu_context();
  const std::string family = EACH_FAMILY();
  INFO(family);
  ModelConfig c = sized(family, 2, 2, 32, 50, 16);
  auto run = [&](uint64_t seed, std::vector<float>& losses, std::vector<float>& params) {
    auto model_owner = make_model(ctx, c, f32_options()); Model& model = *model_owner;
    model.init_weights(seed);
    AdamW opt(ctx, model.params(), model.param_buffer(), model.grad_buffer(), AdamWConfig{});
    const int B = 2, T = 16;
    for (int step = 0; step < 3; ++step) {
      auto tokens = test::random_ints(size_t(B * T), 100 + step, 0, c.vocab_size);
      auto targets = test::random_ints(size_t(B * T), 200 + step, 0, c.vocab_size);
      model.zero_grad();
      losses.push_back(model.forward(tokens.data(), targets.data(), B, T));
      model.backward();
      opt.step(1e-3f);
    }
    params = host_copy(model.param_buffer());
  };
  std::vector<float> l1, p1, l2, p2, l3, p3;
  run(7, l1, p1);
  run(7, l2, p2);
  run(8, l3, p3);
  CHECK(std::memcmp(l1.data(), l2.data(), l1.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(p1.data(), p2.data(), p1.size() * sizeof(float)) == 0);
  CHECK(l1 != l3);
  CHECK(p1 != p3);
}

TEST_CASE("model: full recomputation gives bitwise the same losses and gradients", "[model]") {
  Context& ctx = test::cpu_context();
  const std::string family = EACH_FAMILY();
  INFO(family);
  ModelConfig c = sized(family, 3, 2, 32, 50, 16);
  auto plain_owner = make_model(ctx, c, f32_options(Recompute::none)); Model& plain = *plain_owner;
  auto recompute_owner = make_model(ctx, c, f32_options(Recompute::full)); Model& recompute = *recompute_owner;
  plain.init_weights(3);
  recompute.init_weights(3);
  const int B = 2, T = 16;
  plain.zero_grad();
  recompute.zero_grad();
  for (int micro = 0; micro < 2; ++micro) {
    auto tokens = test::random_ints(size_t(B * T), 30 + micro, 0, c.vocab_size);
    auto targets = test::random_ints(size_t(B * T), 40 + micro, 0, c.vocab_size);
    float a = plain.forward(tokens.data(), targets.data(), B, T);
    float b = recompute.forward(tokens.data(), targets.data(), B, T);
    CHECK(std::memcmp(&a, &b, sizeof(float)) == 0);
    plain.backward(0.5f);
    recompute.backward(0.5f);
    CHECK(bitwise_equal(plain.grad_buffer(), recompute.grad_buffer()));
  }
  CHECK(recompute.activation_bytes() < plain.activation_bytes());
}

TEST_CASE("model: two half-weighted micro-batches accumulate the gradient of their union", "[model]") {
  Context& ctx = test::cpu_context();
  const std::string family = EACH_FAMILY();
  INFO(family);
  ModelConfig c = sized(family, 2, 2, 32, 50, 16);
  auto model_owner = make_model(ctx, c, f32_options()); Model& model = *model_owner;
  model.init_weights(9);
  const int T = 16;
  auto tokens = test::random_ints(size_t(2 * T), 50, 0, c.vocab_size);
  auto targets = test::random_ints(size_t(2 * T), 51, 0, c.vocab_size);

  model.zero_grad();
  float whole = model.forward(tokens.data(), targets.data(), 2, T);
  model.backward(1.0f);
  std::vector<float> g_whole = host_copy(model.grad_buffer());

  model.zero_grad();
  float first = model.forward(tokens.data(), targets.data(), 1, T);  // replans the arena for B=1
  model.backward(0.5f);
  float second = model.forward(tokens.data() + T, targets.data() + T, 1, T);
  model.backward(0.5f);
  std::vector<float> g_accum = host_copy(model.grad_buffer());

  CHECK(0.5f * (first + second) == Approx(whole).epsilon(1e-5));
  double largest = 0;
  for (float g : g_whole) largest = std::max(largest, double(std::fabs(g)));
  REQUIRE(largest > 0);
  CHECK(test::max_abs_error(g_accum, g_whole) <= 1e-5 * largest);
}
