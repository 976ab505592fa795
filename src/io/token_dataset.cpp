// The files a data pattern names, and the check of every token id against the vocabulary:
// memory-mapped, in chunks over OpenMP threads, each rank of a job a contiguous part.
#include <glob.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "tessera/data.h"
#include "tessera/error.h"

namespace tessera {

namespace {

// Tokens per unit of work of the check: large enough for readahead, small enough to balance threads.
constexpr int64_t kCheckChunk = int64_t(1) << 22;

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t");
  if (a == std::string::npos) return "";
  size_t b = s.find_last_not_of(" \t");
  return s.substr(a, b - a + 1);
}

bool has_glob_characters(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

std::vector<std::string> glob_sorted(const std::string& pattern) {
  glob_t g{};
  int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
  std::vector<std::string> out;
  if (rc == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  ::globfree(&g);
  if (rc != 0 && rc != GLOB_NOMATCH)
    throw data_error("cannot expand the file pattern (glob error " + std::to_string(rc) + ")", pattern);
  // Byte order, not the locale's collation: the same file order on every machine.
  std::sort(out.begin(), out.end());
  return out;
}

// One path, a comma-separated list, or globs; each glob's matches sorted by name.
std::vector<std::string> expand_pattern(const std::string& pattern) {
  std::vector<std::string> paths;
  size_t start = 0;
  for (;;) {
    size_t comma = pattern.find(',', start);
    std::string item = trim(pattern.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (!item.empty()) {
      if (has_glob_characters(item)) {
        std::vector<std::string> matches = glob_sorted(item);
        if (matches.empty())
          throw data_error("no file matches the data pattern '" + item + "'", pattern,
                           "check the path; prepare data with tessera-prepare-data or tools/prepare_data.py");
        paths.insert(paths.end(), matches.begin(), matches.end());
      } else {
        paths.push_back(item);
      }
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (paths.empty())
    throw data_error("no data files given", pattern.empty() ? "(empty data path)" : pattern,
                     "pass a file, a comma-separated list or a glob such as 'data/train_*.bin'");
  return paths;
}

struct Chunk {
  size_t shard;
  int64_t begin, end;  // token offsets in the shard
};

}  // namespace

TokenDataset::TokenDataset(const std::string& pattern) : pattern_(pattern) {
  starts_.push_back(0);
  for (const std::string& path : expand_pattern(pattern)) {
    TokenShard shard(path);
    // A glob over a Megatron dataset matches its .bin and its .idx: one dataset, read once.
    if (!shard.index_path().empty() && !shards_.empty() && shards_.back().path() == shard.path()) continue;
    starts_.push_back(starts_.back() + shard.size());
    shards_.push_back(std::move(shard));
  }
}

int64_t TokenDataset::total_bytes() const {
  int64_t bytes = 0;
  for (const TokenShard& s : shards_) bytes += s.size() * s.token_bytes();
  return bytes;
}

std::string TokenDataset::formats() const {
  std::set<TokenFormat> seen;
  std::string out;
  for (const TokenShard& s : shards_)
    if (seen.insert(s.format()).second) out += (out.empty() ? "" : ", ") + std::string(token_format_name(s.format()));
  return out;
}

TokenCheck TokenDataset::check_tokens(int vocab_size, int part, int parts, int threads) const {
  if (parts < 1 || part < 0 || part >= parts)
    throw config_error("token check part " + std::to_string(part) + " is outside 0.." + std::to_string(parts - 1));
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t total = total_tokens();
  const int64_t begin = total / parts * part + std::min<int64_t>(part, total % parts);
  const int64_t end = begin + total / parts + (part < total % parts ? 1 : 0);

  std::vector<Chunk> chunks;
  TokenCheck check;
  for (size_t s = 0; s < shards_.size(); ++s) {
    const int64_t lo = std::max(begin, starts_[s]) - starts_[s], hi = std::min(end, starts_[s + 1]) - starts_[s];
    for (int64_t a = lo; a < hi; a += kCheckChunk) chunks.push_back({s, a, std::min(hi, a + kCheckChunk)});
    if (hi > lo) check.bytes += (hi - lo) * shards_[s].token_bytes();
  }
  check.tokens = end - begin;

  std::vector<int64_t> bad(chunks.size(), -1);
  const int n = int(chunks.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads > 0 ? threads : omp_get_max_threads())
  for (int c = 0; c < n; ++c) {
    const Chunk& chunk = chunks[size_t(c)];
    bad[size_t(c)] = shards_[chunk.shard].find_bad_token(chunk.begin, chunk.end, vocab_size);
  }
  for (size_t c = 0; c < chunks.size(); ++c)
    if (bad[c] >= 0) {
      check.first_bad = starts_[chunks[c].shard] + bad[c];
      break;
    }
  check.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return check;
}

void TokenDataset::throw_bad_token(int64_t position, int vocab_size) const {
  TESSERA_CHECK(position >= 0 && position < total_tokens(), "token position " + std::to_string(position) + " outside the data");
  const size_t s = size_t(std::upper_bound(starts_.begin(), starts_.end(), position) - starts_.begin()) - 1;
  shards_[s].throw_bad_token(position - starts_[s], vocab_size);
}

}  // namespace tessera
