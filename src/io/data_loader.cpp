// The data loader: windows of T+1 tokens over every file, one epoch after another, each epoch in
// an order drawn from (seed, epoch) or in file order; its state counts sequences, so it means the
// same under any data-parallel layout.
#include <algorithm>

#include "io/sample_order.h"
#include "tessera/data.h"
#include "tessera/error.h"

namespace tessera {

namespace {

// Checks the sizes before any file is opened (a config error outranks a data error).
const std::string& checked(const std::string& pattern, int B, int T, int vocab_size, int rank, int world) {
  if (B < 1) throw config_error("batch size must be at least 1 (got " + std::to_string(B) + ")");
  if (T < 1) throw config_error("sequence length must be at least 1 (got " + std::to_string(T) + ")");
  if (vocab_size < 1) throw config_error("vocabulary size must be at least 1 (got " + std::to_string(vocab_size) + ")");
  if (world < 1 || rank < 0 || rank >= world)
    throw config_error("data loader rank " + std::to_string(rank) + " is outside 0.." + std::to_string(world - 1) +
                       " (world " + std::to_string(world) + ")");
  return pattern;
}

const char* order_name(bool shuffle) { return shuffle ? "shuffled" : "in file order"; }

}  // namespace

bool operator==(const LoaderState& a, const LoaderState& b) {
  return a.epoch == b.epoch && a.position == b.position && a.seed == b.seed && a.shuffle == b.shuffle &&
         a.windows == b.windows && a.seq_len == b.seq_len;
}

DataLoader::DataLoader(const std::string& pattern, int B, int T, int vocab_size, int rank, int world,
                       const LoaderOptions& options)
    : data_(checked(pattern, B, T, vocab_size, rank, world)),
      B_(B),
      T_(T),
      vocab_size_(vocab_size),
      rank_(rank),
      world_(world),
      shuffle_(options.shuffle) {
  window_starts_.push_back(0);
  for (const TokenShard& shard : data_.shards()) {
    const int64_t windows = (shard.size() - 1) / T;  // window k needs tokens kT .. kT+T
    if (windows == 0)
      throw data_error("file holds " + std::to_string(shard.size()) + " tokens, fewer than one sequence of " +
                           std::to_string(int64_t(T) + 1) + " (sequence length " + std::to_string(T) + " + 1)",
                       shard.path(), "use a shorter --seq-len, or leave this file out");
    window_starts_.push_back(window_starts_.back() + windows);
  }
  if (windows_per_epoch() < global_batch())
    throw data_error("the data holds " + std::to_string(windows_per_epoch()) + " sequences of " +
                         std::to_string(int64_t(T) + 1) + " tokens, fewer than the " + std::to_string(global_batch()) +
                         " one global batch needs (" + std::to_string(world) + " data-parallel ranks x batch size " +
                         std::to_string(B) + ")",
                     pattern, "use a smaller batch size or sequence length, or give it more data");
  if (options.check_tokens) {
    const TokenCheck check = data_.check_tokens(vocab_size, 0, 1, options.threads);
    if (check.first_bad >= 0) data_.throw_bad_token(check.first_bad, vocab_size);
  }
  state_.seed = options.seed;
  state_.shuffle = options.shuffle;
  state_.windows = windows_per_epoch();
  state_.seq_len = T;
}

SampleId DataLoader::window(int64_t epoch, int64_t slot) const {
  const int64_t w = shuffle_ ? io::SampleOrder(windows_per_epoch(), state_.seed, epoch)(slot) : slot;
  const size_t s = size_t(std::upper_bound(window_starts_.begin(), window_starts_.end(), w) - window_starts_.begin()) - 1;
  return SampleId{int64_t(s), (w - window_starts_[s]) * T_};
}

void DataLoader::next_batch(int32_t* inputs, int32_t* targets) {
  window_tokens_.resize(size_t(T_) + 1);
  for (int b = 0; b < B_; ++b) {
    const SampleId id = window(state_.epoch, state_.position + int64_t(rank_) * B_ + b);
    const TokenShard& shard = data_.shards()[size_t(id.shard)];
    // Checked at start, but a file may have changed on disk since: a bad id never reaches a kernel.
    const int64_t bad = shard.find_bad_token(id.offset, id.offset + T_ + 1, vocab_size_);
    if (bad >= 0) shard.throw_bad_token(bad, vocab_size_);
    shard.read(id.offset, T_ + 1, window_tokens_.data());
    std::copy(window_tokens_.begin(), window_tokens_.end() - 1, inputs + int64_t(b) * T_);
    std::copy(window_tokens_.begin() + 1, window_tokens_.end(), targets + int64_t(b) * T_);
  }
  last_batch_ = state_;
  has_batch_ = true;
  state_.position += global_batch();
  if (state_.position + global_batch() > windows_per_epoch()) {
    state_.position = 0;
    ++state_.epoch;
  }
}

LoaderState DataLoader::state() const { return state_; }

std::vector<std::string> DataLoader::restore(const LoaderState& s) {
  const std::string saved = "the checkpoint's loader state (epoch " + std::to_string(s.epoch) + ", sequence " +
                            std::to_string(s.position) + " of " + std::to_string(s.windows) + ")";
  const char* hint = "the checkpoint is damaged; resume from an older one or start afresh with --resume never";
  if (s.epoch < 0 || s.position < 0 || s.windows < 1 || s.seq_len < 1 || s.position > s.windows)
    throw data_error(saved + " is impossible (sequence length " + std::to_string(s.seq_len) + ")", data_.pattern(), hint);

  std::vector<std::string> notes;
  LoaderState next = state_;
  next.epoch = s.epoch;
  next.seed = s.seed;
  if (s.seed != state_.seed && (s.shuffle || shuffle_))
    notes.push_back("the data order continues with the checkpoint's permutation seed " + std::to_string(s.seed) +
                    " (not " + std::to_string(state_.seed) + ")");
  const int64_t n = windows_per_epoch();
  if (s.windows == n && s.seq_len == T_) {
    next.position = s.position;
    if (s.shuffle != shuffle_)
      notes.push_back(std::string("the checkpoint read the data ") + order_name(s.shuffle) + ", this run reads it " +
                      order_name(shuffle_) + ": epoch " + std::to_string(s.epoch) + " goes on after the first " +
                      std::to_string(s.position) + " sequences of the new order, so some of its sequences are read "
                      "twice and others not at all");
  } else {
    next.position = int64_t((long double)(s.position) * (long double)(n) / (long double)(s.windows));
    notes.push_back("the checkpoint's data held " + std::to_string(s.windows) + " sequences of " +
                    std::to_string(s.seq_len) + "+1 tokens, this run's holds " + std::to_string(n) + " of " +
                    std::to_string(T_) + "+1: epoch " + std::to_string(s.epoch) + " goes on at the same fraction (sequence " +
                    std::to_string(next.position) + " of " + std::to_string(n) +
                    ") in another order, so some of its sequences are read twice and others not at all");
  }
  if (next.position + global_batch() > n) {
    notes.push_back("the " + std::to_string(n - next.position) + " sequences left in epoch " + std::to_string(next.epoch) +
                    " are fewer than one global batch of " + std::to_string(global_batch()) + ": epoch " +
                    std::to_string(next.epoch + 1) + " begins");
    next.position = 0;
    ++next.epoch;
  }
  state_ = next;
  has_batch_ = false;
  return notes;
}

void DataLoader::reset() {
  state_.epoch = 0;
  state_.position = 0;
  has_batch_ = false;
}

SampleId DataLoader::sample_id(int b) const {
  TESSERA_CHECK(has_batch_, "sample_id() needs a batch: call next_batch() first");
  TESSERA_CHECK(b >= 0 && b < B_, "sequence index " + std::to_string(b) + " outside 0.." + std::to_string(B_ - 1));
  return window(last_batch_.epoch, last_batch_.position + int64_t(rank_) * B_ + b);
}

int64_t DataLoader::batches_per_epoch() const { return windows_per_epoch() / global_batch(); }

}  // namespace tessera
