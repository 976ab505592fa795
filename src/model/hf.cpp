// Hugging Face GPT-2 directories (config.json + model.safetensors). tessera's parameter names are
// Hugging Face's GPT2LMHeadModel names; what differs is orientation: transformers stores the
// blocks' matmul weights as Conv1D, (in, out), the transpose of tessera's (out, in).
#include "tessera/hf.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <vector>

#include "io/file_util.h"
#include "io/json.h"
#include "model/gpt2_layout.h"
#include "model/host_transfer.h"
#include "tessera/error.h"
#include "tessera/parallel.h"
#include "tessera/safetensors.h"

namespace tessera {

namespace {

constexpr const char* kConfigFile = "config.json";
constexpr const char* kWeightsFile = "model.safetensors";
constexpr const char* kWte = "transformer.wte.weight";

std::string join(const std::string& dir, const char* file) {
  return (std::filesystem::path(dir) / file).string();
}

// The 2-D parameters inside the blocks are exactly the Conv1D weights.
bool is_conv1d(const ParamSpec& spec, int n_layer) {
  return spec.shape.size() == 2 && spec.layer >= 0 && spec.layer < n_layer;
}

// (rows, cols) row-major -> (cols, rows) row-major.
std::vector<float> transposed(const std::vector<float>& src, int64_t rows, int64_t cols) {
  std::vector<float> out(src.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[size_t(c * rows + r)] = src[size_t(r * cols + c)];
  return out;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

float half_to_float(uint16_t h) {
  const int sign = (h >> 15) & 1, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  float magnitude;
  if (exponent == 0)
    magnitude = std::ldexp(float(mantissa), -24);  // subnormal
  else if (exponent == 31)
    magnitude = mantissa ? NAN : INFINITY;
  else
    magnitude = std::ldexp(float(mantissa | 0x400), exponent - 25);
  return sign ? -magnitude : magnitude;
}

// A tensor's values as float32 (the file's data is only byte-aligned: read with memcpy).
std::vector<float> entry_floats(const SafetensorsEntry& e, const std::string& path) {
  const char* raw = static_cast<const char*>(e.data);
  const size_t elem = safetensors_dtype_size(e.dtype);
  const size_t n = elem ? e.bytes / elem : 0;
  std::vector<float> out(n);
  if (e.dtype == "F32") {
    std::memcpy(out.data(), raw, n * sizeof(float));
  } else if (e.dtype == "BF16" || e.dtype == "F16") {
    const bool bf = e.dtype == "BF16";
    for (size_t i = 0; i < n; ++i) {
      uint16_t bits;
      std::memcpy(&bits, raw + 2 * i, 2);
      out[i] = bf ? bf16_to_float(bf16{bits}) : half_to_float(bits);
    }
  } else {
    throw data_error(fmt::format("tensor {} has dtype {}; GPT-2 import reads F32, BF16 or F16", e.name, e.dtype),
                     path, "convert the checkpoint to float32 or bfloat16");
  }
  return out;
}

// Tensors a Hugging Face GPT-2 file may carry that are not parameters: the tied lm head and, in
// older checkpoints, the attention layers' causal-mask buffers.
bool ignorable(const std::string& name) {
  auto ends_with = [&](const std::string& suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return name == "lm_head.weight" || ends_with(".attn.bias") || ends_with(".attn.masked_bias");
}

json::Value hf_config_json(const GPT2Config& c) {
  json::Value v = json::Value::object();
  json::Value architectures = json::Value::array();
  architectures.push_back("GPT2LMHeadModel");
  v.set("activation_function", "gelu_new");
  v.set("architectures", architectures);
  v.set("attn_pdrop", 0.0);
  // GPT-2's end-of-text is the last token of its vocabulary (50256), as in the byte tokenizer (256).
  v.set("bos_token_id", c.vocab_size - 1);
  v.set("embd_pdrop", 0.0);
  v.set("eos_token_id", c.vocab_size - 1);
  v.set("initializer_range", 0.02);
  v.set("layer_norm_epsilon", 1e-5);
  v.set("model_type", "gpt2");
  v.set("n_ctx", c.max_seq_len);
  v.set("n_embd", c.n_embd);
  v.set("n_head", c.n_head);
  v.set("n_inner", nullptr);
  v.set("n_layer", c.n_layer);
  v.set("n_positions", c.max_seq_len);
  v.set("reorder_and_upcast_attn", false);
  v.set("resid_pdrop", 0.0);
  v.set("scale_attn_by_inverse_layer_idx", false);
  v.set("scale_attn_weights", true);
  v.set("tie_word_embeddings", true);
  v.set("torch_dtype", "float32");
  v.set("use_cache", true);
  v.set("vocab_size", c.vocab_size);
  return v;
}

}  // namespace

GPT2Config read_gpt2_hf_config(const std::string& dir) {
  const std::string path = join(dir, kConfigFile);
  const json::Value v = json::parse(io::read_file(path, "Hugging Face config"), path);
  if (!v.is_object()) throw data_error("config.json is not a JSON object", path);
  auto integer = [&](const char* key) -> int {
    const json::Value* x = v.find(key);
    if (!x) throw data_error(fmt::format("missing key \"{}\"", key), path, "is this a GPT-2 config.json?");
    if (!x->is_integer() || x->as_int64() <= 0 || x->as_int64() > (int64_t(1) << 31) - 1)
      throw data_error(fmt::format("key \"{}\" must be a positive integer, got {}", key, x->dump()), path);
    return int(x->as_int64());
  };
  auto unsupported = [&](const std::string& what) {
    return config_error(fmt::format("{}: {}", path, what), "tessera imports plain GPT-2 (GPT2LMHeadModel) models",
                        path);
  };
  if (const json::Value* t = v.find("model_type"); t && (!t->is_string() || t->as_string() != "gpt2"))
    throw unsupported(fmt::format("key \"model_type\" is {}, not \"gpt2\"", t->dump()));
  if (const json::Value* a = v.find("activation_function"); a) {
    // tessera's GELU is the tanh approximation, which both of these names denote.
    if (!a->is_string() || (a->as_string() != "gelu_new" && a->as_string() != "gelu_pytorch_tanh"))
      throw unsupported(fmt::format("key \"activation_function\" is {}; tessera computes gelu_new", a->dump()));
  }
  if (const json::Value* e = v.find("layer_norm_epsilon"); e && (!e->is_number() || std::fabs(e->as_double() - 1e-5) > 1e-12))
    throw unsupported(fmt::format("key \"layer_norm_epsilon\" is {}; tessera's LayerNorm uses 1e-5", e->dump()));
  for (const char* flag : {"scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"}) {
    if (const json::Value* f = v.find(flag); f && f->is_bool() && f->as_bool())
      throw unsupported(fmt::format("key \"{}\" is true, which tessera does not implement", flag));
  }
  if (const json::Value* f = v.find("scale_attn_weights"); f && f->is_bool() && !f->as_bool())
    throw unsupported("key \"scale_attn_weights\" is false; tessera scales attention by 1/sqrt(head size)");
  if (const json::Value* t = v.find("tie_word_embeddings"); t && t->is_bool() && !t->as_bool())
    throw unsupported("key \"tie_word_embeddings\" is false; tessera's lm head is tied to wte");

  const int n_layer = integer("n_layer"), n_head = integer("n_head"), n_embd = integer("n_embd");
  const int vocab_size = integer("vocab_size");
  // Older configs give the context length as n_ctx only.
  const int n_positions = v.contains("n_positions") || !v.contains("n_ctx") ? integer("n_positions") : integer("n_ctx");
  if (const json::Value* inner = v.find("n_inner"); inner && !inner->is_null()) {
    if (!inner->is_integer() || inner->as_int64() != 4 * int64_t(n_embd))
      throw unsupported(fmt::format("key \"n_inner\" is {}; tessera's MLP is 4 * n_embd = {}", inner->dump(),
                                    4 * int64_t(n_embd)));
  }
  GPT2Config config = GPT2Config::custom(n_layer, n_head, n_embd, vocab_size, n_positions);
  try {
    config.validate();
  } catch (const Error& e) {
    throw config_error(path + ": " + e.what_happened(), e.hint(), path);
  }
  return config;
}

void export_gpt2_hf(const GPT2& model, const std::string& dir) {
  if (!model.holds_all_parameters())
    throw config_error("export_gpt2_hf needs the whole model, but this rank holds one tensor- or pipeline-parallel "
                       "part of it",
                       "assemble the parameters first (Trainer::gather_parameters) and export from one rank");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    throw config_error(fmt::format("cannot create the export directory {}: {}", dir, ec.message()),
                       "choose a writable --export directory");
  const GPT2Config& c = model.config();
  const ParamTable& table = model.params();

  io::AtomicFileWriter config_file(join(dir, kConfigFile), "Hugging Face config");
  config_file.write(hf_config_json(c).dump(2) + "\n");
  config_file.commit();

  std::vector<std::vector<float>> values(table.size());
  std::vector<SafetensorsEntry> entries;
  for (size_t i = 0; i < table.size(); ++i) {
    const ParamSpec& spec = table[i];
    std::vector<float>& v = values[i];
    v = model::download_floats(model.context(), model.param(i));
    SafetensorsEntry e;
    e.name = spec.name;
    e.dtype = "F32";
    e.shape = spec.shape;
    if (spec.name == kWte) {
      v.resize(size_t(c.vocab_size) * size_t(c.n_embd));  // the padded rows stay behind
      e.shape = {c.vocab_size, c.n_embd};
    } else if (is_conv1d(spec, c.n_layer)) {
      v = transposed(v, spec.shape[0], spec.shape[1]);
      e.shape = {spec.shape[1], spec.shape[0]};
    }
    e.data = v.data();
    e.bytes = v.size() * sizeof(float);
    entries.push_back(std::move(e));
  }
  // transformers refuses safetensors files whose metadata lacks format "pt".
  write_safetensors(join(dir, kWeightsFile), entries, {{"format", "pt"}});
}

void import_gpt2_hf(GPT2& model, const std::string& dir) {
  const GPT2Config& c = model.config();
  // A config.json that disagrees with the model is a clearer error than a tensor of the wrong shape.
  if (std::filesystem::exists(join(dir, kConfigFile))) {
    GPT2Config file = read_gpt2_hf_config(dir);
    if (file.n_layer != c.n_layer || file.n_head != c.n_head || file.n_embd != c.n_embd ||
        file.vocab_size != c.vocab_size || file.max_seq_len != c.max_seq_len)
      throw config_error(fmt::format("{} describes {}, but the model is {}", join(dir, kConfigFile), file.describe(),
                                     c.describe()),
                         "build the model from read_gpt2_hf_config(dir)", join(dir, kConfigFile));
  }
  const std::string path = join(dir, kWeightsFile);
  SafetensorsReader reader(path);
  // Files saved from GPT2LMHeadModel name tensors "transformer.h.0..."; the original OpenAI
  // checkpoints on the Hub were saved from GPT2Model, without the prefix.
  const std::string prefix = "transformer.";
  const bool prefixed = reader.has(kWte) || !reader.has("wte.weight");
  auto file_name = [&](const std::string& name) { return prefixed ? name : name.substr(prefix.size()); };

  // Every tensor of the model is checked; this rank loads its own part (its stages, its shards).
  const ParamTable& table = model.global_params();
  const ParamTable& local = model.params();
  std::vector<int> local_of(table.size(), -1);
  for (size_t i = 0; i < local.size(); ++i) local_of[model.global_index(i)] = int(i);
  const ProcessGrid* grid = model.options().grid;
  const int tp = grid ? grid->layout().tp : 1, tp_rank = grid ? grid->tp_rank() : 0;
  std::set<std::string> used;
  for (size_t i = 0; i < table.size(); ++i) {
    const ParamSpec& spec = table[i];
    const std::string name = file_name(spec.name);
    if (!reader.has(name))
      throw data_error(fmt::format("tensor {} is missing", name), path,
                       "the file does not hold a GPT-2 model of this configuration");
    const SafetensorsEntry& e = reader.entry(name);
    const bool conv1d = is_conv1d(spec, c.n_layer);
    std::vector<int64_t> expected = spec.shape;
    if (spec.name == kWte) expected = {c.vocab_size, c.n_embd};
    if (conv1d) expected = {spec.shape[1], spec.shape[0]};
    if (e.shape != expected)
      throw data_error(fmt::format("tensor {} has shape {}, expected {}", name, shape_string(e.shape),
                                   shape_string(expected)),
                       path, "the file does not hold a GPT-2 model of this configuration");
    used.insert(name);
    // Every tensor on every rank, so all ranks refuse the same file with the same message.
    if (const int64_t bad = safetensors_first_non_finite(e); bad >= 0)
      throw data_error(fmt::format("tensor {} holds a non-finite value (NaN or infinity) at element {}", name, bad), path,
                       "the weights are damaged: re-export or re-download them");
    if (local_of[i] < 0) continue;
    std::vector<float> v = entry_floats(e, path);
    if (conv1d) v = transposed(v, expected[0], expected[1]);
    if (spec.name == kWte) v.resize(size_t(table.numel(i)), 0.0f);  // padded rows are zero
    std::vector<float> shard(size_t(local.numel(size_t(local_of[i]))));
    model::extract_shard(spec, tp, tp_rank, v.data(), shard.data());
    model::upload_floats(model.context(), model.param(size_t(local_of[i])), shard.data());
  }
  for (const std::string& name : reader.names()) {
    if (!used.count(name) && !ignorable(name))
      throw data_error(fmt::format("unexpected tensor {}", name), path,
                       "the file does not hold a GPT-2 model of this configuration");
  }
}

}  // namespace tessera
