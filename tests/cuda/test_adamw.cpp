// adamw_update on CUDA beyond test-backend-ops: a bf16 parameter is exactly its rounded fp32
// master after each step.
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"
#include "tessera/dtype.h"

using namespace tessera;

TEST_CASE("adamw: a CUDA bf16 param is exactly the rounded fp32 master", "[cuda][adamw]") {
  TESSERA_REQUIRE_GPU(gpu);
  const int64_t n = 100003;
  const auto w0 = test::random_uniform(size_t(n), 261);
  const std::vector<float> zeros(size_t(n), 0.0f);
  auto param = test::upload(*gpu, w0, {n}, DType::bf16);
  auto master = test::upload(*gpu, w0, {n});
  auto m = test::upload(*gpu, zeros, {n});
  auto v = test::upload(*gpu, zeros, {n});
  AdamWParams hp;
  hp.lr = 1e-2f;
  hp.weight_decay = 0.1f;
  for (int step = 1; step <= 3; ++step) {
    auto grad = test::upload(*gpu, test::random_normal(size_t(n), 262 + uint64_t(step)), {n});
    hp.step = step;
    ops::adamw_update(*gpu, param.tensor, master.tensor, m.tensor, v.tensor, grad.tensor, hp);
    const auto w = test::download(*gpu, master.tensor);
    const auto p = test::download(*gpu, param.tensor);
    bool rounded = true;
    for (size_t i = 0; i < w.size(); ++i) rounded = rounded && p[i] == bf16_to_float(float_to_bf16(w[i]));
    CHECK(rounded);
  }
}
