// tessera-bench-data: how fast every token id of a dataset is checked against the vocabulary, the
// check tessera-train runs before its first step.
//   tessera-bench-data [--gb 2 --files 4 --format u16|u32 --dir /tmp] [--data PATTERN --vocab-size V] [--threads 1,2]
// Without --data it writes a synthetic dataset of random ids (never zeros) under --dir and removes it
// afterwards. For each thread count it times the check from storage (the files' pages dropped from
// the page cache first; posix_fadvise drops clean pages, so the files are synced first) and from the
// page cache (best of --repeat), and prints GB/s of token data. tessera-train splits the check over
// its ranks, so a job reads each byte once: its time is about the data size over the sum of its
// nodes' rates.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/flags.h"
#include "common/output_checks.h"
#include "tessera/data.h"
#include "tessera/error.h"

namespace tessera::program {
namespace {

std::vector<int> parse_list(const std::string& text) {
  std::vector<int> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || v < 1) throw config_error("--threads '" + text + "' is not a list of positive counts");
    out.push_back(v);
  }
  if (out.empty()) throw config_error("--threads needs at least one count");
  return out;
}

// Writes `files` shards of random ids below `vocab`, `bytes` of tokens in all.
std::vector<std::string> write_synthetic(const std::string& dir, double gb, int files, bool u32, int vocab) {
  const int64_t per_file = int64_t(gb * 1e9 / files / (u32 ? 4 : 2));
  if (per_file < 1) throw config_error("--gb is too small for --files");
  std::mt19937_64 rng(2024);
  std::vector<std::string> paths;
  for (int f = 0; f < files; ++f) {
    const std::string path = dir + "/bench_" + std::to_string(f) + ".bin";
    if (u32) {
      std::vector<uint32_t> tokens(static_cast<size_t>(per_file));
      for (uint32_t& t : tokens) t = uint32_t(rng() % uint64_t(vocab));
      write_token_shard(path, tokens.data(), per_file);
    } else {
      std::vector<uint16_t> tokens(static_cast<size_t>(per_file));
      for (uint16_t& t : tokens) t = uint16_t(rng() % uint64_t(vocab));
      write_token_shard(path, tokens.data(), per_file);
    }
    paths.push_back(path);
  }
  return paths;
}

std::vector<std::string> file_paths(const TokenDataset& data) {
  std::vector<std::string> out;
  for (const TokenShard& s : data.shards())
    for (const std::string& path : {s.path(), s.index_path()})
      if (!path.empty()) out.push_back(path);
  return out;
}

// Asks the kernel to forget the files' cached pages (only clean pages that no one maps can go).
bool drop_cached(const std::vector<std::string>& paths) {
  bool all = true;
  for (const std::string& path : paths) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      all = false;
      continue;
    }
    all = ::fdatasync(fd) == 0 && ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0 && all;
    ::close(fd);
  }
  return all;
}

int bench(int argc, char** argv) {
  double gb = 2;
  int files = 4, repeat = 3, vocab_size = 0;
  std::string format = "u16", dir = "/tmp", data_pattern, threads_text;
  FlagParser p("tessera-bench-data", "tessera-bench-data [flags]");
  p.add("gb", &gb, "synthetic dataset: GB of token data").above(0);
  p.add("files", &files, "synthetic dataset: files").at_least(1);
  p.add("format", &format, "synthetic dataset: u16 (llm.c GPT-2) or u32 (llm.c LLaMA-3)").one_of({"u16", "u32"});
  p.add("dir", &dir, "synthetic dataset: where to write it (removed afterwards)");
  p.add("data", &data_pattern, "an existing dataset instead (a path, list or glob, as tessera-train's --data)");
  p.add("vocab-size", &vocab_size, "vocabulary to check against (default 50257 for u16, 128256 for u32)").at_least(1);
  p.add("threads", &threads_text, "comma-separated thread counts (default: 1 and all cores)");
  p.add("repeat", &repeat, "timed passes from the page cache per thread count (the best is reported)").at_least(1);
  if (!p.parse(argc, argv)) return 0;
  if (!p.positional().empty()) throw config_error("unexpected argument '" + p.positional()[0] + "'", "see --help");
  if (data_pattern.empty()) check_output_dir("--dir", dir);  // before gigabytes are generated
  const bool u32 = format == "u32";
  if (vocab_size == 0) vocab_size = u32 ? 128256 : 50257;
  std::vector<int> threads = threads_text.empty() ? std::vector<int>{1} : parse_list(threads_text);
  if (threads_text.empty() && std::thread::hardware_concurrency() > 1) threads.push_back(int(std::thread::hardware_concurrency()));

  std::string scratch, pattern = data_pattern;
  if (pattern.empty()) {
    scratch = dir + "/tessera-bench-data-" + std::to_string(::getpid());
    std::filesystem::create_directories(scratch);
    std::printf("writing %.2f GB of random %s ids below %d in %d files under %s\n", gb, format.c_str(), vocab_size,
                files, scratch.c_str());
    std::fflush(stdout);
    const std::vector<std::string> paths = write_synthetic(scratch, gb, files, u32, vocab_size);
    pattern = scratch + "/bench_*.bin";
  }
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      if (!dir.empty()) std::filesystem::remove_all(dir, ec);
    }
  } cleanup{scratch};

  auto data = std::make_unique<TokenDataset>(pattern);
  const double data_gb = double(data->total_bytes()) / 1e9;
  std::printf("data: %s, %zu files, %lld tokens, %.3f GB (%s), vocabulary %d\n", pattern.c_str(),
              data->shards().size(), static_cast<long long>(data->total_tokens()), data_gb, data->formats().c_str(),
              vocab_size);
  std::printf("%8s  %14s  %14s  %18s\n", "threads", "storage GB/s", "cached GB/s", "100 GB from storage");
  for (int t : threads) {
    const std::vector<std::string> paths = file_paths(*data);
    data.reset();  // unmapped, so that its pages can be dropped
    const bool dropped = drop_cached(paths);
    data = std::make_unique<TokenDataset>(pattern);
    const TokenCheck cold = data->check_tokens(vocab_size, 0, 1, t);
    double best = 1e300;
    for (int r = 0; r < repeat; ++r) best = std::min(best, data->check_tokens(vocab_size, 0, 1, t).seconds);
    if (cold.first_bad >= 0) data->throw_bad_token(cold.first_bad, vocab_size);
    const double cold_rate = data_gb / cold.seconds, warm_rate = data_gb / best;
    std::printf("%8d  %14.2f  %14.2f  %16.0f s%s\n", t, cold_rate, warm_rate, 100.0 / cold_rate,
                dropped ? "" : "  (pages not dropped: storage figure is an upper bound)");
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace tessera::program

int main(int argc, char** argv) {
  return tessera::program::run_program("tessera-bench-data", [&] { return tessera::program::bench(argc, argv); });
}
