// NCCL backend: collectives on a communication stream of their own, ordered after the compute
// stream's work by events; Work::wait() makes the compute stream wait for the communication.
// The unique id travels over MPI. Compiled only in CUDA builds.
#include <mpi.h>
#include <nccl.h>

#include <memory>

#include "core/cuda_check.h"
#include "core/cuda_resources.h"
#include "parallel/mpi_check.h"
#include "tessera/communicator.h"

#define TESSERA_NCCL_CHECK(call)                                                              \
  do {                                                                                        \
    ncclResult_t tessera_nccl_rc_ = (call);                                                   \
    if (tessera_nccl_rc_ != ncclSuccess && tessera_nccl_rc_ != ncclInProgress)                \
      ::tessera::detail::throw_gpu_error("NCCL", #call, ncclGetErrorString(tessera_nccl_rc_), \
                                         __FILE__, __LINE__);                                 \
  } while (0)

namespace tessera {

namespace {

// An NCCL group that is ended on every way out of its scope: a call that fails (and throws) inside
// the group would otherwise leave it open, and every later collective would be swallowed by it.
class NcclGroup {
 public:
  NcclGroup() { TESSERA_NCCL_CHECK(ncclGroupStart()); }
  ~NcclGroup() {
    if (open_) ncclGroupEnd();  // already failing: its error is the one being reported
  }
  void end() {
    open_ = false;
    TESSERA_NCCL_CHECK(ncclGroupEnd());
  }
  NcclGroup(const NcclGroup&) = delete;
  NcclGroup& operator=(const NcclGroup&) = delete;

 private:
  bool open_ = true;
};

// CUDA events owned by shared pointers (the Work's completion may outlive the call).
std::shared_ptr<CUevent_st> make_event() {
  cudaEvent_t e = nullptr;
  TESSERA_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return std::shared_ptr<CUevent_st>(e, [](cudaEvent_t ev) { cudaEventDestroy(ev); });
}

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::f32: return ncclFloat32;
    case DType::bf16: return ncclBfloat16;
    case DType::i32: return ncclInt32;
  }
  return ncclFloat32;
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(Context& ctx, ncclComm_t comm) : ctx_(ctx), comm_(comm) {
    TESSERA_NCCL_CHECK(ncclCommUserRank(comm_, &rank_));
    TESSERA_NCCL_CHECK(ncclCommCount(comm_, &size_));
    TESSERA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  ~NcclCommunicator() override {
    if (!aborted_) {
      cudaStreamSynchronize(stream_);
      ncclCommDestroy(comm_);
    }
    cudaStreamDestroy(stream_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* backend() const override { return "nccl"; }

  Work all_reduce(Tensor data, ReduceOp op) override {
    return launch([&] {
      TESSERA_NCCL_CHECK(ncclAllReduce(data.data, data.data, size_t(data.numel()), nccl_type(data.dtype),
                                       nccl_op(op), comm_, stream_));
    });
  }

  Work reduce_scatter(Tensor output, Tensor input, ReduceOp op) override {
    if (input.numel() != output.numel() * size_ || input.dtype != output.dtype)
      throw config_error("reduce_scatter: input " + input.shape_str() + " is not " + std::to_string(size_) +
                         " chunks of output " + output.shape_str());
    return launch([&] {
      TESSERA_NCCL_CHECK(ncclReduceScatter(input.data, output.data, size_t(output.numel()), nccl_type(output.dtype),
                                           nccl_op(op), comm_, stream_));
    });
  }

  Work all_gather(Tensor output, Tensor input) override {
    if (output.numel() != input.numel() * size_ || input.dtype != output.dtype)
      throw config_error("all_gather: output " + output.shape_str() + " is not " + std::to_string(size_) +
                         " chunks of input " + input.shape_str());
    return launch([&] {
      TESSERA_NCCL_CHECK(ncclAllGather(input.data, output.data, size_t(input.numel()), nccl_type(input.dtype), comm_,
                                       stream_));
    });
  }

  Work broadcast(Tensor data, int root) override {
    return launch([&] {
      TESSERA_NCCL_CHECK(ncclBroadcast(data.data, data.data, size_t(data.numel()), nccl_type(data.dtype), root,
                                       comm_, stream_));
    });
  }

  Work exchange(const std::vector<PeerTransfer>& transfers) override {
    return launch([&] {
      NcclGroup group;
      for (const PeerTransfer& t : transfers) {
        size_t count = size_t(t.tensor.numel());
        if (t.kind == PeerTransfer::Kind::send)
          TESSERA_NCCL_CHECK(ncclSend(t.tensor.data, count, nccl_type(t.tensor.dtype), t.peer, comm_, stream_));
        else
          TESSERA_NCCL_CHECK(ncclRecv(t.tensor.data, count, nccl_type(t.tensor.dtype), t.peer, comm_, stream_));
      }
      group.end();
    });
  }

  void barrier() override {
    float* token = static_cast<float*>(ctx_.cuda()->scratch(sizeof(float)));
    Tensor t(token, {1}, DType::f32, Device::cuda);
    all_reduce(t, ReduceOp::sum).wait();
    TESSERA_CUDA_CHECK(cudaStreamSynchronize(ctx_.cuda()->stream));
  }

  std::unique_ptr<Communicator> split(int color, int key) override {
    ncclComm_t sub = nullptr;
    TESSERA_NCCL_CHECK(ncclCommSplit(comm_, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &sub, nullptr));
    if (sub == nullptr) return nullptr;
    return std::make_unique<NcclCommunicator>(ctx_, sub);
  }

  void abort() override {
    aborted_ = true;
    ncclCommAbort(comm_);
  }

 private:
  static ncclRedOp_t nccl_op(ReduceOp op) {
    return op == ReduceOp::avg ? ncclAvg : op == ReduceOp::max ? ncclMax : ncclSum;
  }

  // Orders `enqueue` after the compute stream's queued work; the Work makes the compute stream
  // wait for it. NCCL errors raised asynchronously surface at wait().
  template <class F>
  Work launch(F&& enqueue) {
    cudaStream_t compute = ctx_.cuda()->stream;
    std::shared_ptr<CUevent_st> ready = make_event(), done = make_event();
    TESSERA_CUDA_CHECK(cudaEventRecord(ready.get(), compute));
    TESSERA_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready.get(), 0));
    enqueue();
    TESSERA_CUDA_CHECK(cudaEventRecord(done.get(), stream_));
    ncclComm_t comm = comm_;
    return Work(
        [compute, done, comm] {
          ncclResult_t async_error = ncclSuccess;
          ncclCommGetAsyncError(comm, &async_error);
          if (async_error != ncclSuccess && async_error != ncclInProgress)
            detail::throw_gpu_error("NCCL", "asynchronous error", ncclGetErrorString(async_error), __FILE__, __LINE__);
          TESSERA_CUDA_CHECK(cudaStreamWaitEvent(compute, done.get(), 0));
        },
        [done] { return cudaEventQuery(done.get()) == cudaSuccess; });
  }

  Context& ctx_;
  ncclComm_t comm_;
  cudaStream_t stream_ = nullptr;
  int rank_ = 0, size_ = 1;
  bool aborted_ = false;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(Context& ctx) {
  if (!ctx.on_gpu()) throw config_error("the NCCL backend needs a GPU context", "use the MPI backend on the CPU");
  int rank = 0, size = 1;
  TESSERA_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  TESSERA_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size));
  ncclUniqueId id;
  if (rank == 0) TESSERA_NCCL_CHECK(ncclGetUniqueId(&id));
  TESSERA_MPI_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD));
  ncclComm_t comm = nullptr;
  TESSERA_CUDA_CHECK(cudaSetDevice(ctx.cuda()->device));
  TESSERA_NCCL_CHECK(ncclCommInitRank(&comm, size, id, rank));
  return std::make_unique<NcclCommunicator>(ctx, comm);
}

}  // namespace tessera
