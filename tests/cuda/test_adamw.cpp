// adamw_update: CUDA against the CPU kernel over several steps, f32 param and bf16 param + master.
#include <vector>

#include "kernels/ops.h"
#include "support/test_support.h"
#include "tessera/dtype.h"

using namespace tessera;

TEST_CASE("adamw: CUDA matches CPU over three steps, f32 and bf16 params", "[cuda][adamw]") {
  TESSERA_REQUIRE_GPU(gpu);
  Context& cpu = test::cpu_context();
  const int64_t n = 100003;
  const auto w0 = test::random_uniform(size_t(n), 261);
  AdamWParams hp;
  hp.lr = 1e-2f;
  hp.weight_decay = 0.1f;
  hp.grad_scale = 0.7f;
  for (DType dtype : {DType::f32, DType::bf16}) {
    INFO("param " << dtype_name(dtype));
    const bool bf16_param = dtype == DType::bf16;
    const std::vector<float> zeros(size_t(n), 0.0f);
    // f32: the param is its own master. bf16: an fp32 master beside it.
    auto c_param = test::upload(cpu, w0, {n}, dtype);
    auto g_param = test::upload(*gpu, w0, {n}, dtype);
    auto c_master = test::upload(cpu, w0, {n});
    auto g_master = test::upload(*gpu, w0, {n});
    auto c_m = test::upload(cpu, zeros, {n});
    auto c_v = test::upload(cpu, zeros, {n});
    auto g_m = test::upload(*gpu, zeros, {n});
    auto g_v = test::upload(*gpu, zeros, {n});
    for (int step = 1; step <= 3; ++step) {
      auto grad = test::random_normal(size_t(n), 262 + uint64_t(step));
      auto c_g = test::upload(cpu, grad, {n});
      auto g_g = test::upload(*gpu, grad, {n});
      hp.step = step;
      // dispatch keeps bf16 params off the CPU; the CPU kernel handles them for this reference.
      cpu::adamw_update(cpu, c_param.tensor, bf16_param ? c_master.tensor : Tensor(), c_m.tensor, c_v.tensor,
                        c_g.tensor, hp);
      ops::adamw_update(*gpu, g_param.tensor, bf16_param ? g_master.tensor : Tensor(), g_m.tensor, g_v.tensor,
                        g_g.tensor, hp);
    }
    CHECK(test::max_relative_error(test::download(*gpu, g_param.tensor), test::download(cpu, c_param.tensor)) <
          (bf16_param ? 1e-2 : 1e-5));
    CHECK(test::max_relative_error(test::download(*gpu, g_m.tensor), test::download(cpu, c_m.tensor)) < 1e-5);
    CHECK(test::max_relative_error(test::download(*gpu, g_v.tensor), test::download(cpu, c_v.tensor)) < 1e-5);
    if (bf16_param) {
      const auto master = test::download(*gpu, g_master.tensor);
      CHECK(test::max_relative_error(master, test::download(cpu, c_master.tensor)) < 1e-5);
      // The bf16 param is exactly the rounded master.
      const auto param = test::download(*gpu, g_param.tensor);
      for (size_t i = 0; i < master.size(); ++i) REQUIRE(param[i] == bf16_to_float(float_to_bf16(master[i])));
    }
  }
}
