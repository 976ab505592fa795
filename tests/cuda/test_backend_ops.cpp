// test-backend-ops on CUDA: one test per registered op ("backend-ops: <op>"), every case in f32
// and bf16 against the CPU reference (tests/support/op_harness.h). Without a GPU each reports
// itself skipped by name.
#include <string>

#include "support/op_harness.h"

using namespace tessera;
using kernels::OpEntry;

namespace {

class OnGpu : public Catch::ITestInvoker {
 public:
  explicit OnGpu(const OpEntry* entry) : entry_(entry) {}
  void invoke() const override {
    TESSERA_REQUIRE_GPU(gpu);
    test::check_op_on_backend(*gpu, *entry_);
  }

 private:
  const OpEntry* entry_;
};

const bool registered = [] {
  for (const OpEntry& e : kernels::op_registry()) {
    const std::string name = "backend-ops: " + e.name;
    Catch::AutoReg(new OnGpu(&e), CATCH_INTERNAL_LINEINFO, Catch::StringRef(),
                   Catch::NameAndTags{name, "[cuda][backend-ops]"});
  }
  return true;
}();

}  // namespace
