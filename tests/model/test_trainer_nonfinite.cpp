// A step whose loss or gradients are not finite never reaches the weights or the optimizer state.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "support/test_support.h"
#include "tessera/trainer.h"

using namespace tessera;

TEST_CASE("trainer: a non-finite loss skips the update and leaves the model as it was", "[model][trainer]") {
  Context& ctx = test::cpu_context();
  const ModelConfig config = ModelConfig::gpt2(2, 2, 16, 50, 16);
  TrainerOptions options;
  options.batch_size = 2;
  options.seq_len = 8;
  options.seed = 3;
  Trainer trainer(ctx, config, options);
  auto tokens = test::random_ints(16, 1, 0, 50), targets = test::random_ints(16, 2, 0, 50);
  std::vector<const int32_t*> t{tokens.data()}, y{targets.data()};

  StepStats first = trainer.step(t, y, 1e-3f);
  REQUIRE(first.applied);
  REQUIRE(std::isfinite(first.loss));

  // Poison one LayerNorm weight: the loss and every gradient become NaN.
  Model& model = trainer.model();
  const int ln = model.params().index_of("transformer.ln_f.weight");
  std::vector<float> before = test::download(ctx, model.param_buffer());
  float nan = std::numeric_limits<float>::quiet_NaN();
  copy_tensor(ctx, model.param(size_t(ln)).flat_range(0, 1), Tensor(&nan, {1}, DType::f32, Device::cpu));
  const int64_t steps_before = trainer.optimizer()->step_count();

  StepStats bad = trainer.step(t, y, 1e-3f);
  CHECK_FALSE(bad.applied);
  CHECK_FALSE(std::isfinite(bad.loss));
  CHECK(trainer.optimizer()->step_count() == steps_before);
  std::vector<float> after = test::download(ctx, model.param_buffer());
  const int64_t poisoned = model.params().offset(size_t(ln));
  size_t changed = 0;
  for (size_t i = 0; i < before.size(); ++i)
    if (int64_t(i) != poisoned && std::memcmp(&before[i], &after[i], sizeof(float)) != 0) ++changed;
  CHECK(changed == 0);

  // Repaired, the next step trains again.
  copy_tensor(ctx, model.param(size_t(ln)).flat_range(0, 1), Tensor(&before[size_t(poisoned)], {1}, DType::f32, Device::cpu));
  StepStats good = trainer.step(t, y, 1e-3f);
  CHECK(good.applied);
  CHECK(std::isfinite(good.loss));
  CHECK(trainer.optimizer()->step_count() == steps_before + 1);
}
