#include "common/data_check.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "tessera/buffer.h"

namespace tessera::program {

namespace {

// Every rank's `mine` (the same length on all), rank after rank. The collective moves bytes, so the
// int64 words travel as int32 pairs; on a GPU through device memory (NCCL takes no host memory).
std::vector<int64_t> all_gather(Context& ctx, Communicator& world, const std::vector<int64_t>& mine) {
  if (world.size() == 1) return mine;
  const int64_t n = world.size(), k = int64_t(mine.size());
  std::vector<int64_t> all(size_t((n + 1) * k));  // this rank's words at the end
  std::copy(mine.begin(), mine.end(), all.begin() + n * k);
  Tensor host(all.data(), {2 * (n + 1) * k}, DType::i32, Device::cpu);
  auto gather = [&](const Tensor& t) { world.all_gather(t.flat_range(0, 2 * n * k), t.flat_range(2 * n * k, 2 * k)).wait(); };
  if (ctx.device() == Device::cpu) {
    gather(host);
  } else {
    Buffer buffer(ctx, host.nbytes(), ctx.device());
    Tensor staged(buffer.data(), {host.numel()}, host.dtype, ctx.device());
    copy_tensor(ctx, staged, host);
    gather(staged);
    copy_tensor(ctx, host, staged);
  }
  all.resize(size_t(n * k));
  return all;
}

}  // namespace

std::string check_data_tokens(Context& ctx, Communicator& world, const std::vector<const DataLoader*>& loaders,
                              int vocab_size) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int64_t> first_bad;
  int64_t bytes = 0, tokens = 0, files = 0;
  for (const DataLoader* loader : loaders) {
    if (!loader) continue;
    const TokenDataset& data = loader->dataset();
    const TokenCheck check = data.check_tokens(vocab_size, world.rank(), world.size(), ctx.cpu_threads());
    first_bad.push_back(check.first_bad);
    bytes += data.total_bytes();
    tokens += data.total_tokens();
    files += int64_t(data.shards().size());
  }
  const std::vector<int64_t> all = all_gather(ctx, world, first_bad);
  const size_t k = first_bad.size();
  size_t d = 0;
  for (const DataLoader* loader : loaders) {
    if (!loader) continue;
    int64_t first = -1;  // the lowest bad position over the ranks' parts
    for (size_t r = 0; r < all.size() / k; ++r)
      if (all[r * k + d] >= 0 && (first < 0 || all[r * k + d] < first)) first = all[r * k + d];
    if (first >= 0) loader->dataset().throw_bad_token(first, vocab_size);
    ++d;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  char line[256];
  std::snprintf(line, sizeof line,
                "checked all %lld tokens of %lld files (%.3g GB) against the vocabulary of %d in %.2f s (%.2f GB/s, %d ranks)",
                static_cast<long long>(tokens), static_cast<long long>(files), double(bytes) / 1e9, vocab_size, seconds,
                double(bytes) / 1e9 / std::max(seconds, 1e-9), world.size());
  return line;
}

}  // namespace tessera::program
