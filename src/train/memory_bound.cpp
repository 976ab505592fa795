#include "train/memory_bound.h"

#include <fmt/format.h>

#include <cmath>

#include "model/decoder_params.h"
#include "tessera/error.h"
#include "tessera/param_table.h"

namespace tessera::train {

namespace {

// A table entry's own memory: its spec (name, shape, parts), offset and index, in the global and the
// local table (measured: about 0.25 KB per entry and table).
constexpr long double kBytesPerEntry = 2 * 256;

struct TableSize {
  long double elements = 0;  // in the flat buffers, each parameter padded to the alignment
  long double entries = 0;
};

// Every block adds the same entries, so the tables of one and of two blocks give the size of any
// depth without building its table.
TableSize table_size(const ModelConfig& config) {
  auto size_with = [&](int layers) {
    ModelConfig c = config;
    c.n_layer = layers;
    const ParamTable table = model::decoder_param_table(c);
    TableSize t;
    const long double align = ParamTable::kAlignElements;
    for (const ParamSpec& s : table.specs()) {
      long double numel = 1;
      for (int64_t d : s.shape) numel *= (long double)d;
      t.elements += std::ceil(numel / align) * align;
      t.entries += 1;
    }
    return t;
  };
  const TableSize one = size_with(1), two = size_with(2);
  const long double L = config.n_layer;
  TableSize t;
  t.elements = one.elements + (L - 1) * (two.elements - one.elements);
  t.entries = one.entries + (L - 1) * (two.entries - one.entries);
  return t;
}

std::string gigabytes(long double bytes) { return fmt::format("{:.2f} GB", double(bytes / 1e9L)); }

}  // namespace

MemoryBound least_training_memory(const ModelConfig& config, const ParallelLayout& layout, DType param_dtype) {
  const TableSize table = table_size(config);
  const long double parameters = table.elements;
  // A rank holds at least its even share of what tensor and pipeline parallelism split, and ZeRO-1
  // splits the optimizer state over the data-parallel ranks.
  const long double share = parameters / ((long double)layout.tp * layout.pp);
  const long double state_split = layout.zero_stage == 1 ? (long double)layout.dp : 1;
  const long double param_bytes = dtype_size(param_dtype), grad_bytes = 4;
  const long double state_bytes = (param_dtype == DType::f32 ? 8 : 12) / state_split;  // m, v (and the fp32 master)
  MemoryBound b;
  b.device_bytes = share * (param_bytes + grad_bytes + state_bytes);
  b.host_bytes = table.entries * kBytesPerEntry;
  return b;
}

void check_fits_in_memory(const Context& ctx, const ModelConfig& config, const ParallelLayout& layout, DType param_dtype) {
  const MemoryBound need = least_training_memory(config, layout, param_dtype);
  const char* hint = "use a smaller model, or share it over more ranks (--tp, --pp, --zero 1 with --dp)";
  const uint64_t device = ctx.available_memory(), host = ctx.available_host_memory();
  const long double on_device = need.device_bytes + (ctx.on_gpu() ? 0 : need.host_bytes);
  if (device > 0 && on_device > (long double)device)
    throw config_error(fmt::format("{} needs at least {} per rank for its parameters, gradients and optimizer state "
                                   "under tp {} x pp {}{}, and this rank has {} available {}",
                                   config.describe(), gigabytes(on_device), layout.tp, layout.pp,
                                   layout.zero_stage == 1 ? fmt::format(" with ZeRO-1 over dp {}", layout.dp) : "",
                                   gigabytes(device), ctx.on_gpu() ? "on its GPU" : "(its share of the host's)"),
                       hint);
  if (ctx.on_gpu() && host > 0 && need.host_bytes > (long double)host)
    throw config_error(fmt::format("{} has {:.0f} parameter tensors, whose tables need {} of host memory per rank, and "
                                   "this rank has {} available",
                                   config.describe(), double(table_size(config).entries),
                                   gigabytes(need.host_bytes), gigabytes(host)),
                       "use fewer layers");
}

}  // namespace tessera::train
