// Hugging Face directories of any family. tessera's parameter names are Hugging Face's (packed
// tensors name their parts), so the parameter table says everything but config.json, which the
// family reads and writes.
#include "tessera/hf.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "io/file_util.h"
#include "io/json.h"
#include "model/family.h"
#include "tessera/buffer.h"
#include "tessera/error.h"
#include "tessera/parallel.h"
#include "tessera/safetensors.h"

namespace tessera {

namespace {

constexpr const char* kConfigFile = "config.json";
constexpr const char* kWeightsFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

std::string join(const std::string& dir, const char* file) { return (std::filesystem::path(dir) / file).string(); }

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
    throw data_error(fmt::format("tensor {} has dtype {}; import reads F32, BF16 or F16", e.name, e.dtype), path,
                     "convert the checkpoint to float32 or bfloat16");
  }
  return out;
}

// One stored tensor of a parameter: the whole parameter, or one of its packed parts (rows
// [row, row + rows) of split_dim 0), with the real rows only.
struct Stored {
  std::string name;
  int64_t row = 0;               // first row (dim 0) in the parameter
  std::vector<int64_t> shape;    // tessera's orientation, padding left out
  bool transposed = false;
};

std::vector<Stored> stored_tensors(const ParamSpec& spec) {
  std::vector<int64_t> shape = spec.shape;
  if (spec.real_rows > 0) shape[0] = spec.real_rows;
  if (spec.part_names.empty()) return {Stored{spec.name, 0, shape, spec.stored_transposed}};
  TESSERA_CHECK(spec.split_dim == 0, "parameter " + spec.name + " names parts along a dimension other than 0");
  std::vector<Stored> out;
  int64_t row = 0;
  const std::vector<int64_t> parts = split_parts(spec);
  for (size_t p = 0; p < parts.size(); ++p) {
    shape[0] = parts[p];
    out.push_back(Stored{spec.part_names[p], row, shape, spec.stored_transposed});
    row += parts[p];
  }
  return out;
}

std::vector<int64_t> file_shape(const Stored& s) {
  if (s.transposed && s.shape.size() == 2) return {s.shape[1], s.shape[0]};
  return s.shape;
}

// The weights of a directory: one file, or the shards an index lists (each mapped once).
class WeightFiles {
 public:
  explicit WeightFiles(const std::string& dir) {
    const std::string single = join(dir, kWeightsFile), index = join(dir, kIndexFile);
    if (std::filesystem::exists(single)) {
      source_ = single;
      readers_.push_back(std::make_unique<SafetensorsReader>(single));
      for (const std::string& name : readers_.back()->names()) where_[name] = 0;
      return;
    }
    if (!std::filesystem::exists(index))
      throw data_error(fmt::format("no {} or {}", kWeightsFile, kIndexFile), dir,
                       "point --init-from at a Hugging Face model directory");
    source_ = index;
    const json::Value v = json::parse(io::read_file(index, "safetensors index"), index);
    const json::Value* map = v.find("weight_map");
    if (!map || !map->is_object()) throw data_error("no \"weight_map\" object", index);
    std::map<std::string, size_t> file_reader;
    for (const json::Value::Member& m : map->members()) {
      const std::string& file = m.value.as_string();
      if (file.find('/') != std::string::npos || file.find("..") != std::string::npos)
        throw data_error(fmt::format("tensor {} is in '{}', outside the directory", m.key, file), index);
      auto [it, added] = file_reader.emplace(file, readers_.size());
      if (added) readers_.push_back(std::make_unique<SafetensorsReader>(join(dir, file.c_str())));
      if (!readers_[it->second]->has(m.key))
        throw data_error(fmt::format("the index puts tensor {} in {}, which does not hold it", m.key, file), index);
      where_[m.key] = it->second;
    }
    // A shard's tensor the index does not list would be silently ignored: refuse it.
    for (const auto& [file, r] : file_reader)
      for (const std::string& name : readers_[r]->names())
        if (!where_.count(name)) throw data_error(fmt::format("{} holds tensor {}, which the index does not list", file, name), index);
  }

  const std::string& source() const { return source_; }  // the single file, or the index
  bool has(const std::string& name) const { return where_.count(name) > 0; }
  const SafetensorsEntry& entry(const std::string& name) const { return readers_[where_.at(name)]->entry(name); }
  const std::string& path(const std::string& name) const { return readers_[where_.at(name)]->path(); }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [name, r] : where_) out.push_back(name);
    return out;
  }

 private:
  std::string source_;
  std::vector<std::unique_ptr<SafetensorsReader>> readers_;
  std::map<std::string, size_t> where_;
};

}  // namespace

ModelConfig read_hf_config(const std::string& dir) {
  const std::string path = join(dir, kConfigFile);
  const json::Value v = json::parse(io::read_file(path, "Hugging Face config"), path);
  if (!v.is_object()) throw data_error("config.json is not a JSON object", path);
  // Old GPT-2 configs carry no model_type.
  std::string type = "gpt2";
  if (const json::Value* t = v.find("model_type")) {
    if (!t->is_string()) throw data_error(fmt::format("key \"model_type\" is {}, not a string", t->dump()), path);
    type = t->as_string();
  }
  const model::Family* family = model::family_for_hf_model_type(type);
  if (!family) {
    std::string known;
    for (const model::Family* f : model::families()) known += (known.empty() ? "" : ", ") + f->hf_model_type;
    throw config_error(fmt::format("{}: key \"model_type\" is \"{}\"; tessera reads {}", path, type, known),
                       "import a GPT-2 or LLaMA model", path);
  }
  ModelConfig config = family->read_hf_config(v, path);
  try {
    config.validate();
  } catch (const Error& e) {
    throw config_error(path + ": " + e.what_happened(), e.hint(), path);
  }
  return config;
}

void export_hf(const Model& model, const std::string& dir) {
  if (!model.holds_all_parameters())
    throw config_error("export_hf needs the whole model, but this rank holds one tensor- or pipeline-parallel part of it",
                       "assemble the parameters first (Trainer::gather_parameters) and export from one rank");
  const ModelConfig& c = model.config();
  const json::Value config_json = model::family(c.family).write_hf_config(c);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    throw config_error(fmt::format("cannot create the export directory {}: {}", dir, ec.message()),
                       "choose a writable --export directory");
  io::AtomicFileWriter config_file(join(dir, kConfigFile), "Hugging Face config");
  config_file.write(config_json.dump(2) + "\n");
  config_file.commit();

  const ParamTable& table = model.params();
  std::vector<std::vector<float>> values;
  std::vector<SafetensorsEntry> entries;
  values.reserve(64 * table.size());
  for (size_t i = 0; i < table.size(); ++i) {
    const ParamSpec& spec = table[i];
    const std::vector<float> all = download_floats(model.context(), model.param(i));
    const int64_t row_size = table.numel(i) / spec.shape[0];
    for (const Stored& s : stored_tensors(spec)) {
      const auto begin = all.begin() + s.row * row_size;
      std::vector<float> v(begin, begin + s.shape[0] * row_size);
      if (s.transposed && s.shape.size() == 2) v = transposed(v, s.shape[0], s.shape[1]);
      values.push_back(std::move(v));
      SafetensorsEntry e;
      e.name = s.name;
      e.dtype = "F32";
      e.shape = file_shape(s);
      e.data = values.back().data();
      e.bytes = values.back().size() * sizeof(float);
      entries.push_back(std::move(e));
    }
  }
  // transformers refuses safetensors files whose metadata lacks format "pt".
  write_safetensors(join(dir, kWeightsFile), entries, {{"format", "pt"}});
}

void import_hf(Model& model, const std::string& dir) {
  const ModelConfig& c = model.config();
  const model::Family& family = model::family(c.family);
  // A config.json that disagrees with the model is a clearer error than a tensor of the wrong shape.
  if (std::filesystem::exists(join(dir, kConfigFile))) {
    const ModelConfig file = read_hf_config(dir);
    if (file != c)
      throw config_error(fmt::format("{} describes {}, but the model is {}", join(dir, kConfigFile), file.describe(),
                                     c.describe()),
                         "build the model from read_hf_config(dir)", join(dir, kConfigFile));
  }
  const WeightFiles files(dir);
  // Files saved from the base model (GPT2Model, LlamaModel) lack the first component of the names
  // ("transformer.", "model."): the original OpenAI GPT-2 checkpoints on the Hub, for one.
  const std::string& embedding = family.names.token_embedding;
  const std::string prefix = embedding.substr(0, embedding.find('.') + 1);
  const bool prefixed = files.has(embedding) || !files.has(embedding.substr(prefix.size()));
  auto file_name = [&](const std::string& name) {
    return prefixed || name.compare(0, prefix.size(), prefix) != 0 ? name : name.substr(prefix.size());
  };

  // Every tensor of the model is checked; this rank loads its own part (its stages, its shards).
  const ParamTable& table = model.global_params();
  const ParamTable& local = model.params();
  std::vector<int> local_of(table.size(), -1);
  for (size_t i = 0; i < local.size(); ++i) local_of[model.global_index(i)] = int(i);
  const ProcessGrid& grid = model.grid();
  const int tp = grid.layout().tp, tp_rank = grid.tp_rank();
  std::set<std::string> used;
  for (size_t i = 0; i < table.size(); ++i) {
    const ParamSpec& spec = table[i];
    const int64_t row_size = table.numel(i) / spec.shape[0];
    std::vector<float> v;
    for (const Stored& s : stored_tensors(spec)) {
      const std::string name = file_name(s.name);
      if (!files.has(name))
        throw data_error(fmt::format("tensor {} is missing", name), files.source(),
                         "the files do not hold a " + family.display_name + " model of this configuration");
      const SafetensorsEntry& e = files.entry(name);
      const std::vector<int64_t> expected = file_shape(s);
      if (e.shape != expected)
        throw data_error(fmt::format("tensor {} has shape {}, expected {}", name, shape_string(e.shape),
                                     shape_string(expected)),
                         files.path(name), "the files do not hold a " + family.display_name + " model of this configuration");
      used.insert(name);
      // Every tensor on every rank, so all ranks refuse the same files with the same message.
      if (const int64_t bad = safetensors_first_non_finite(e); bad >= 0)
        throw data_error(fmt::format("tensor {} holds a non-finite value (NaN or infinity) at element {}", name, bad),
                         files.path(name), "the weights are damaged: re-export or re-download them");
      if (local_of[i] < 0) continue;
      std::vector<float> part = entry_floats(e, files.path(name));
      if (s.transposed && s.shape.size() == 2) part = transposed(part, expected[0], expected[1]);
      v.insert(v.end(), part.begin(), part.end());
    }
    if (local_of[i] < 0) continue;
    v.resize(size_t(spec.shape[0] * row_size), 0.0f);  // padded rows are zero
    std::vector<float> shard(size_t(local.numel(size_t(local_of[i]))));
    extract_shard(spec, tp, tp_rank, v.data(), shard.data());
    upload_floats(model.context(), model.param(size_t(local_of[i])), shard.data());
  }
  // Tensors a file may carry that are not parameters: a tied output layer, and the buffers older
  // files saved (GPT-2's causal masks, LLaMA's rotary frequencies).
  auto ignorable = [&](const std::string& name) {
    auto ends_with = [&](const std::string& suffix) {
      return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (c.tie_embeddings && name == family.names.lm_head + ".weight") return true;
    for (const std::string& suffix : family.hf_ignored_suffixes)
      if (ends_with(suffix)) return true;
    return false;
  };
  for (const std::string& name : files.names())
    if (!used.count(name) && !ignorable(name))
      throw data_error(fmt::format("unexpected tensor {}", name), files.path(name),
                       "the files do not hold a " + family.display_name + " model of this configuration");
}

}  // namespace tessera
