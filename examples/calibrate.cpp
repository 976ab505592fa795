// tessera-calibrate: measure this machine for the planner.
//   mpirun -np N tessera-calibrate [--model tiny] [--batch-size 8 --seq-len 128] --out calibration.json
// Every rank (cores / ranks threads each, as tessera-train) times the Trainer's kernels at the model's
// shapes (matmuls, attention, norms, element-wise, cross-entropy, AdamW) and the Communicator's
// collectives at a few sizes, all ranks at once; rank 0 writes the calibration file that
// `tessera-plan --calibration FILE --predict-layout ...` reads.
//   [mpirun -np 8] tessera-calibrate --card [--device auto|cpu|cuda] [--quick] --out card.json
// measures the device itself (card_calibration.h: bf16 GEMMs at a few shapes, copy bandwidth, fused
// attention, and with several ranks the collectives' bus bandwidth) for
// `tessera-plan --card-calibration card.json`.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>

#include "common/flags.h"
#include "common/output_checks.h"
#include "tessera/calibration.h"
#include "tessera/card_calibration.h"
#include "tessera/host_collectives.h"
#include "tessera/tessera.h"

namespace tessera::program {
namespace {

DevicePreference parse_device(const std::string& s) {
  if (s == "auto") return DevicePreference::automatic;
  if (s == "cpu") return DevicePreference::cpu;
  if (s == "cuda" || s == "gpu") return DevicePreference::cuda;
  throw config_error("unknown --device '" + s + "'", "use --device auto, cpu or cuda");
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  if (!f) throw config_error("cannot write '" + path + "'", "check --out");
  f << text << "\n";
  if (!f.flush()) throw config_error("could not finish writing '" + path + "'", "check the disk and --out");
}

// --card: the device's own rates, for tessera-plan --card-calibration.
int card(MpiSession& mpi, const LaunchInfo& launch, const std::string& device, bool quick, int reps, const std::string& out) {
  ContextOptions options;
  options.device = parse_device(device);
  options.local_rank = launch.local_rank;
  options.local_size = launch.local_size;
  options.announce = mpi.rank() == 0;
  Context ctx(options);
  std::unique_ptr<Communicator> world = make_communicator(ctx);
  plan::CardMeasureOptions o;
  o.reps = reps, o.quick = quick;
  const plan::CardCalibration cal = plan::measure_card(ctx, world->size() > 1 ? world.get() : nullptr, o);
  if (mpi.rank() == 0) {
    write_file(out, cal.to_json());
    std::printf("card calibration: %s (%s), %zu GEMM, %zu attention and %zu collective samples, copy %.0f GB/s -> %s\n",
                cal.card.c_str(), cal.device.c_str(), cal.gemm.size(), cal.attention.size(), cal.collectives.size(),
                cal.hbm_gbps, out.c_str());
    for (const plan::CardGemm& g : cal.gemm)
      std::printf("  gemm %lld x %lld x %lld %s: %.2f TFLOP/s\n", (long long)g.m, (long long)g.n, (long long)g.k, g.dtype.c_str(),
                  g.tflops);
  }
  return 0;
}

// The ratio of a real step to this calibration's prediction of it (Calibration::step_scale): every
// rank trains its own one-rank replica at once (the ranks contend for the machine as the kernel
// samples did), timing `steps` steps after two of warm-up; the median, averaged over the ranks.
double measure_step_scale(Context& ctx, Communicator& world, const ModelConfig& config, const plan::Calibration& cal,
                          int steps) {
  std::unique_ptr<Communicator> alone = world.split(world.rank(), 0);
  ProcessGrid grid(*alone, ParallelLayout{});
  ModelOptions model_options;
  model_options.grid = &grid;
  model_options.precision = Precision::f32;
  TrainerOptions trainer_options;
  trainer_options.batch_size = cal.batch_size;
  trainer_options.seq_len = cal.seq_len;
  trainer_options.seed = 1;
  Trainer trainer(ctx, config, trainer_options, model_options);
  std::mt19937_64 rng(uint64_t(99 + world.rank()));
  std::uniform_int_distribution<int32_t> token(0, config.vocab_size - 1);
  std::vector<int32_t> tokens(size_t(cal.batch_size) * size_t(cal.seq_len)), targets(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = token(rng), targets[i] = token(rng);
  const std::vector<const int32_t*> token_ptrs = {tokens.data()}, target_ptrs = {targets.data()};
  std::vector<double> times;
  for (int s = 0; s < 2 + steps; ++s) {
    world.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    trainer.step(token_ptrs, target_ptrs, 1e-4f);
    ctx.synchronize();
    if (s >= 2) times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  std::vector<float> median = {float(times[times.size() / 2])};
  host_all_reduce(ctx, world, median, ReduceOp::avg);
  const double measured = median[0];
  plan::TrainerLayout one;
  one.batch_size = cal.batch_size, one.seq_len = cal.seq_len;
  plan::Calibration samples_only = cal;
  samples_only.step_scale = 1;  // the prediction from the samples alone
  const double predicted = plan::predict_trainer_step(config, samples_only, one).step_time;
  if (world.rank() == 0)
    std::printf("calibration: a one-rank step on every rank at once: %.2f ms, %.2f ms from its kernels' samples\n",
                measured * 1e3, predicted * 1e3);
  return measured / predicted;
}

int body(int argc, char** argv) {
  MpiSession mpi(&argc, &argv);
  std::string model = "tiny", out = "calibration.json", device = "auto";
  bool card_mode = false, quick = false;
  int batch_size = 8, seq_len = 128, threads = 0, reps = 7;
  FlagParser p("tessera-calibrate", "mpirun -np N tessera-calibrate --model tiny --batch-size 8 --seq-len 128 --out FILE");
  p.add("model", &model, "GPT-2 preset whose kernel shapes are measured");
  p.add("batch-size", &batch_size, "sequences per microbatch (as tessera-bench-training / tessera-train)").at_least(1);
  p.add("seq-len", &seq_len, "tokens per sequence").at_least(1);
  p.add("threads", &threads, "CPU threads per rank (0: cores / ranks per node, as the trainer)").at_least(0);
  p.add("reps", &reps, "timed repetitions per sample (the median counts)").at_least(1);
  p.add("out", &out, "calibration file to write (rank 0; card.json with --card)");
  p.section("card (the device's own rates, for tessera-plan --card-calibration)");
  p.add("card", &card_mode, "measure the device: GEMMs, copy bandwidth, attention, collectives (with several ranks)");
  p.add("device", &device, "with --card: auto (a GPU if there is one), cpu or cuda");
  p.add("quick", &quick, "with --card: small shapes (a smoke run, not the device's sustained rates)");
  if (!p.parse(argc, argv)) return 0;
  if (!p.positional().empty()) throw config_error("unexpected argument '" + p.positional()[0] + "'", "see --help");
  if (!card_mode && (p.given("device") || quick)) throw config_error("--device and --quick go with --card", "add --card");
  if (card_mode && !p.given("out")) out = "card.json";
  if (mpi.rank() == 0) check_output_file("--out", out);  // before minutes of measuring

  LaunchInfo launch = detect_launch();
  if (card_mode) return card(mpi, launch, device, quick, reps, out);
  ContextOptions options;
  options.device = DevicePreference::cpu;
  options.local_rank = launch.local_rank;
  options.local_size = launch.local_size;
  options.cpu_threads = threads;
  options.announce = mpi.rank() == 0;
  Context ctx(options);
  std::unique_ptr<Communicator> world = make_communicator(ctx);
  const ModelConfig config = parse_flag_value("model", model, ModelConfig::preset);
  if (seq_len > config.max_seq_len)
    throw config_error("--seq-len " + std::to_string(seq_len) + " exceeds the model's context of " +
                       std::to_string(config.max_seq_len) + " tokens");

  plan::CalibrateOptions o;
  o.reps = reps;
  plan::Calibration cal = plan::measure_calibration(ctx, *world, config, batch_size, seq_len, o);
  cal.model = model;
  cal.step_scale = measure_step_scale(ctx, *world, config, cal, reps);
  if (mpi.rank() == 0) {
    write_file(out, cal.to_json());
    std::printf("calibration: %d ranks x %d threads (%s), %zu kernel and %zu collective samples, a step's kernels "
                "%.2fx their back-to-back times -> %s\n", cal.ranks, cal.threads, cal.device.c_str(), cal.ops.size(),
                cal.collectives.size(), cal.step_scale, out.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace tessera::program

int main(int argc, char** argv) {
  return tessera::program::run_program("tessera-calibrate", [&] { return tessera::program::body(argc, argv); });
}
