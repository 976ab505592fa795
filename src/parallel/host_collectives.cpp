#include "tessera/host_collectives.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "tessera/buffer.h"
#include "tessera/error.h"

namespace tessera {

namespace {

// Runs op on a device copy of host (copied back afterwards), or on host itself on a CPU context.
template <typename Op>
void staged(Context& ctx, const Tensor& host, Op op) {
  if (ctx.device() == Device::cpu) {
    op(host);
    return;
  }
  Buffer buffer(ctx, host.nbytes(), ctx.device());
  Tensor device = host;
  device.data = buffer.data();
  device.device = ctx.device();
  copy_tensor(ctx, device, host);
  op(device);
  copy_tensor(ctx, host, device);
}

}  // namespace

void host_all_gather(Context& ctx, Communicator& comm, const void* mine, size_t bytes, void* all) {
  TESSERA_CHECK(bytes % 4 == 0, "host_all_gather moves whole 4-byte words");
  const size_t n = size_t(comm.size()), words = bytes / 4;
  std::vector<int32_t> buffer((n + 1) * words, 0);
  std::memcpy(buffer.data() + n * words, mine, bytes);
  Tensor host(buffer.data(), {int64_t(buffer.size())}, DType::i32, Device::cpu);
  staged(ctx, host, [&](const Tensor& t) {
    comm.all_gather(t.flat_range(0, int64_t(n * words)), t.flat_range(int64_t(n * words), int64_t(words))).wait();
  });
  std::memcpy(all, buffer.data(), n * bytes);
}

void host_all_reduce(Context& ctx, Communicator& comm, std::vector<float>& values, ReduceOp op) {
  if (values.empty()) return;
  Tensor host(values.data(), {int64_t(values.size())}, DType::f32, Device::cpu);
  staged(ctx, host, [&](const Tensor& t) { comm.all_reduce(t, op).wait(); });
}

void host_exchange(Context& ctx, Communicator& comm, const std::vector<PeerTransfer>& transfers) {
  if (ctx.device() == Device::cpu) {
    comm.exchange(transfers).wait();
    return;
  }
  std::vector<std::unique_ptr<Buffer>> buffers;
  std::vector<PeerTransfer> staged_transfers;
  for (const PeerTransfer& t : transfers) {
    buffers.push_back(std::make_unique<Buffer>(ctx, std::max<size_t>(t.tensor.nbytes(), 1), ctx.device()));
    PeerTransfer d = t;
    d.tensor.data = buffers.back()->data();
    d.tensor.device = ctx.device();
    if (t.kind == PeerTransfer::Kind::send) copy_tensor(ctx, d.tensor, t.tensor);
    staged_transfers.push_back(d);
  }
  comm.exchange(staged_transfers).wait();
  for (size_t i = 0; i < transfers.size(); ++i)
    if (transfers[i].kind == PeerTransfer::Kind::recv) copy_tensor(ctx, transfers[i].tensor, staged_transfers[i].tensor);
}

std::vector<std::string> host_all_gather_strings(Context& ctx, Communicator& comm, const std::string& mine,
                                                 size_t max_bytes) {
  const size_t width = (std::max<size_t>(max_bytes, 4) + 3) / 4 * 4, n = size_t(comm.size());
  std::vector<char> own(width, 0), all(n * width, 0);
  std::memcpy(own.data(), mine.data(), std::min(mine.size(), width - 1));
  host_all_gather(ctx, comm, own.data(), width, all.data());
  std::vector<std::string> out;
  for (size_t r = 0; r < n; ++r) out.emplace_back(all.data() + r * width, strnlen(all.data() + r * width, width));
  return out;
}

}  // namespace tessera
