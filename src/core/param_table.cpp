#include "tessera/param_table.h"

#include "tessera/error.h"

namespace tessera {

int ParamTable::add(ParamSpec spec) {
  TESSERA_CHECK(!spec.shape.empty(), "parameter " + spec.name + " has no shape");
  if (!spec.parts.empty()) {
    TESSERA_CHECK(spec.split_dim >= 0 && spec.split_dim < int(spec.shape.size()),
                  "parameter " + spec.name + " has packed parts but no split dimension");
    int64_t extent = 0;
    for (int64_t p : spec.parts) extent += p;
    TESSERA_CHECK(extent == spec.shape[size_t(spec.split_dim)], "parts of " + spec.name + " do not add up to its extent");
  }
  TESSERA_CHECK(spec.part_names.empty() || spec.part_names.size() == split_parts(spec).size(),
                "parameter " + spec.name + " names some of its parts but not all");
  const int index = int(specs_.size());
  TESSERA_CHECK(index_.emplace(spec.name, index).second, "duplicate parameter name " + spec.name);
  int64_t n = 1;
  for (int64_t d : spec.shape) n *= d;
  offsets_.push_back(flat_numel_);
  flat_numel_ += (n + kAlignElements - 1) / kAlignElements * kAlignElements;
  specs_.push_back(std::move(spec));
  return index;
}

int ParamTable::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? -1 : it->second;
}

int ParamTable::index_of(const std::string& name) const {
  int i = find(name);
  if (i < 0) throw config_error("no parameter named '" + name + "'", "check the model configuration");
  return i;
}

int64_t ParamTable::numel(size_t i) const {
  int64_t n = 1;
  for (int64_t d : specs_[i].shape) n *= d;
  return n;
}

int64_t ParamTable::parameter_count() const {
  int64_t total = 0;
  for (size_t i = 0; i < specs_.size(); ++i) total += numel(i);
  return total;
}

}  // namespace tessera
