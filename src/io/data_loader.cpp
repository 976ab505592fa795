// The data loader: llm.c's consecutive windows over a list of shards, with explicit state.
#include <glob.h>

#include <algorithm>

#include "tessera/data.h"
#include "tessera/error.h"

namespace tessera {

namespace {

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
  // Byte order, not the locale's collation: the same shard order on every machine.
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
                           "check the path; prepare shards with tessera-prepare-data");
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
                     "pass a shard path, a comma-separated list or a glob such as 'data/train_*.bin'");
  return paths;
}

}  // namespace

DataLoader::DataLoader(const std::string& pattern, int B, int T, int vocab_size, int rank, int world)
    : pattern_(pattern), B_(B), T_(T), vocab_size_(vocab_size), rank_(rank), world_(world) {
  if (B < 1) throw config_error("batch size must be at least 1 (got " + std::to_string(B) + ")");
  if (T < 1) throw config_error("sequence length must be at least 1 (got " + std::to_string(T) + ")");
  if (vocab_size < 1) throw config_error("vocabulary size must be at least 1 (got " + std::to_string(vocab_size) + ")");
  if (world < 1 || rank < 0 || rank >= world)
    throw config_error("data loader rank " + std::to_string(rank) + " is outside 0.." + std::to_string(world - 1) +
                       " (world " + std::to_string(world) + ")");
  paths_ = expand_pattern(pattern);
  const int64_t needed = global_batch_tokens() + 1;
  shards_.reserve(paths_.size());
  for (const std::string& path : paths_) {
    TokenShard shard(path);
    if (shard.size() < needed)
      throw data_error("shard holds " + std::to_string(shard.size()) + " tokens, fewer than the " +
                           std::to_string(needed) + " one global batch needs (" + std::to_string(world) +
                           " data-parallel ranks x batch size " + std::to_string(B) + " x sequence length " +
                           std::to_string(T) + " + 1)",
                       path, "use a smaller batch size or sequence length, or give this shard more data");
    shards_.push_back(std::move(shard));
  }
}

bool DataLoader::fits(int64_t shard, int64_t position) const {
  return position >= 0 && position + global_batch_tokens() + 1 <= shards_[size_t(shard)].size();
}

void DataLoader::next_batch(int32_t* inputs, int32_t* targets) {
  const TokenShard& shard = shards_[size_t(state_.shard)];
  const int64_t n = int64_t(B_) * T_;
  const int64_t base = state_.position + int64_t(rank_) * n;
  const uint16_t* window = shard.data() + base;  // n + 1 tokens: the last one is only a target
  for (int64_t i = 0; i <= n; ++i) {
    if (window[i] >= vocab_size_)
      throw data_error("token id " + std::to_string(window[i]) + " at token offset " + std::to_string(base + i) +
                           " is outside the vocabulary (size " + std::to_string(vocab_size_) + ")",
                       shard.path(),
                       "the data was tokenized for another vocabulary; regenerate it or use the matching model");
  }
  for (int64_t i = 0; i < n; ++i) {
    inputs[i] = window[i];
    targets[i] = window[i + 1];
  }
  last_batch_ = state_;
  has_batch_ = true;

  state_.position += global_batch_tokens();
  if (!fits(state_.shard, state_.position)) {
    state_.position = 0;
    if (++state_.shard == int64_t(shards_.size())) {
      state_.shard = 0;
      ++state_.epoch;
    }
  }
}

LoaderState DataLoader::state() const { return state_; }

void DataLoader::restore(const LoaderState& s) {
  auto describe = [&] {
    return "loader state (shard " + std::to_string(s.shard) + ", position " + std::to_string(s.position) +
           ", epoch " + std::to_string(s.epoch) + ")";
  };
  const char* hint = "resume with the same data files, batch size, sequence length and data-parallel size";
  if (s.shard < 0 || s.shard >= int64_t(shards_.size()))
    throw data_error(describe() + " names a shard that does not exist (there are " + std::to_string(shards_.size()) +
                         ")",
                     pattern_, hint);
  if (s.epoch < 0) throw data_error(describe() + " has a negative epoch", pattern_, hint);
  if (!fits(s.shard, s.position))
    throw data_error(describe() + ": a global batch of " + std::to_string(global_batch_tokens() + 1) +
                         " tokens at that position does not fit in the shard's " +
                         std::to_string(shards_[size_t(s.shard)].size()) + " tokens",
                     paths_[size_t(s.shard)], hint);
  state_ = s;
  has_batch_ = false;
}

void DataLoader::reset() {
  state_ = LoaderState{};
  has_batch_ = false;
}

SampleId DataLoader::sample_id(int b) const {
  TESSERA_CHECK(has_batch_, "sample_id() needs a batch: call next_batch() first");
  TESSERA_CHECK(b >= 0 && b < B_, "sequence index " + std::to_string(b) + " outside 0.." + std::to_string(B_ - 1));
  return SampleId{last_batch_.shard, last_batch_.position + (int64_t(rank_) * B_ + b) * T_};
}

int64_t DataLoader::total_tokens() const {
  int64_t total = 0;
  for (const TokenShard& s : shards_) total += s.size();
  return total;
}

int64_t DataLoader::batches_per_epoch() const {
  // Global batches start at 0, G, 2G, ... while start + G + 1 <= size: floor((size - 1) / G) of them.
  int64_t batches = 0;
  for (const TokenShard& s : shards_) batches += (s.size() - 1) / global_batch_tokens();
  return batches;
}

}  // namespace tessera
