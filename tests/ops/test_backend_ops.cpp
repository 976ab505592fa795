// test-backend-ops on the CPU: one test per registered op ("backend-ops: <op>"), running the op
// through ops:: against its CPU reference with the harness's checks, its float64 maths, its
// finite-difference gradient and the thread-count check; and the check that every op of ops.h is
// registered. The CUDA half is tests/cuda/test_backend_ops.cpp.
#include <algorithm>
#include <string>

#include "support/op_harness.h"

using namespace tessera;
using kernels::OpEntry;

namespace {

class OnCpu : public Catch::ITestInvoker {
 public:
  explicit OnCpu(const OpEntry* entry) : entry_(entry) {}
  void invoke() const override {
    test::check_op_on_backend(test::cpu_context(), *entry_);
    test::check_op_float64(*entry_);
  }

 private:
  const OpEntry* entry_;
};

const bool registered = [] {
  for (const OpEntry& e : kernels::op_registry()) {
    const std::string name = "backend-ops: " + e.name;
    Catch::AutoReg(new OnCpu(&e), CATCH_INTERNAL_LINEINFO, Catch::StringRef(),
                   Catch::NameAndTags{name, "[backend-ops]"});
  }
  return true;
}();

}  // namespace

TEST_CASE("backend-ops: every op declared in ops.h has one registry entry with a float64 check", "[backend-ops]") {
  const std::vector<std::string> declared =
      test::ops_declared_in(std::string(TESSERA_SOURCE_DIR) + "/src/kernels/ops.h");
  REQUIRE(declared.size() >= 20);  // the parse found the declarations
  const auto& registry = kernels::op_registry();
  for (const std::string& name : declared) {
    INFO(name << " is declared in ops.h: register it in src/kernels/registry/");
    CHECK(std::count_if(registry.begin(), registry.end(), [&](const OpEntry& e) { return e.name == name; }) == 1);
  }
  for (const OpEntry& e : registry) {
    INFO(e.name);
    CHECK(std::count(declared.begin(), declared.end(), e.name) == 1);  // no stale entries
    CHECK(!e.cases.empty());
    CHECK(!e.small.empty());
    for (const kernels::Dims& dims : e.cases) CHECK(dims.size() == kernels::dim_names(e).size());
    for (const kernels::Dims& dims : e.small) CHECK(dims.size() == kernels::dim_names(e).size());
    CHECK((e.math || e.gradient.loss));  // checked against float64 on the CPU
  }
}
