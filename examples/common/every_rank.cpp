#include "common/every_rank.h"

#include <optional>
#include <string>

#include "tessera/buffer.h"
#include "tessera/error.h"

namespace tessera::program {

void check_on_every_rank(Context& ctx, Communicator& world, const std::function<void()>& check) {
  std::optional<Error> failure;
  try {
    check();
  } catch (const Error& e) {
    failure = e;
  }
  // The max over the ranks that failed of (world size - rank) x 16 + exit code: the first of them,
  // and its exit code, so that every rank exits with the same code. Exact in a float below 2^20 ranks.
  float first = failure ? float((world.size() - world.rank()) * 16 + int(failure->code())) : 0.0f;
  if (world.size() > 1) {
    Tensor host(&first, {1}, DType::f32, Device::cpu);
    if (ctx.device() == Device::cpu) {
      world.all_reduce(host, ReduceOp::max).wait();
    } else {  // NCCL reduces device memory only
      Buffer staged(ctx, sizeof(float), ctx.device());
      Tensor t(staged.data(), {1}, DType::f32, ctx.device());
      copy_tensor(ctx, t, host);
      world.all_reduce(t, ReduceOp::max).wait();
      copy_tensor(ctx, host, t);
    }
  }
  if (failure) throw *failure;
  if (first > 0) {
    const int encoded = int(first), rank = world.size() - encoded / 16;
    throw Error(ExitCode(encoded % 16), "rank " + std::to_string(rank) + " failed a check at start", "",
                "its own message says why");
  }
}

}  // namespace tessera::program
