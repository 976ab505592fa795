// Token shards and the data loader.
//
// A shard is llm.c's format: a header of 256 int32 (magic 20240520, version 1, token count, the rest
// zero) followed by the tokens as uint16. The loader reads consecutive windows of T tokens from the
// shards in order; its position is explicit state (shard, position, epoch) and every sequence has an
// id (shard, offset), so a resumed run can be shown to consume exactly the samples of an uninterrupted one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

constexpr int32_t kShardMagic = 20240520;
constexpr int32_t kShardVersion = 1;
constexpr int kShardHeaderInts = 256;

// One shard, memory-mapped read-only.
class TokenShard {
 public:
  // Validates the file: it exists and is readable, holds a full header with the right magic and
  // version, a token count > 0 (an empty shard is an error), and exactly header + 2*count bytes
  // (truncated files and trailing bytes are errors). Throws a data error naming the file otherwise.
  explicit TokenShard(const std::string& path);
  ~TokenShard();
  TokenShard(TokenShard&& other) noexcept;
  TokenShard& operator=(TokenShard&& other) noexcept;
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;

  int64_t size() const { return count_; }
  const uint16_t* data() const { return tokens_; }
  const std::string& path() const { return path_; }

 private:
  void release();

  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const uint16_t* tokens_ = nullptr;
  int64_t count_ = 0;
};

// Writes a shard (count > 0, at most 2^31-1 tokens: the header stores an int32). Writes path.tmp
// first and renames it, so a reader never sees a half-written shard.
void write_token_shard(const std::string& path, const uint16_t* tokens, int64_t count);

// Where the loader stands. position: token offset in the shard of this process group's next global batch.
struct LoaderState {
  int64_t shard = 0;
  int64_t position = 0;
  int64_t epoch = 0;
};
inline bool operator==(const LoaderState& a, const LoaderState& b) {
  return a.shard == b.shard && a.position == b.position && a.epoch == b.epoch;
}
inline bool operator!=(const LoaderState& a, const LoaderState& b) { return !(a == b); }

// Where a sequence starts.
struct SampleId {
  int64_t shard = 0;
  int64_t offset = 0;
};
inline bool operator==(const SampleId& a, const SampleId& b) { return a.shard == b.shard && a.offset == b.offset; }
inline bool operator!=(const SampleId& a, const SampleId& b) { return !(a == b); }
inline bool operator<(const SampleId& a, const SampleId& b) {
  return a.shard != b.shard ? a.shard < b.shard : a.offset < b.offset;
}

class DataLoader {
 public:
  // pattern: one path, a comma-separated list, or a glob (the matches of each glob sorted by name;
  // a list keeps its order). B sequences of T tokens per rank per batch; rank/world split each
  // global batch of world*B sequences (rank r takes sequences r*B..r*B+B-1).
  // Throws a data error when no file matches or when a shard holds fewer than world*B*T+1 tokens,
  // a config error for nonsensical sizes (B, T, vocab_size < 1, rank outside 0..world-1).
  DataLoader(const std::string& pattern, int B, int T, int vocab_size, int rank = 0, int world = 1);

  // Fills inputs and targets (B*T each, int32) with the next windows; targets are inputs shifted by
  // one. Sequences are consecutive windows of T tokens (stride T), as llm.c reads them; when the next
  // global batch does not fit in the shard the loader moves to the next shard at position 0, and after
  // the last shard it wraps to shard 0 and epoch+1. A token >= vocab_size in this rank's window throws
  // a data error naming the shard, the token offset, the id and the vocabulary size.
  void next_batch(int32_t* inputs, int32_t* targets);

  LoaderState state() const;           // the state before the next call of next_batch
  void restore(const LoaderState& s);  // data error if the state does not fit these shards and sizes
  void reset();                        // back to shard 0, position 0, epoch 0

  SampleId sample_id(int b) const;     // id of sequence b (0..B-1) of this rank's most recent batch

  const std::vector<std::string>& shard_paths() const { return paths_; }
  int64_t total_tokens() const;
  int64_t batches_per_epoch() const;   // global batches in one pass over all shards

  int batch_size() const { return B_; }
  int seq_len() const { return T_; }
  int vocab_size() const { return vocab_size_; }
  int rank() const { return rank_; }
  int world() const { return world_; }

 private:
  int64_t global_batch_tokens() const { return int64_t(world_) * B_ * T_; }
  bool fits(int64_t shard, int64_t position) const;

  std::string pattern_;
  std::vector<std::string> paths_;
  std::vector<TokenShard> shards_;
  int B_, T_, vocab_size_, rank_, world_;
  LoaderState state_;
  LoaderState last_batch_;     // state at which the most recent batch was read
  bool has_batch_ = false;
};

}  // namespace tessera
