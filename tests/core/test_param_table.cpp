// The parameter table: names unique and found by name, offsets aligned, and a table of a deep
// model built in linear time (the name check used to scan the whole table on every add, so 8,000
// layers took 44 s and a million never finished).
#include <chrono>
#include <string>

#include <catch2/catch.hpp>

#include "tessera/error.h"
#include "tessera/param_table.h"

using namespace tessera;

namespace {

ParamSpec spec(std::string name, std::vector<int64_t> shape) {
  ParamSpec s;
  s.name = std::move(name);
  s.shape = std::move(shape);
  return s;
}

}  // namespace

TEST_CASE("param table: names are unique, found by name, offsets aligned", "[core]") {
  ParamTable t;
  CHECK(t.add(spec("wte", {5, 3})) == 0);
  CHECK(t.add(spec("h.0.w", {7})) == 1);
  CHECK(t.find("h.0.w") == 1);
  CHECK(t.find("h.1.w") == -1);
  CHECK_THROWS_AS(t.add(spec("wte", {2})), Error);
  CHECK(t.size() == 2);  // the refused duplicate left nothing behind
  CHECK(t.find("wte") == 0);
  CHECK(t.offset(1) == ParamTable::kAlignElements);
  CHECK(t.add(spec("h.1.w", {1})) == 2);
  CHECK(t.find("h.1.w") == 2);
}

TEST_CASE("param table: 96,000 parameters (8,000 GPT-2 layers) are added and found in linear time", "[core]") {
  // A complexity guard, not a benchmark: linear takes a fraction of a second even on a loaded
  // machine; the quadratic name check it replaces took about 30 s here.
  const auto start = std::chrono::steady_clock::now();
  ParamTable t;
  const char* parts[] = {"ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                         "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                         "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"};
  for (int layer = 0; layer < 8000; ++layer)
    for (const char* part : parts) t.add(spec("transformer.h." + std::to_string(layer) + "." + part, {4}));
  REQUIRE(t.size() == 96000);
  for (int layer = 0; layer < 8000; layer += 997)
    CHECK(t.find("transformer.h." + std::to_string(layer) + ".mlp.c_fc.bias") == layer * 12 + 9);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(seconds < 5.0);
}
