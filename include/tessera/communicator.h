// Communicator: collectives and point-to-point transfers over a group of ranks, with two backends
// behind one interface: NCCL for GPU tensors, MPI for CPU tensors (and for GPU tensors staged
// through pinned host memory, since NCCL refuses two ranks on one GPU).
//
// Every operation is asynchronous and returns a Work; its result is ready once wait() returns
// (for NCCL: once wait() has made the context's compute stream wait for the communication).
// Reductions on the MPI backend sum in a fixed rank order, so every rank gets bitwise the same
// result, run after run.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tessera/context.h"
#include "tessera/tensor.h"

namespace tessera {

enum class ReduceOp { sum, avg, max };

// A pending operation. Move-only; waiting twice is harmless; destroying an unwaited Work waits.
class Work {
 public:
  Work() = default;
  explicit Work(std::function<void()> wait_fn, std::function<bool()> test_fn = {});
  Work(Work&&) noexcept;
  Work& operator=(Work&&) noexcept;
  Work(const Work&) = delete;
  Work& operator=(const Work&) = delete;
  ~Work();

  void wait();
  // True once waited, or (NCCL) once the GPU has finished it. Polling also drives the MPI
  // backend's progress, which helps overlap communication with computation.
  bool is_completed();

 private:
  std::function<void()> wait_;
  std::function<bool()> test_;
  bool done_ = true;
};

struct PeerTransfer {
  enum class Kind { send, recv } kind;
  Tensor tensor;
  int peer;  // rank within this communicator
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* backend() const = 0;
  // A name for the group in flight records and watchdog sections ("tp", "dp", ...); only watched
  // communicators (watched_communicator.h) keep it.
  virtual void set_label(const std::string& label) {}
  virtual std::string label() const { return ""; }

  // In place over `data` (f32).
  virtual Work all_reduce(Tensor data, ReduceOp op) = 0;
  // input holds size() equal chunks of output's length; rank r receives the reduction of chunk r (f32).
  // output may be input's chunk rank() (in place).
  virtual Work reduce_scatter(Tensor output, Tensor input, ReduceOp op) = 0;
  // output holds size() chunks of input's length, chunk r from rank r (any dtype). input may be
  // output's chunk rank() (in place).
  virtual Work all_gather(Tensor output, Tensor input) = 0;
  // data on every rank becomes root's (any dtype).
  virtual Work broadcast(Tensor data, int root) = 0;
  // A batch of sends and receives, started together (one NCCL group): pairs posted in any order
  // on the two sides do not deadlock.
  virtual Work exchange(const std::vector<PeerTransfer>& transfers) = 0;
  virtual void barrier() = 0;

  // Ranks passing the same color form a new communicator, ordered by key (then by old rank).
  // A negative color joins no group and gets null. Collective over this communicator.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;

  // Tears the communicator down without waiting for peers (failure handling); afterwards every
  // operation fails.
  virtual void abort() = 0;
};

// Where this process sits in the job, read from Open MPI, Slurm or torchrun variables.
struct LaunchInfo {
  int rank = 0, world_size = 1, local_rank = 0, local_size = 1;
  std::string source;  // "open-mpi", "slurm", "torchrun" or "single"
};
LaunchInfo detect_launch();

// Initialises MPI (thread level: funneled) for the life of the object, once per process.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  int rank() const { return rank_; }
  int world_size() const { return world_size_; }

 private:
  int rank_ = 0, world_size_ = 1;
  bool owns_ = false;
};

// A communicator over all ranks of MPI_COMM_WORLD, MPI backend. Tensors may live on the CPU or,
// staged through pinned host memory, on the context's GPU.
std::unique_ptr<Communicator> make_mpi_communicator(Context& ctx);
// The NCCL backend over all ranks (the unique id travels over MPI). Throws config_error when
// this build or this context has no GPU.
std::unique_ptr<Communicator> make_nccl_communicator(Context& ctx);

// A group of this process alone (no MPI needed): reductions leave the data as it is, gathers and
// scatters copy, and a transfer to any peer is an error. What one process trains with.
std::unique_ptr<Communicator> make_self_communicator(Context& ctx);

// Chooses NCCL when the context is on a GPU and every rank has a GPU of its own, MPI otherwise.
std::unique_ptr<Communicator> make_communicator(Context& ctx);

}  // namespace tessera
