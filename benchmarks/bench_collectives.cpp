// tessera-bench-collectives: nccl-tests-style bandwidth of tessera's Communicator.
//   mpirun -np N tessera-bench-collectives [-b 8 -e 64M -f 2 -n 20 -w 5] [--op all_reduce|all_gather|reduce_scatter|sendrecv|all]
// Columns as nccl-tests: size (bytes) count type redop | time (us) algbw busbw (GB/s) #wrong.
// size is the larger buffer of the operation (nccl-tests' convention); algbw = size / time;
// busbw = algbw x factor: all-reduce 2(n-1)/n, reduce-scatter and all-gather (n-1)/n, send/recv 1.
// Every row checks its data after the timed iterations (#wrong counts mismatching elements).
#include <mpi.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "common/flags.h"
#include "common/output_checks.h"
#include "tessera/tessera.h"
#include "tessera/communicator.h"

namespace tessera::program {
namespace {

int64_t parse_size(const std::string& s) {
  if (s.empty()) throw config_error("empty size");
  char unit = s.back();
  int64_t mult = 1;
  std::string digits = s;
  if (unit == 'K' || unit == 'k') mult = 1 << 10;
  if (unit == 'M' || unit == 'm') mult = 1 << 20;
  if (unit == 'G' || unit == 'g') mult = int64_t(1) << 30;
  if (mult != 1) digits.pop_back();
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(digits.c_str(), &end, 10);
  if (digits.empty() || *end != '\0' || errno == ERANGE || v <= 0 || v > (int64_t(1) << 50) / mult)
    throw config_error("size '" + s + "' is not a number of bytes from 1 to 1024T (K, M, G allowed)");
  return v * mult;
}

struct Row {
  std::string op;
  int64_t bytes, count;
  double time_us, algbw, busbw;
  int64_t wrong;
};

// Fills a host vector with values only rank r would have: small integers, so sums are exact.
std::vector<float> pattern(int rank, int64_t n, int salt) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = float((i * 7 + rank * 13 + salt) % 17 + 1);
  return v;
}

class Bench {
 public:
  Bench(Context& ctx, Communicator& comm, int iters, int warmup) : ctx_(ctx), comm_(comm), iters_(iters), warmup_(warmup) {}

  Row run(const std::string& op, int64_t bytes) {
    const int n = comm_.size();
    const int64_t count = std::max<int64_t>(1, bytes / 4 / (op == "all_reduce" || op == "sendrecv" ? 1 : n));
    const int64_t big = (op == "all_reduce" || op == "sendrecv") ? count : count * n;
    Buffer a(ctx_, size_t(big) * 4, ctx_.device()), b(ctx_, size_t(big) * 4, ctx_.device());
    Tensor ta(a.data(), {big}, DType::f32, ctx_.device()), tb(b.data(), {big}, DType::f32, ctx_.device());
    auto fill = [&] {
      std::vector<float> v = pattern(comm_.rank(), big, 1);
      copy_tensor(ctx_, ta, Tensor(v.data(), {big}, DType::f32, Device::cpu));
    };
    auto once = [&] {
      if (op == "all_reduce") {
        comm_.all_reduce(ta, ReduceOp::sum).wait();
      } else if (op == "all_gather") {
        comm_.all_gather(tb, ta.flat_range(0, count)).wait();
      } else if (op == "reduce_scatter") {
        comm_.reduce_scatter(tb.flat_range(0, count), ta, ReduceOp::sum).wait();
      } else {
        int next = (comm_.rank() + 1) % n, prev = (comm_.rank() + n - 1) % n;
        comm_.exchange({{PeerTransfer::Kind::send, ta, next}, {PeerTransfer::Kind::recv, tb, prev}}).wait();
      }
    };
    fill();
    for (int i = 0; i < warmup_; ++i) once();
    ctx_.synchronize();
    comm_.barrier();
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters_; ++i) once();
    ctx_.synchronize();
    double local = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters_;
    double seconds = 0;
    MPI_Allreduce(&local, &seconds, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);

    // Data check: one more run from fresh inputs, compared with what every rank can compute.
    fill();
    once();
    ctx_.synchronize();
    int64_t wrong = check(op, ta, tb, count);
    int64_t total_wrong = 0;
    MPI_Allreduce(&wrong, &total_wrong, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);

    const int64_t size_bytes = big * 4;
    double algbw = double(size_bytes) / seconds / 1e9;
    double factor = op == "all_reduce" ? 2.0 * (n - 1) / n : op == "sendrecv" ? 1.0 : double(n - 1) / n;
    return Row{op, size_bytes, big, seconds * 1e6, algbw, algbw * factor, total_wrong};
  }

 private:
  int64_t check(const std::string& op, const Tensor& ta, const Tensor& tb, int64_t count) {
    const int n = comm_.size();
    std::vector<float> want;
    std::vector<float> got;
    auto download = [&](const Tensor& t, int64_t len) {
      std::vector<float> h(static_cast<size_t>(len));
      copy_tensor(ctx_, Tensor(h.data(), {len}, DType::f32, Device::cpu), t.flat_range(0, len));
      return h;
    };
    if (op == "all_reduce") {
      // The warm-up and timed runs summed in place before the fresh fill; this run sums once.
      want.assign(size_t(ta.numel()), 0.0f);
      for (int r = 0; r < n; ++r) {
        auto p = pattern(r, ta.numel(), 1);
        for (size_t i = 0; i < want.size(); ++i) want[i] += p[i];
      }
      got = download(ta, ta.numel());
    } else if (op == "all_gather") {
      for (int r = 0; r < n; ++r) {
        auto p = pattern(r, ta.numel(), 1);
        want.insert(want.end(), p.begin(), p.begin() + count);
      }
      got = download(tb, count * n);
    } else if (op == "reduce_scatter") {
      want.assign(size_t(count), 0.0f);
      for (int r = 0; r < n; ++r) {
        auto p = pattern(r, ta.numel(), 1);
        for (int64_t i = 0; i < count; ++i) want[size_t(i)] += p[size_t(comm_.rank() * count + i)];
      }
      got = download(tb, count);
    } else {
      want = pattern((comm_.rank() + n - 1) % n, ta.numel(), 1);
      got = download(tb, ta.numel());
    }
    int64_t wrong = 0;
    for (size_t i = 0; i < want.size(); ++i) wrong += got[i] == want[i] ? 0 : 1;
    return wrong;
  }

  Context& ctx_;
  Communicator& comm_;
  int iters_, warmup_;
};

int bench(int argc, char** argv) {
  MpiSession mpi(&argc, &argv);
  std::string min_bytes = "8", max_bytes = "8M", op = "all", backend = "auto", json, device = "auto";
  int factor = 2, iters = 20, warmup = 5;
  FlagParser p("tessera-bench-collectives", "mpirun -np N tessera-bench-collectives [flags]");
  p.add("b", &min_bytes, "smallest size in bytes (K, M, G suffixes)");
  p.add("e", &max_bytes, "largest size in bytes");
  p.add("f", &factor, "size multiplication factor between rows").at_least(2);
  p.add("n", &iters, "timed iterations per size").at_least(1);
  p.add("w", &warmup, "warm-up iterations per size").at_least(0);
  p.add("op", &op, "collective").one_of({"all_reduce", "all_gather", "reduce_scatter", "sendrecv", "all"});
  p.add("backend", &backend, "auto: NCCL when every rank has its own GPU").one_of({"auto", "mpi", "nccl"});
  p.add("device", &device, "where the buffers live").one_of({"auto", "cpu", "cuda"});
  p.add("json", &json, "also write the rows as JSON lines to this file (rank 0)");
  if (!p.parse(argc, argv)) return 0;
  if (!p.positional().empty()) throw config_error("unexpected argument '" + p.positional()[0] + "'", "see --help");
  const int64_t min_size = parse_size(min_bytes), max_size = parse_size(max_bytes);
  if (min_size > max_size)
    throw config_error("-b " + min_bytes + " is larger than -e " + max_bytes, "the sizes run from -b up to -e");
  if (mpi.rank() == 0 && !json.empty()) check_output_file("--json", json);

  LaunchInfo launch = detect_launch();
  ContextOptions options;
  options.device = device == "cpu" ? DevicePreference::cpu : device == "cuda" ? DevicePreference::cuda
                                                                               : DevicePreference::automatic;
  options.local_rank = launch.local_rank;
  options.local_size = launch.local_size;
  options.announce = mpi.rank() == 0;
  Context ctx(options);
  std::unique_ptr<Communicator> comm = backend == "mpi"    ? make_mpi_communicator(ctx)
                                       : backend == "nccl" ? make_nccl_communicator(ctx)
                                                           : make_communicator(ctx);
  std::vector<std::string> ops =
      op == "all" ? std::vector<std::string>{"all_reduce", "all_gather", "reduce_scatter", "sendrecv"}
                  : std::vector<std::string>{op};
  for (const auto& o : ops)
    if (o != "all_reduce" && o != "all_gather" && o != "reduce_scatter" && o != "sendrecv")
      throw config_error("unknown --op '" + o + "'");

  MetricsLog log = (mpi.rank() == 0 && !json.empty()) ? MetricsLog(json) : MetricsLog();
  Bench b(ctx, *comm, iters, warmup);
  bool all_right = true;
  if (mpi.rank() == 0)
    std::printf("# tessera collectives: %d ranks, backend %s, device %s\n", comm->size(), comm->backend(),
                ctx.device_description().c_str());
  for (const auto& o : ops) {
    if (mpi.rank() == 0) {
      std::printf("#\n# %s\n", o.c_str());
      std::printf("# %12s %12s %6s %6s   %10s %8s %8s %7s\n", "size", "count", "type", "redop", "time(us)",
                  "algbw", "busbw", "#wrong");
    }
    for (int64_t bytes = min_size; bytes <= max_size; bytes = bytes > max_size / factor ? max_size + 1 : bytes * factor) {
      Row r = b.run(o, bytes);
      all_right = all_right && r.wrong == 0;
      if (mpi.rank() == 0) {
        std::printf("  %12lld %12lld %6s %6s   %10.1f %8.3f %8.3f %7lld\n", static_cast<long long>(r.bytes),
                    static_cast<long long>(r.count), "float", o == "all_gather" || o == "sendrecv" ? "none" : "sum",
                    r.time_us, r.algbw, r.busbw, static_cast<long long>(r.wrong));
        log.write(MetricsRecord("collective")
                      .add("op", o)
                      .add("backend", std::string(comm->backend()))
                      .add("ranks", comm->size())
                      .add("bytes", r.bytes)
                      .add("time_us", r.time_us)
                      .add("algbw_gbps", r.algbw)
                      .add("busbw_gbps", r.busbw)
                      .add("wrong", r.wrong));
      }
    }
  }
  std::fflush(stdout);
  return all_right ? 0 : 2;
}

}  // namespace
}  // namespace tessera::program

int main(int argc, char** argv) {
  return tessera::program::run_program("tessera-bench-collectives",
                                       [&] { return tessera::program::bench(argc, argv); });
}
