// MPI backend. Reductions are done by tessera, not by MPI: every rank receives all ranks' copies of
// its chunk (all-to-all), sums them in rank order, and the chunks are gathered back. The result is
// bitwise the same on every rank and in every run, whatever MPI's algorithm choice.
// GPU tensors are staged through host memory (NCCL cannot run two ranks on one GPU; this can).
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "parallel/mpi_check.h"
#include "tessera/buffer.h"
#include "tessera/communicator.h"

namespace tessera {

namespace {

int checked_count(int64_t count, const char* what) {
  if (count > INT_MAX)
    throw config_error(std::string(what) + " of " + std::to_string(count) + " elements exceeds MPI's int count",
                       "use smaller buckets");
  return int(count);
}

// Host staging memory, reused across operations: allocating and first-touching fresh buffers on
// every collective cost more than the collective itself. Page-locked on a GPU context, so that the
// copies between the GPU and MPI's buffers are direct DMA. A buffer goes back to the pool when the
// last Work holding it is done; the pool outlives its communicator if a Work does.
class StagingPool : public std::enable_shared_from_this<StagingPool> {
 public:
  explicit StagingPool(Context& ctx) : ctx_(ctx) {}

  std::shared_ptr<Buffer> take(size_t bytes) {
    std::unique_ptr<Buffer> buffer;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      // Smallest free buffer that fits.
      size_t best = free_.size();
      for (size_t i = 0; i < free_.size(); ++i)
        if (free_[i]->bytes() >= bytes && (best == free_.size() || free_[i]->bytes() < free_[best]->bytes())) best = i;
      if (best != free_.size()) {
        buffer = std::move(free_[best]);
        free_.erase(free_.begin() + std::ptrdiff_t(best));
      }
    }
    if (!buffer) buffer = std::make_unique<Buffer>(Buffer::pinned_host(ctx_, bytes));
    std::weak_ptr<StagingPool> pool = weak_from_this();
    return std::shared_ptr<Buffer>(buffer.release(), [pool](Buffer* b) {
      if (auto p = pool.lock()) {
        std::lock_guard<std::mutex> lock(p->mutex_);
        if (p->free_.size() < kMaxFree) {
          p->free_.emplace_back(b);
          return;
        }
      }
      delete b;
    });
  }

 private:
  static constexpr size_t kMaxFree = 16;
  Context& ctx_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<Buffer>> free_;
};

// A host-side copy of a tensor for MPI to read or write; the tensor itself when already on the host.
struct HostStage {
  std::shared_ptr<Buffer> buffer;
  Tensor host;
  Tensor original;
};

HostStage stage(Context& ctx, StagingPool& pool, const Tensor& t, bool copy_in) {
  HostStage s;
  s.original = t;
  if (t.device == Device::cpu) {
    s.host = t;
    return s;
  }
  s.buffer = pool.take(t.nbytes());
  s.host = t;
  s.host.data = s.buffer->data();
  s.host.device = Device::cpu;
  if (copy_in) copy_tensor(ctx, s.host, t);
  return s;
}

void unstage(Context& ctx, const HostStage& s) {
  if (s.original.device != Device::cpu) copy_tensor(ctx, s.original, s.host);
}

// Below this many elements a reduction runs on the calling thread: waking a thread team costs
// more than it saves, and idle team threads spinning beside busy-polling MPI ranks on a shared
// node slow every collective down.
constexpr int64_t kParallelReduceElements = int64_t(1) << 16;

// out[i] = reduction over r of chunks[r * n + i], r ascending; sums divided by `ranks` for averages.
void reduce_in_rank_order(float* out, const float* chunks, int ranks, int64_t n, ReduceOp op) {
  if (op == ReduceOp::max) {
#pragma omp parallel for schedule(static) if (n >= kParallelReduceElements)
    for (int64_t i = 0; i < n; ++i) {
      float acc = chunks[i];
      for (int r = 1; r < ranks; ++r) acc = std::max(acc, chunks[int64_t(r) * n + i]);
      out[i] = acc;
    }
    return;
  }
  const float inv = 1.0f / float(ranks);
#pragma omp parallel for schedule(static) if (n >= kParallelReduceElements)
  for (int64_t i = 0; i < n; ++i) {
    float acc = chunks[i];
    for (int r = 1; r < ranks; ++r) acc += chunks[int64_t(r) * n + i];
    out[i] = op == ReduceOp::avg ? acc * inv : acc;
  }
}

// Reductions sum float32, whatever the tensor holds: bf16 is widened on the host before and
// rounded (to nearest even) after, as NCCL's bf16 reductions accumulate in float32 too.
void expect_float(const Tensor& t, const char* op) {
  if (t.dtype != DType::f32 && t.dtype != DType::bf16)
    throw config_error(std::string(op) + ": reductions take float32 or bfloat16 tensors, got " + t.shape_str());
}

// t's values (f32 or bf16, any device) as float32 at dst on the host.
void read_as_f32(Context& ctx, StagingPool& pool, const Tensor& t, float* dst) {
  const int64_t n = t.numel();
  if (t.dtype == DType::f32) {
    copy_tensor(ctx, Tensor(dst, {n}, DType::f32, Device::cpu), t);
    return;
  }
  auto raw = pool.take(size_t(n) * sizeof(bf16));
  copy_tensor(ctx, Tensor(raw->data(), {n}, DType::bf16, Device::cpu), t);
  const bf16* h = static_cast<const bf16*>(raw->data());
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(h[i]);
}

// Float32 values at src (host) into t (f32 or bf16, any device).
void write_from_f32(Context& ctx, StagingPool& pool, const float* src, const Tensor& t) {
  const int64_t n = t.numel();
  if (t.dtype == DType::f32) {
    copy_tensor(ctx, t, Tensor(const_cast<float*>(src), {n}, DType::f32, Device::cpu));
    return;
  }
  auto raw = pool.take(size_t(n) * sizeof(bf16));
  bf16* h = static_cast<bf16*>(raw->data());
  for (int64_t i = 0; i < n; ++i) h[i] = float_to_bf16(src[i]);
  copy_tensor(ctx, t, Tensor(raw->data(), {n}, DType::bf16, Device::cpu));
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(Context& ctx, MPI_Comm comm) : ctx_(ctx), comm_(comm), pool_(std::make_shared<StagingPool>(ctx)) {
    TESSERA_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    TESSERA_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    TESSERA_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!aborted_ && !finalized) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* backend() const override { return "mpi"; }

  Work all_reduce(Tensor data, ReduceOp op) override {
    expect_float(data, "all_reduce");
    const int64_t n = data.numel();
    const int64_t chunk = (n + size_ - 1) / size_;
    const int count = checked_count(chunk, "all_reduce chunk");
    auto send = pool_->take(size_t(chunk * size_) * 4);
    auto recv = pool_->take(size_t(chunk * size_) * 4);
    read_as_f32(ctx_, *pool_, data, static_cast<float*>(send->data()));
    std::memset(static_cast<float*>(send->data()) + n, 0, size_t(chunk * size_ - n) * 4);
    auto request = std::make_shared<MPI_Request>();
    TESSERA_MPI_CHECK(MPI_Ialltoall(send->data(), count, MPI_FLOAT, recv->data(), count, MPI_FLOAT, comm_,
                                    request.get()));
    return Work(
        [this, data, op, n, chunk, count, send, recv, request] {
          TESSERA_MPI_CHECK(MPI_Wait(request.get(), MPI_STATUS_IGNORE));
          float* mine = static_cast<float*>(send->data());  // the send buffer is free again: reuse it
          reduce_in_rank_order(mine, static_cast<const float*>(recv->data()), size_, chunk, op);
          TESSERA_MPI_CHECK(MPI_Allgather(mine, count, MPI_FLOAT, recv->data(), count, MPI_FLOAT, comm_));
          write_from_f32(ctx_, *pool_, static_cast<const float*>(recv->data()), data);
        },
        [request] {
          int flag = 0;
          MPI_Test(request.get(), &flag, MPI_STATUS_IGNORE);
          return false;  // the second phase still has to run in wait()
        });
  }

  Work reduce_scatter(Tensor output, Tensor input, ReduceOp op) override {
    expect_float(output, "reduce_scatter");
    expect_float(input, "reduce_scatter");
    const int64_t n = output.numel();
    if (input.numel() != n * size_ || input.dtype != output.dtype)
      throw config_error("reduce_scatter: input " + input.shape_str() + " is not " + std::to_string(size_) +
                         " chunks of output " + output.shape_str());
    const int count = checked_count(n, "reduce_scatter chunk");
    HostStage in;
    if (input.dtype == DType::f32) {
      in = stage(ctx_, *pool_, input, true);
    } else {
      in.buffer = pool_->take(size_t(n * size_) * 4);
      in.host = Tensor(in.buffer->data(), {n * size_}, DType::f32, Device::cpu);
      read_as_f32(ctx_, *pool_, input, in.host.ptr<float>());
    }
    auto recv = pool_->take(size_t(n * size_) * 4);
    auto request = std::make_shared<MPI_Request>();
    TESSERA_MPI_CHECK(MPI_Ialltoall(in.host.data, count, MPI_FLOAT, recv->data(), count, MPI_FLOAT, comm_,
                                    request.get()));
    return Work(
        [this, output, op, n, in, recv, request] {
          TESSERA_MPI_CHECK(MPI_Wait(request.get(), MPI_STATUS_IGNORE));
          if (output.dtype == DType::f32) {
            HostStage out = stage(ctx_, *pool_, output, false);
            reduce_in_rank_order(out.host.ptr<float>(), static_cast<const float*>(recv->data()), size_, n, op);
            unstage(ctx_, out);
            return;
          }
          auto sums = pool_->take(size_t(n) * 4);
          reduce_in_rank_order(static_cast<float*>(sums->data()), static_cast<const float*>(recv->data()), size_, n, op);
          write_from_f32(ctx_, *pool_, static_cast<const float*>(sums->data()), output);
        },
        [request] { return test(request.get()); });
  }

  Work all_gather(Tensor output, Tensor input) override {
    if (output.dtype != input.dtype || output.numel() != input.numel() * size_)
      throw config_error("all_gather: output " + output.shape_str() + " is not " + std::to_string(size_) +
                         " chunks of input " + input.shape_str());
    const int bytes = checked_count(int64_t(input.nbytes()), "all_gather bytes");
    // In place when the input already is this rank's chunk of the output (MPI_IN_PLACE): MPI
    // forbids overlapping send and receive buffers otherwise.
    const bool in_place = input.device == output.device &&
                          input.data == static_cast<char*>(output.data) + size_t(rank_) * input.nbytes();
    HostStage in = in_place ? HostStage{} : stage(ctx_, *pool_, input, true);
    HostStage out = stage(ctx_, *pool_, output, in_place);
    auto request = std::make_shared<MPI_Request>();
    TESSERA_MPI_CHECK(MPI_Iallgather(in_place ? MPI_IN_PLACE : in.host.data, bytes, MPI_BYTE, out.host.data, bytes,
                                     MPI_BYTE, comm_, request.get()));
    return Work(
        [this, in, out, request] {
          TESSERA_MPI_CHECK(MPI_Wait(request.get(), MPI_STATUS_IGNORE));
          unstage(ctx_, out);
        },
        [request] { return test(request.get()); });
  }

  Work broadcast(Tensor data, int root) override {
    if (root < 0 || root >= size_) throw config_error("broadcast: root " + std::to_string(root) + " out of range");
    const int bytes = checked_count(int64_t(data.nbytes()), "broadcast bytes");
    HostStage s = stage(ctx_, *pool_, data, rank_ == root);
    auto request = std::make_shared<MPI_Request>();
    TESSERA_MPI_CHECK(MPI_Ibcast(s.host.data, bytes, MPI_BYTE, root, comm_, request.get()));
    return Work(
        [this, s, request] {
          TESSERA_MPI_CHECK(MPI_Wait(request.get(), MPI_STATUS_IGNORE));
          unstage(ctx_, s);
        },
        [request] { return test(request.get()); });
  }

  Work exchange(const std::vector<PeerTransfer>& transfers) override {
    // Every transfer is checked before any is posted: a request posted and then abandoned by a
    // throw would later receive into freed memory, or take a message meant for the next exchange.
    for (const PeerTransfer& t : transfers) {
      if (t.peer < 0 || t.peer >= size_)
        throw config_error("exchange: peer " + std::to_string(t.peer) + " out of range (" + std::to_string(size_) +
                           " ranks)");
      checked_count(int64_t(t.tensor.nbytes()), "exchange bytes");
    }
    auto requests = std::make_shared<std::vector<MPI_Request>>(transfers.size());
    auto stages = std::make_shared<std::vector<HostStage>>();
    for (size_t i = 0; i < transfers.size(); ++i) {
      const PeerTransfer& t = transfers[i];
      const int bytes = int(t.tensor.nbytes());
      bool sending = t.kind == PeerTransfer::Kind::send;
      stages->push_back(stage(ctx_, *pool_, t.tensor, sending));
      void* host = stages->back().host.data;
      if (sending)
        TESSERA_MPI_CHECK(MPI_Isend(host, bytes, MPI_BYTE, t.peer, kPeerTag, comm_, &(*requests)[i]));
      else
        TESSERA_MPI_CHECK(MPI_Irecv(host, bytes, MPI_BYTE, t.peer, kPeerTag, comm_, &(*requests)[i]));
    }
    std::vector<bool> receives;
    for (const auto& t : transfers) receives.push_back(t.kind == PeerTransfer::Kind::recv);
    return Work(
        [this, requests, stages, receives] {
          TESSERA_MPI_CHECK(MPI_Waitall(int(requests->size()), requests->data(), MPI_STATUSES_IGNORE));
          for (size_t i = 0; i < receives.size(); ++i)
            if (receives[i]) unstage(ctx_, (*stages)[i]);
        },
        [requests] {
          int flag = 0;
          MPI_Testall(int(requests->size()), requests->data(), &flag, MPI_STATUSES_IGNORE);
          return false;
        });
  }

  void barrier() override { TESSERA_MPI_CHECK(MPI_Barrier(comm_)); }

  std::unique_ptr<Communicator> split(int color, int key) override {
    MPI_Comm sub = MPI_COMM_NULL;
    TESSERA_MPI_CHECK(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &sub));
    if (sub == MPI_COMM_NULL) return nullptr;
    return std::make_unique<MpiCommunicator>(ctx_, sub);
  }

  void abort() override {
    aborted_ = true;
    MPI_Abort(comm_, int(ExitCode::hang_or_peer));
  }

 private:
  static constexpr int kPeerTag = 7;

  // The staged result of a GPU receive still has to be copied back in wait(): never "completed" early.
  static bool test(MPI_Request* request) {
    int flag = 0;
    MPI_Test(request, &flag, MPI_STATUS_IGNORE);
    return false;
  }

  Context& ctx_;
  MPI_Comm comm_;
  std::shared_ptr<StagingPool> pool_;
  int rank_ = 0, size_ = 1;
  bool aborted_ = false;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(Context& ctx) {
  MPI_Comm world = MPI_COMM_NULL;
  TESSERA_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &world));
  return std::make_unique<MpiCommunicator>(ctx, world);
}

}  // namespace tessera
