// tessera-calibrate: measure this machine for the planner.
//   mpirun -np N tessera-calibrate [--model tiny] [--batch-size 8 --seq-len 128] --out calibration.json
// Every rank (cores / ranks threads each, as tessera-train) times the Trainer's kernels at the model's
// shapes (matmuls, attention, norms, element-wise, cross-entropy, AdamW) and the Communicator's
// collectives at a few sizes, all ranks at once; rank 0 writes the calibration file that
// `tessera-plan --calibration FILE --predict-layout ...` reads.
#include <cstdio>
#include <fstream>

#include "common/flags.h"
#include "tessera/calibration.h"
#include "tessera/tessera.h"

namespace tessera::program {
namespace {

int body(int argc, char** argv) {
  MpiSession mpi(&argc, &argv);
  std::string model = "tiny", out = "calibration.json";
  int batch_size = 8, seq_len = 128, threads = 0, reps = 7;
  FlagParser p("tessera-calibrate", "mpirun -np N tessera-calibrate --model tiny --batch-size 8 --seq-len 128 --out FILE");
  p.add("model", &model, "GPT-2 preset whose kernel shapes are measured");
  p.add("batch-size", &batch_size, "sequences per microbatch (as tessera-bench-training / tessera-train)");
  p.add("seq-len", &seq_len, "tokens per sequence");
  p.add("threads", &threads, "CPU threads per rank (0: cores / ranks per node, as the trainer)");
  p.add("reps", &reps, "timed repetitions per sample (the median counts)");
  p.add("out", &out, "calibration file to write (rank 0)");
  if (!p.parse(argc, argv)) return 0;
  if (reps < 1 || batch_size < 1 || seq_len < 1) throw config_error("--reps, --batch-size and --seq-len must be positive");

  LaunchInfo launch = detect_launch();
  ContextOptions options;
  options.device = DevicePreference::cpu;
  options.local_rank = launch.local_rank;
  options.local_size = launch.local_size;
  options.cpu_threads = threads;
  options.announce = mpi.rank() == 0;
  Context ctx(options);
  std::unique_ptr<Communicator> world = make_communicator(ctx);
  const ModelConfig config = ModelConfig::preset(model);
  if (seq_len > config.max_seq_len) throw config_error("--seq-len exceeds the model's context");

  plan::CalibrateOptions o;
  o.reps = reps;
  plan::Calibration cal = plan::measure_calibration(ctx, *world, config, batch_size, seq_len, o);
  cal.model = model;
  if (mpi.rank() == 0) {
    std::ofstream f(out, std::ios::binary);
    if (!f) throw config_error("cannot write '" + out + "'", "check --out");
    f << cal.to_json() << "\n";
    std::printf("calibration: %d ranks x %d threads (%s), %zu kernel and %zu collective samples -> %s\n", cal.ranks,
                cal.threads, cal.device.c_str(), cal.ops.size(), cal.collectives.size(), out.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace tessera::program

int main(int argc, char** argv) {
  return tessera::program::run_program("tessera-calibrate", [&] { return tessera::program::body(argc, argv); });
}
