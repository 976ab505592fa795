// The same GPT training in every layout tp x pp x dp: a small model trained 20 steps on a synthetic
// token stream gives, every step, the loss one process gets on the same global batches (1e-5
// relative, float32), ends with the same parameters, and evaluates to the same validation loss.
// The reference is the single-process Trainer, run locally on every rank (the model is tiny).
// Each test case needs one world size (it says so and skips otherwise); CTest launches each at its
// size. Bad layouts are refused with a config error before any work starts.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "parallel/small_model.h"
#include "parallel/world.h"
#include "support/test_support.h"
#include "tessera/communicator.h"
#include "tessera/data.h"
#include "tessera/error.h"
#include "tessera/hf.h"
#include "tessera/parallel.h"
#include "tessera/schedule.h"
#include "tessera/trainer.h"

using namespace tessera;
using test::small_config;
using test::world;

namespace {

constexpr int kSteps = 20;
constexpr int kB = 2;   // sequences per microbatch per data-parallel rank
constexpr int kT = test::kSmallModelSeqLen;
constexpr uint64_t kSeed = 1234;

// A deterministic stream with structure to learn: motifs of 8 tokens drawn by a fixed LCG.
class TokenFile {
 public:
  TokenFile() {
    path_ = (std::filesystem::temp_directory_path() /
             ("tessera_equivalence_" + std::to_string(::getpid()) + "_" + std::to_string(world().rank()) + ".bin"))
                .string();
    const std::vector<uint16_t> tokens = test::motif_tokens(40000);
    write_token_shard(path_, tokens.data(), int64_t(tokens.size()));
  }
  ~TokenFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

const std::string& token_path() {
  static TokenFile file;
  return file.path();
}

struct Layout {
  int tp = 1, pp = 1, dp = 1;
  ScheduleKind schedule = ScheduleKind::one_f_one_b;
  int virtual_stages = 1;
  int microbatches = 2;
  bool sp = false;
  int zero = 0;
  Recompute recompute = Recompute::none;
  int layers = 4;
  bool shuffle = false;
  std::string family = "gpt2";

  int ranks() const { return tp * pp * dp; }
  std::string describe() const {
    return family + " tp=" + std::to_string(tp) + " pp=" + std::to_string(pp) + " dp=" + std::to_string(dp) +
           (sp ? " sp" : "") + (zero ? " zero1" : "") + " " + schedule_kind_name(schedule) +
           " v=" + std::to_string(virtual_stages) + " microbatches=" + std::to_string(microbatches) +
           (recompute == Recompute::full ? " recompute" : "") + " L=" + std::to_string(layers);
  }
};

struct Run {
  std::vector<float> losses;
  float val_loss = 0;
  std::map<std::string, std::vector<float>> params;
  double bubble = 0;
  int slots = 0;  // activation slots per chunk the trainer planned
  double seconds = 0;
};

// Trains kSteps steps: B sequences per microbatch on data-parallel rank dp_rank of dp.
//
// In file order by default: the parameter bounds below were set on this stream. Shuffled batches
// share less from step to step, Adam's moments cancel more, and rounding noise moves more
// parameters past them (tp2: 15% of the elements over 1e-5 at floor 0.01, the worst 2e-5, while the
// losses agree to 2e-7); the shuffled test compares losses, and the loader's own tests show that
// every layout reads exactly the one process's sequences in either order.
Run train(const ModelConfig& config, const ProcessGrid* grid, int B, int microbatches, int dp_rank, int dp,
          Recompute recompute, bool shuffle = false) {
  const auto start = std::chrono::steady_clock::now();
  TrainerOptions o;
  o.batch_size = B;
  o.seq_len = kT;
  o.microbatches = grid ? 0 : microbatches;
  o.seed = kSeed;
  // Adam's epsilon 1e-6 rather than 1e-8: an element whose gradient is rounding noise (zero in
  // exact arithmetic, or nearly) would otherwise take a full step in the direction the noise
  // points, and the parameter comparison would measure that noise rather than the layout. Models
  // without biases or with an untied embedding have many such elements (rare tokens' embedding
  // rows); the first-step gradients themselves agree to 1e-6 of each tensor's largest.
  o.adamw.eps = 1e-6f;
  ModelOptions mo;
  mo.precision = Precision::f32;
  mo.recompute = recompute;
  mo.grid = grid;
  Trainer trainer(test::cpu_context(), config, o, mo);
  LoaderOptions data_order;
  data_order.shuffle = shuffle;
  data_order.seed = int64_t(kSeed);
  DataLoader loader(token_path(), B, kT, config.vocab_size, dp_rank, dp, data_order);
  Run run;
  run.slots = trainer.activation_slots();
  for (int step = 0; step < kSteps; ++step) {
    StepStats s = trainer.step(loader, test::small_model_learning_rate(step, kSteps));
    run.losses.push_back(s.loss);
    run.bubble = s.bubble_fraction;
  }
  run.val_loss = trainer.evaluate(loader, 2);
  run.params = trainer.gather_parameters();
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return run;
}

// One process on the same global batches: B*dp sequences per microbatch.
const Run& reference(const std::string& family, int layers, int dp, int microbatches, bool shuffle = false) {
  static std::map<std::tuple<std::string, int, int, int, bool>, Run> cache;
  auto key = std::make_tuple(family, layers, dp, microbatches, shuffle);
  auto it = cache.find(key);
  if (it == cache.end())
    it = cache.emplace(key, train(small_config(layers, family), nullptr, kB * dp, microbatches, 0, 1, Recompute::none, shuffle)).first;
  return it->second;
}

void check_family(const Layout& l) {
  Communicator& w = world();
  INFO(l.describe());
  if (w.size() != l.ranks()) {
    WARN("skipped: " << l.describe() << " needs " << l.ranks() << " ranks, launched with " << w.size());
    return;
  }
  ParallelLayout layout;
  layout.tp = l.tp;
  layout.pp = l.pp;
  layout.dp = l.dp;
  layout.sequence_parallel = l.sp;
  layout.zero_stage = l.zero;
  layout.schedule = l.schedule;
  layout.virtual_stages = l.virtual_stages;
  layout.microbatches = l.microbatches;
  ProcessGrid grid(w, layout);

  const Run& ref = reference(l.family, l.layers, l.dp, l.microbatches, l.shuffle);
  const Run got = train(small_config(l.layers, l.family), &grid, kB, l.microbatches, grid.dp_rank(), l.dp, l.recompute, l.shuffle);
  REQUIRE(got.losses.size() == ref.losses.size());
  CHECK(ref.losses.back() < ref.losses.front() - 0.5f);  // the run learns something: the comparison means something
  double worst_loss = 0;
  for (size_t s = 0; s < ref.losses.size(); ++s)
    worst_loss = std::max(worst_loss, std::fabs(double(got.losses[s]) - ref.losses[s]) / std::fabs(ref.losses[s]));
  INFO("worst relative loss difference " << worst_loss);
  CHECK(worst_loss <= 1e-5);
  CHECK(std::fabs(double(got.val_loss) - ref.val_loss) <= 1e-5 * std::fabs(ref.val_loss));
  if (l.shuffle) return;  // see train(): the parameter bounds hold for the file-order stream

  // The schedule's simulated bubble is what the step reports.
  const PipelineSchedule schedule = make_schedule(l.schedule, l.pp, l.virtual_stages, l.microbatches);
  CHECK(got.bubble == Approx(simulate(schedule).bubble_fraction));
  if (l.pp > 1) CHECK(got.bubble > 0.0);
  // Activations for the microbatches in flight only: 1F1B keeps at most pp, GPipe all of them.
  if (l.schedule == ScheduleKind::one_f_one_b) CHECK(got.slots <= l.pp);
  if (l.schedule == ScheduleKind::gpipe) CHECK(got.slots == l.microbatches);
  CHECK(ref.slots == 1);  // one process, 1F1B over its microbatches: gradient accumulation

  // Parameters: Adam turns rounding noise in gradients that are (nearly) zero into updates of a
  // fixed size (its first step is lr * sign(g)), so a few elements follow the noise: c_attn's key
  // bias above all, whose gradient is exactly zero in exact arithmetic (softmax ignores a constant
  // added to every key). Hence two bounds: every element within 1e-5 relative to max(|value|, 1),
  // and all but a handful (< 0.5%) within 1e-5 relative to max(|value|, 0.01).
  REQUIRE(got.params.size() == ref.params.size());
  double worst_param = 0;
  std::string worst_name;
  size_t total = 0, loose = 0;
  for (const auto& [name, values] : ref.params) {
    auto found = got.params.find(name);
    REQUIRE(found != got.params.end());
    REQUIRE(found->second.size() == values.size());
    const double err = test::max_relative_error(found->second, values, 1.0);
    if (err > worst_param) {
      worst_param = err;
      worst_name = name;
    }
    for (size_t j = 0; j < values.size(); ++j)
      if (std::fabs(double(found->second[j]) - values[j]) > 1e-5 * std::max(1e-2, std::fabs(double(values[j]))))
        ++loose;
    total += values.size();
  }
  INFO("worst parameter difference " << worst_param << " in " << worst_name << "; " << loose << " of " << total
                                     << " elements differ by more than 1e-5 relative (floor 0.01)");
  CHECK(worst_param <= 1e-5);
  CHECK(double(loose) <= 5e-3 * double(total));
  if (w.rank() == 0)
    std::printf("equivalence %s: %.2f s (one process %.2f s), loss %.4f -> %.4f, worst loss difference %.2g, "
                "parameters %.2g (%zu of %zu over 1e-5 at floor 0.01), bubble %.3f\n",
                l.describe().c_str(), got.seconds, ref.seconds, got.losses.front(), got.losses.back(), worst_loss,
                worst_param, loose, total, got.bubble);
}

// Every family in the same layout, against its own one-process run.
void check_equivalence(const Layout& base) {
  for (const std::string& family : test::small_families()) {
    Layout l = base;
    l.family = family;
    check_family(l);
  }
}

void expect_config_error(const ModelConfig& config, const ParallelLayout& layout, int B, int T,
                         std::vector<std::string> words) {
  ProcessGrid grid(world(), layout);
  TrainerOptions o;
  o.batch_size = B;
  o.seq_len = T;
  ModelOptions mo;
  mo.precision = Precision::f32;
  mo.grid = &grid;
  try {
    Trainer trainer(test::cpu_context(), config, o, mo);
    FAIL("layout accepted: " << layout.describe());
  } catch (const Error& e) {
    INFO(e.what());
    CHECK(e.code() == ExitCode::bad_config);
    for (const std::string& word : words) CHECK_THAT(e.what(), Catch::Contains(word));
  }
}

}  // namespace

TEST_CASE("equivalence: tp2 without and with sequence parallelism (and full recomputation)", "[equivalence][eq-tp2]") {
  Layout l;
  l.tp = 2;
  check_equivalence(l);
  l.sp = true;
  l.recompute = Recompute::full;
  check_equivalence(l);
  // Two chunks on one pipeline rank: the interleaved order, activations passed locally.
  l.sp = false;
  l.recompute = Recompute::none;
  l.schedule = ScheduleKind::interleaved_1f1b;
  l.virtual_stages = 2;
  check_equivalence(l);
}

TEST_CASE("equivalence: Model::forward and logits_row on a tp2 grid match one process", "[equivalence][eq-tp2]") {
  Communicator& w = world();
  if (w.size() != 2) {
    WARN("skipped: needs 2 ranks, launched with " << w.size());
    return;
  }
  ParallelLayout layout;
  layout.tp = 2;
  ProcessGrid grid(w, layout);
  for (const std::string& family : test::small_families()) {
  INFO(family);
  const ModelConfig config = small_config(2, family);
  ModelOptions one;
  one.precision = Precision::f32;
  ModelOptions split = one;
  split.grid = &grid;
  std::unique_ptr<Model> reference_owner = make_model(test::cpu_context(), config, one);
  std::unique_ptr<Model> model_owner = make_model(test::cpu_context(), config, split);
  Model &reference = *reference_owner, &model = *model_owner;
  reference.init_weights(7);
  model.init_weights(7);
  CHECK(model.params().parameter_count() < reference.params().parameter_count());
  const auto tokens = test::random_ints(size_t(kB * kT), 1, 0, config.vocab_size);
  const auto targets = test::random_ints(size_t(kB * kT), 2, 0, config.vocab_size);
  const float expected = reference.forward(tokens.data(), targets.data(), kB, kT);
  const float loss = model.forward(tokens.data(), targets.data(), kB, kT);
  CHECK(loss == Approx(expected).epsilon(1e-6));
  std::vector<float> want(size_t(config.vocab_size)), got(size_t(config.vocab_size));
  for (int t : {0, 7, kT - 1}) {
    reference.logits_row(1, t, want.data());
    model.logits_row(1, t, got.data());  // gathers the row's vocabulary shards
    CHECK(test::max_relative_error(got, want, 1e-2) <= 1e-5);
  }
  }
}

TEST_CASE("equivalence: pp2 with each schedule", "[equivalence][eq-pp2]") {
  Layout l;
  l.pp = 2;
  l.microbatches = 4;
  l.schedule = ScheduleKind::gpipe;
  l.recompute = Recompute::full;  // several microbatches in flight share the recompute slot
  check_equivalence(l);
  l.recompute = Recompute::none;
  l.schedule = ScheduleKind::one_f_one_b;
  check_equivalence(l);
  l.schedule = ScheduleKind::interleaved_1f1b;
  l.virtual_stages = 2;
  check_equivalence(l);
}

TEST_CASE("equivalence: dp2", "[equivalence][eq-dp2]") {
  Layout l;
  l.dp = 2;
  check_equivalence(l);
}

TEST_CASE("equivalence: dp2 and tp2 on shuffled data give the one process's losses", "[equivalence][eq-dp2]") {
  Layout l;
  l.shuffle = true;
  l.dp = 2;
  check_equivalence(l);
  l.dp = 1;
  l.tp = 2;
  check_equivalence(l);
}

TEST_CASE("equivalence: tp2 pp2", "[equivalence][eq-tp2pp2]") {
  Layout l;
  l.tp = 2;
  l.pp = 2;
  l.microbatches = 4;
  check_equivalence(l);
  l.schedule = ScheduleKind::interleaved_1f1b;
  l.virtual_stages = 2;
  l.sp = true;
  check_equivalence(l);
}

TEST_CASE("equivalence: a Hugging Face import loads each rank's shards of a tp2 pp2 layout", "[equivalence][eq-tp2pp2]") {
  Communicator& w = world();
  if (w.size() != 4) {
    WARN("skipped: needs 4 ranks, launched with " << w.size());
    return;
  }
  for (const std::string& family : test::small_families()) {
  INFO(family);
  const ModelConfig config = small_config(4, family);
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("tessera_equivalence_hf_" + std::to_string(::getpid()) + "_" + std::to_string(w.rank())))
                              .string();
  ModelOptions mo;
  mo.precision = Precision::f32;
  std::map<std::string, std::vector<float>> expected;
  {
    TrainerOptions o;
    o.batch_size = kB;
    o.seq_len = kT;
    o.seed = 99;
    Trainer one(test::cpu_context(), config, o, mo);
    export_hf(one.model(), dir);
    expected = one.gather_parameters();
  }
  ParallelLayout layout;
  layout.tp = 2;
  layout.pp = 2;
  ProcessGrid grid(w, layout);
  mo.grid = &grid;
  TrainerOptions o;
  o.batch_size = kB;
  o.seq_len = kT;
  o.seed = 1;  // other weights, replaced by the import
  Trainer split(test::cpu_context(), config, o, mo);
  CHECK_THROWS_AS(export_hf(split.model(), dir + "_refused"), Error);
  import_hf(split.model(), dir);
  CHECK(split.gather_parameters() == expected);
  std::filesystem::remove_all(dir);
  }
}

TEST_CASE("equivalence: tp2 dp2", "[equivalence][eq-tp2dp2]") {
  Layout l;
  l.tp = 2;
  l.dp = 2;
  check_equivalence(l);
}

TEST_CASE("equivalence: pp2 dp2", "[equivalence][eq-pp2dp2]") {
  Layout l;
  l.pp = 2;
  l.dp = 2;
  l.microbatches = 4;
  check_equivalence(l);
}

TEST_CASE("equivalence: pp4 interleaved", "[equivalence][eq-pp4]") {
  Layout l;
  l.pp = 4;
  l.microbatches = 4;
  l.schedule = ScheduleKind::interleaved_1f1b;
  l.virtual_stages = 2;
  l.layers = 8;  // one layer per model chunk
  check_equivalence(l);
}

TEST_CASE("equivalence: dp4 with ZeRO-1", "[equivalence][eq-dp4]") {
  Layout l;
  l.dp = 4;
  l.zero = 1;
  check_equivalence(l);
}

TEST_CASE("equivalence: tp2 pp2 dp2 with sequence parallelism and ZeRO-1", "[equivalence][eq-tp2pp2dp2]") {
  Layout l;
  l.tp = 2;
  l.pp = 2;
  l.dp = 2;
  l.microbatches = 4;
  l.sp = true;
  l.zero = 1;
  check_equivalence(l);
  l.sp = false;
  l.zero = 0;
  l.schedule = ScheduleKind::interleaved_1f1b;
  l.virtual_stages = 2;
  check_equivalence(l);
}

TEST_CASE("equivalence: layouts the model does not split into are refused before any work", "[equivalence][eq-errors]") {
  if (world().size() != 2) {
    WARN("skipped: needs 2 ranks, launched with " << world().size());
    return;
  }
  ParallelLayout tp2;
  tp2.tp = 2;
  // 3 heads over 2 ranks.
  expect_config_error(ModelConfig::gpt2(4, 3, 24, 257, kT), tp2, kB, kT, {"--tp", "heads"});
  // A padded vocabulary of 259 rows over 2 ranks.
  ModelConfig odd_vocab = small_config(4);
  odd_vocab.padded_vocab_size = 259;
  expect_config_error(odd_vocab, tp2, kB, kT, {"--tp", "vocabulary"});
  // 2 stages x 2 virtual stages = 4 model chunks for 2 layers.
  ParallelLayout pp2;
  pp2.pp = 2;
  pp2.schedule = ScheduleKind::interleaved_1f1b;
  pp2.virtual_stages = 2;
  pp2.microbatches = 2;
  expect_config_error(small_config(2), pp2, kB, kT, {"--pp", "--virtual-stages", "layers"});
  // One key/value head over 2 ranks (key/value heads are split, not replicated).
  expect_config_error(ModelConfig::llama(2, 4, 1, 32, 64, 257, kT), tp2, kB, kT, {"--tp", "key/value heads"});
  // Sequence parallelism over 2 ranks with 1 x 15 positions.
  ParallelLayout sp = tp2;
  sp.sequence_parallel = true;
  expect_config_error(small_config(4), sp, 1, 15, {"--tp", "--sp"});
}
