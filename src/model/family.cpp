#include "model/family.h"

#include "tessera/error.h"

namespace tessera::model {

const std::vector<const Family*>& families() {
  static const std::vector<const Family*> all = {&gpt2_family(), &llama_family()};
  return all;
}

const Family& family(const std::string& name) {
  std::string names;
  for (const Family* f : families()) {
    if (f->name == name) return *f;
    names += (names.empty() ? "" : ", ") + f->name;
  }
  throw config_error("unknown model family '" + name + "'", "use --family " + names);
}

const Family* family_for_hf_model_type(const std::string& model_type) {
  for (const Family* f : families())
    if (f->hf_model_type == model_type) return f;
  return nullptr;
}

std::string block_name(const std::string& pattern, int layer) {
  const size_t at = pattern.find("{}");
  if (at == std::string::npos) return pattern;
  return pattern.substr(0, at) + std::to_string(layer) + pattern.substr(at + 2);
}

}  // namespace tessera::model
