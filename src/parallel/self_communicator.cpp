// The communicator of one rank: every collective over a group of one, without MPI.
#include <string>

#include "tessera/buffer.h"
#include "tessera/communicator.h"
#include "tessera/error.h"

namespace tessera {

namespace {

class SelfCommunicator final : public Communicator {
 public:
  explicit SelfCommunicator(Context& ctx) : ctx_(ctx) {}

  int rank() const override { return 0; }
  int size() const override { return 1; }
  const char* backend() const override { return "self"; }

  Work all_reduce(Tensor data, ReduceOp op) override {
    check_alive();
    return Work();  // sum, average and maximum of one copy: the copy
  }
  Work reduce_scatter(Tensor output, Tensor input, ReduceOp op) override {
    check_alive();
    same_size(output, input, "reduce_scatter");
    if (output.data != input.data) copy_tensor(ctx_, output, input);
    return Work();
  }
  Work all_gather(Tensor output, Tensor input) override {
    check_alive();
    same_size(output, input, "all_gather");
    if (output.data != input.data) copy_tensor(ctx_, output, input);
    return Work();
  }
  Work broadcast(Tensor data, int root) override {
    check_alive();
    if (root != 0) throw config_error("broadcast: root " + std::to_string(root) + " out of range for one rank");
    return Work();
  }
  Work exchange(const std::vector<PeerTransfer>& transfers) override {
    check_alive();
    if (!transfers.empty())
      throw config_error("exchange: a group of one rank has no peer " + std::to_string(transfers.front().peer));
    return Work();
  }
  void barrier() override { check_alive(); }
  std::unique_ptr<Communicator> split(int color, int key) override {
    check_alive();
    if (color < 0) return nullptr;
    return std::make_unique<SelfCommunicator>(ctx_);
  }
  void abort() override { aborted_ = true; }

 private:
  void check_alive() const {
    if (aborted_) throw Error(ExitCode::hang_or_peer, "communicator aborted", "self communicator", "");
  }
  static void same_size(const Tensor& output, const Tensor& input, const char* op) {
    if (output.numel() != input.numel() || output.dtype != input.dtype)
      throw config_error(std::string(op) + ": output " + output.shape_str() + " and input " + input.shape_str() +
                         " differ on a group of one rank");
  }

  Context& ctx_;
  bool aborted_ = false;
};

}  // namespace

std::unique_ptr<Communicator> make_self_communicator(Context& ctx) { return std::make_unique<SelfCommunicator>(ctx); }

}  // namespace tessera
