// Hugging Face export and import (GPT-2; LLaMA): config.json keys, tensor names and orientation, a bitwise
// round trip, and the errors for files that do not match the model.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <filesystem>
#include <fstream>
#include <vector>

#include "io/json.h"
#include "support/test_support.h"
#include "tessera/error.h"
#include "tessera/model.h"
#include "tessera/hf.h"
#include "tessera/safetensors.h"

using namespace tessera;
namespace fs = std::filesystem;

namespace {

ModelOptions f32_options() {
  ModelOptions o;
  o.precision = Precision::f32;
  return o;
}

std::string scratch_dir(const std::string& name) {
  fs::path dir = fs::path(TESSERA_BINARY_DIR) / "test_output" / "hf" / name;
  fs::remove_all(dir);
  return dir.string();
}

// Every real value random (biases and norm parameters too), so each tensor's mapping is tested;
// padded rows stay zero.
void randomize(Model& model, uint64_t seed) {
  const ParamTable& table = model.params();
  for (size_t i = 0; i < table.size(); ++i) {
    const ParamSpec& spec = table[i];
    int64_t n = table.numel(i);
    if (spec.real_rows) n = n / spec.shape[0] * spec.real_rows;
    auto v = test::random_normal(size_t(n), seed + i, 0.5f);
    std::memcpy(model.param(i).data, v.data(), v.size() * sizeof(float));
  }
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Rewrites dir/model.safetensors after `edit` changes its entries (owning copies of the data).
template <class Edit>
void rewrite_weights(const std::string& dir, Edit edit) {
  const std::string path = dir + "/model.safetensors";
  std::vector<SafetensorsEntry> entries;
  std::vector<std::vector<char>> storage;
  {
    SafetensorsReader reader(path);
    for (const std::string& name : reader.names()) {
      const SafetensorsEntry& e = reader.entry(name);
      storage.emplace_back(static_cast<const char*>(e.data), static_cast<const char*>(e.data) + e.bytes);
      entries.push_back(e);
    }
  }
  for (size_t i = 0; i < entries.size(); ++i) entries[i].data = storage[i].data();
  edit(entries, storage);
  write_safetensors(path, entries, {{"format", "pt"}});
}

template <class F>
Error expect_error(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  FAIL("no tessera::Error thrown");
  throw;  // unreachable
}

}  // namespace

TEST_CASE("hf: export writes transformers' config.json and tensors in Conv1D orientation", "[model][hf]") {
  Context& ctx = test::cpu_context();
  ModelConfig c = ModelConfig::gpt2(2, 2, 8, 11, 6);
  auto model_owner = make_model(ctx, c, f32_options()); Model& model = *model_owner;
  randomize(model, 1);
  const std::string dir = scratch_dir("layout");
  export_hf(model, dir);

  json::Value config = json::parse(slurp(dir + "/config.json"));
  CHECK(config.at("model_type").as_string() == "gpt2");
  CHECK(config.at("architectures")[0].as_string() == "GPT2LMHeadModel");
  CHECK(config.at("n_layer").as_int64() == 2);
  CHECK(config.at("n_head").as_int64() == 2);
  CHECK(config.at("n_embd").as_int64() == 8);
  CHECK(config.at("vocab_size").as_int64() == 11);
  CHECK(config.at("n_positions").as_int64() == 6);
  CHECK(config.at("n_ctx").as_int64() == 6);
  CHECK(config.at("layer_norm_epsilon").as_double() == 1e-5);
  CHECK(config.at("activation_function").as_string() == "gelu_new");
  CHECK(config.at("tie_word_embeddings").as_bool());

  ModelConfig back = read_hf_config(dir);
  CHECK(back.n_layer == 2);
  CHECK(back.n_head == 2);
  CHECK(back.n_embd == 8);
  CHECK(back.vocab_size == 11);
  CHECK(back.padded_vocab_size == 128);
  CHECK(back.max_seq_len == 6);

  SafetensorsReader reader(dir + "/model.safetensors");
  CHECK(reader.metadata().at("format") == "pt");
  CHECK(reader.names().size() == model.params().size());
  CHECK_FALSE(reader.has("lm_head.weight"));
  const SafetensorsEntry& wte = reader.entry("transformer.wte.weight");
  CHECK(wte.dtype == "F32");
  CHECK(wte.shape == std::vector<int64_t>{11, 8});
  CHECK(std::memcmp(wte.data, model.param(0).data, wte.bytes) == 0);
  CHECK(reader.entry("transformer.h.1.mlp.c_proj.weight").shape == std::vector<int64_t>{32, 8});
  const SafetensorsEntry& qkv = reader.entry("transformer.h.0.attn.c_attn.weight");
  REQUIRE(qkv.shape == std::vector<int64_t>{8, 24});  // (in, out)
  const float* ours = model.param(size_t(model.params().index_of(qkv.name))).ptr<float>();  // (out, in)
  std::vector<float> theirs(qkv.bytes / 4);
  std::memcpy(theirs.data(), qkv.data, qkv.bytes);
  for (int out = 0; out < 24; ++out)
    for (int in = 0; in < 8; ++in) REQUIRE(theirs[size_t(in * 24 + out)] == ours[out * 8 + in]);
}

TEST_CASE("hf: export then import round-trips every parameter bit for bit", "[model][hf]") {
  Context& ctx = test::cpu_context();
  ModelConfig c = ModelConfig::gpt2(2, 2, 8, 11, 6);
  auto source_owner = make_model(ctx, c, f32_options()); Model& source = *source_owner;
  randomize(source, 2);
  const std::string dir = scratch_dir("roundtrip");
  export_hf(source, dir);

  auto target_owner = make_model(ctx, c, f32_options()); Model& target = *target_owner;
  target.init_weights(99);
  import_hf(target, dir);
  const Tensor a = source.param_buffer(), b = target.param_buffer();
  CHECK(std::memcmp(a.data, b.data, a.nbytes()) == 0);  // padded wte rows are zero in both

  // The same works for files without the "transformer." prefix (the OpenAI checkpoints on the
  // Hub) and with bf16 tensors (values rounded to bf16).
  rewrite_weights(dir, [](std::vector<SafetensorsEntry>& entries, std::vector<std::vector<char>>& storage) {
    for (size_t i = 0; i < entries.size(); ++i) {
      entries[i].name = entries[i].name.substr(std::string("transformer.").size());
      std::vector<char> half(storage[i].size() / 2);
      for (size_t j = 0; j < half.size() / 2; ++j) {
        float x;
        std::memcpy(&x, storage[i].data() + 4 * j, 4);
        bf16 h = float_to_bf16(x);
        std::memcpy(half.data() + 2 * j, &h.bits, 2);
      }
      storage[i] = std::move(half);
      entries[i].data = storage[i].data();
      entries[i].bytes = storage[i].size();
      entries[i].dtype = "BF16";
    }
  });
  auto rounded_owner = make_model(ctx, c, f32_options()); Model& rounded = *rounded_owner;
  import_hf(rounded, dir);
  const float* src = a.ptr<float>();
  const float* got = rounded.param_buffer().ptr<float>();
  for (int64_t j = 0; j < a.numel(); ++j) REQUIRE(got[j] == bf16_to_float(float_to_bf16(src[j])));
}

TEST_CASE("hf: a LLaMA round-trips bit for bit, and imports float16 tensors", "[model][hf]") {
  Context& ctx = test::cpu_context();
  ModelConfig c = ModelConfig::llama(2, 4, 2, 16, 24, 11, 6);  // grouped-query attention, untied head
  auto source_owner = make_model(ctx, c, f32_options()); Model& source = *source_owner;
  randomize(source, 5);
  // Values of float16's precision (multiples of 2^-10 below 2), so that F16 files hold them exactly.
  float* p = source.param_buffer().ptr<float>();
  for (int64_t j = 0; j < source.param_buffer().numel(); ++j) p[j] = std::round(std::clamp(p[j], -1.9f, 1.9f) * 1024.0f) / 1024.0f;
  const std::string dir = scratch_dir("llama_roundtrip");
  export_hf(source, dir);
  {
    SafetensorsReader reader(dir + "/model.safetensors");
    for (const char* name : {"model.layers.1.self_attn.k_proj.weight", "lm_head.weight", "model.norm.weight"})
      CHECK(reader.has(name));
    CHECK(reader.entry("model.layers.0.self_attn.k_proj.weight").shape == std::vector<int64_t>{8, 16});  // 2 heads of 4
    CHECK(reader.entry("lm_head.weight").shape == std::vector<int64_t>{11, 16});  // padding left out
  }
  auto target_owner = make_model(ctx, c, f32_options()); Model& target = *target_owner;
  target.init_weights(99);
  import_hf(target, dir);
  CHECK(std::memcmp(source.param_buffer().data, target.param_buffer().data, source.param_buffer().nbytes()) == 0);

  // The same tensors as float16 (IEEE half: sign, 5 exponent bits biased by 15, 10 mantissa bits).
  rewrite_weights(dir, [](std::vector<SafetensorsEntry>& entries, std::vector<std::vector<char>>& storage) {
    for (size_t i = 0; i < entries.size(); ++i) {
      std::vector<char> half(storage[i].size() / 2);
      for (size_t j = 0; j < half.size() / 2; ++j) {
        uint32_t b;
        std::memcpy(&b, storage[i].data() + 4 * j, 4);
        REQUIRE((b & 0x1fff) == 0);  // exact in float16
        const uint32_t exponent = (b >> 23) & 0xff;
        const uint16_t h = (b & 0x7fffffff) == 0 ? uint16_t(b >> 16)
                                                 : uint16_t(((b >> 16) & 0x8000) | ((exponent - 112) << 10) | ((b >> 13) & 0x3ff));
        std::memcpy(half.data() + 2 * j, &h, 2);
      }
      storage[i] = std::move(half);
      entries[i].data = storage[i].data();
      entries[i].bytes = storage[i].size();
      entries[i].dtype = "F16";
    }
  });
  auto half_owner = make_model(ctx, c, f32_options()); Model& from_half = *half_owner;
  from_half.init_weights(98);
  import_hf(from_half, dir);
  CHECK(std::memcmp(source.param_buffer().data, from_half.param_buffer().data, source.param_buffer().nbytes()) == 0);
}

TEST_CASE("hf: import refuses files that do not match the model, naming the tensor", "[model][hf]") {
  Context& ctx = test::cpu_context();
  ModelConfig c = ModelConfig::gpt2(2, 2, 8, 11, 6);
  auto model_owner = make_model(ctx, c, f32_options()); Model& model = *model_owner;
  randomize(model, 3);

  SECTION("a missing tensor") {
    const std::string dir = scratch_dir("missing");
    export_hf(model, dir);
    rewrite_weights(dir, [](std::vector<SafetensorsEntry>& entries, std::vector<std::vector<char>>&) {
      for (size_t i = 0; i < entries.size(); ++i)
        if (entries[i].name == "transformer.h.1.ln_2.bias") entries.erase(entries.begin() + std::ptrdiff_t(i));
    });
    Error e = expect_error([&] { import_hf(model, dir); });
    CHECK(e.code() == ExitCode::bad_data);
    CHECK_THAT(e.what(), Catch::Contains("transformer.h.1.ln_2.bias") && Catch::Contains("model.safetensors"));
  }
  SECTION("a tensor of the wrong shape (a Conv1D weight in tessera's orientation)") {
    const std::string dir = scratch_dir("misshaped");
    export_hf(model, dir);
    rewrite_weights(dir, [](std::vector<SafetensorsEntry>& entries, std::vector<std::vector<char>>&) {
      for (auto& e : entries)
        if (e.name == "transformer.h.0.mlp.c_fc.weight") e.shape = {e.shape[1], e.shape[0]};
    });
    Error e = expect_error([&] { import_hf(model, dir); });
    CHECK(e.code() == ExitCode::bad_data);
    CHECK_THAT(e.what(), Catch::Contains("transformer.h.0.mlp.c_fc.weight") && Catch::Contains("[32, 8]"));
  }
  SECTION("a non-finite weight") {
    const std::string dir = scratch_dir("nonfinite");
    export_hf(model, dir);
    rewrite_weights(dir, [](std::vector<SafetensorsEntry>& entries, std::vector<std::vector<char>>& storage) {
      for (size_t i = 0; i < entries.size(); ++i)
        if (entries[i].name == "transformer.h.1.attn.c_proj.weight") {
          const float inf = std::numeric_limits<float>::infinity();
          std::memcpy(storage[i].data() + 5 * sizeof(float), &inf, sizeof(float));
        }
    });
    Error e = expect_error([&] { import_hf(model, dir); });
    CHECK(e.code() == ExitCode::bad_data);
    CHECK_THAT(e.what(), Catch::Contains("transformer.h.1.attn.c_proj.weight") && Catch::Contains("non-finite") &&
                             Catch::Contains("element 5"));
  }
  SECTION("an unexpected tensor") {
    const std::string dir = scratch_dir("extra");
    export_hf(model, dir);
    static const float extra[2] = {1.0f, 2.0f};
    rewrite_weights(dir, [](std::vector<SafetensorsEntry>& entries, std::vector<std::vector<char>>&) {
      SafetensorsEntry e;
      e.name = "transformer.h.2.ln_1.weight";
      e.dtype = "F32";
      e.shape = {2};
      e.data = extra;
      e.bytes = sizeof(extra);
      entries.push_back(e);
    });
    Error e = expect_error([&] { import_hf(model, dir); });
    CHECK(e.code() == ExitCode::bad_data);
    CHECK_THAT(e.what(), Catch::Contains("transformer.h.2.ln_1.weight"));
  }
  SECTION("a config.json for another model") {
    const std::string dir = scratch_dir("other_config");
    export_hf(model, dir);
    auto deeper_owner = make_model(ctx, ModelConfig::gpt2(3, 2, 8, 11, 6), f32_options()); Model& deeper = *deeper_owner;
    Error e = expect_error([&] { import_hf(deeper, dir); });
    CHECK(e.code() == ExitCode::bad_config);
    CHECK_THAT(e.what(), Catch::Contains("config.json"));
  }
  SECTION("a config.json without a required key") {
    const std::string dir = scratch_dir("bad_config");
    fs::create_directories(dir);
    std::ofstream(dir + "/config.json") << R"({"model_type": "gpt2", "n_layer": 2, "n_head": 2, "vocab_size": 11,
                                               "n_positions": 6})";
    Error e = expect_error([&] { read_hf_config(dir); });
    CHECK(e.code() == ExitCode::bad_data);
    CHECK_THAT(e.what(), Catch::Contains("n_embd") && Catch::Contains("config.json"));
    std::ofstream(dir + "/config.json") << R"({"model_type": "bert", "n_layer": 2})";
    e = expect_error([&] { read_hf_config(dir); });
    CHECK(e.code() == ExitCode::bad_config);
    CHECK_THAT(e.what(), Catch::Contains("model_type"));
  }
}
