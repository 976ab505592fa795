#include "tessera/watched_communicator.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "tessera/host_collectives.h"

namespace tessera {

namespace {

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

class WatchedCommunicator final : public Communicator {
 public:
  WatchedCommunicator(Context& ctx, std::unique_ptr<Communicator> inner, std::vector<int> world_ranks,
                      std::string label, FlightRecorder& recorder, Watchdog* watchdog)
      : ctx_(ctx), inner_(std::move(inner)), world_ranks_(std::move(world_ranks)), label_(std::move(label)),
        recorder_(recorder), watchdog_(watchdog) {}

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  const char* backend() const override { return inner_->backend(); }
  void set_label(const std::string& label) override { label_ = label; }
  std::string label() const override { return label_; }

  Work all_reduce(Tensor data, ReduceOp op) override {
    return watched("all_reduce", world_ranks_, data.nbytes(), [&] { return inner_->all_reduce(data, op); });
  }
  Work reduce_scatter(Tensor output, Tensor input, ReduceOp op) override {
    return watched("reduce_scatter", world_ranks_, input.nbytes(),
                   [&] { return inner_->reduce_scatter(output, input, op); });
  }
  Work all_gather(Tensor output, Tensor input) override {
    return watched("all_gather", world_ranks_, output.nbytes(), [&] { return inner_->all_gather(output, input); });
  }
  Work broadcast(Tensor data, int root) override {
    return watched("broadcast", world_ranks_, data.nbytes(), [&] { return inner_->broadcast(data, root); });
  }
  Work exchange(const std::vector<PeerTransfer>& transfers) override {
    std::vector<int> peers;
    uint64_t bytes = 0;
    for (const PeerTransfer& t : transfers) {
      const int world = t.peer >= 0 && t.peer < int(world_ranks_.size()) ? world_ranks_[size_t(t.peer)] : t.peer;
      if (std::find(peers.begin(), peers.end(), world) == peers.end()) peers.push_back(world);
      bytes += t.tensor.nbytes();
    }
    return watched("exchange", peers, bytes, [&] { return inner_->exchange(transfers); });
  }
  void barrier() override {
    blocking("barrier", [&] { inner_->barrier(); });
  }
  std::unique_ptr<Communicator> split(int color, int key) override {
    std::unique_ptr<Communicator> sub;
    blocking("split", [&] { sub = inner_->split(color, key); });
    if (!sub) return nullptr;
    // The new group's members as world ranks: one small all-gather over it.
    const int32_t mine = world_ranks_[size_t(inner_->rank())];
    std::vector<int32_t> ranks(size_t(sub->size()), 0);
    blocking("split", [&] { host_all_gather(ctx_, *sub, &mine, sizeof(mine), ranks.data()); });
    return std::make_unique<WatchedCommunicator>(ctx_, std::move(sub), std::vector<int>(ranks.begin(), ranks.end()),
                                                 "split", recorder_, watchdog_);
  }
  void abort() override { inner_->abort(); }

 private:
  // While alive: this rank waits in a recorded operation, under the watchdog.
  struct Waiting {
    Waiting(FlightRecorder* recorder, Watchdog* watchdog, uint64_t handle, const std::string& section)
        : recorder(recorder), watchdog(watchdog), handle(handle), t0(steady_seconds()),
          cpu_wait0(recorder->cpu_wait_s()) {
      if (watchdog) watchdog->enter(section, -1);
    }
    ~Waiting() {
      if (watchdog) watchdog->leave();
      recorder->finish(handle, steady_seconds() - t0, recorder->cpu_wait_s() - cpu_wait0);
    }
    FlightRecorder* recorder;
    Watchdog* watchdog;
    uint64_t handle;
    double t0;
    double cpu_wait0;
  };

  std::string section(const char* op) const { return std::string(op) + "(" + label_ + ")"; }

  // Starts the operation; the returned Work's wait is recorded and held under the watchdog.
  template <typename Start>
  Work watched(const char* op, const std::vector<int>& peers, uint64_t bytes, Start start) {
    const uint64_t handle = recorder_.start(op, label_, peers, bytes);
    auto work = std::make_shared<Work>(start());
    FlightRecorder* recorder = &recorder_;
    Watchdog* watchdog = watchdog_;
    return Work(
        [work, handle, name = section(op), recorder, watchdog] {
          Waiting waiting(recorder, watchdog, handle, name);
          work->wait();
        },
        [work] { return work->is_completed(); });
  }

  // An operation that blocks in the call itself.
  template <typename Body>
  void blocking(const char* op, Body body) {
    Waiting waiting(&recorder_, watchdog_, recorder_.start(op, label_, world_ranks_, 0), section(op));
    body();
  }

  Context& ctx_;
  std::unique_ptr<Communicator> inner_;
  std::vector<int> world_ranks_;
  std::string label_;
  FlightRecorder& recorder_;
  Watchdog* watchdog_;
};

}  // namespace

std::unique_ptr<Communicator> watch_communicator(Context& ctx, std::unique_ptr<Communicator> inner,
                                                 FlightRecorder& recorder, Watchdog* watchdog) {
  std::vector<int> ranks(size_t(inner->size()));
  std::iota(ranks.begin(), ranks.end(), 0);
  return std::make_unique<WatchedCommunicator>(ctx, std::move(inner), std::move(ranks), "world", recorder, watchdog);
}

}  // namespace tessera
