// Token data: the file formats, their validation, and the data loader.
//
// Formats (each file is recognised from its name and header):
//  - llm.c token shards: a header of 256 int32 (magic, version, token count, the rest zero), then the
//    tokens. Magic 20240520 version 1: uint16 tokens (GPT-2's format); magic 20240801 version 7:
//    uint32 tokens (llm.c's LLaMA-3 format, for vocabularies over 65,536).
//  - Megatron-LM indexed datasets, as its preprocess_data.py writes them: PREFIX.bin holds the tokens
//    of every sequence back to back (uint16 or int32); PREFIX.idx holds "MMIDIDX\0\0", version 1 (u64),
//    the dtype code (u8), the sequence count and the document count (u64 each), then the sequence
//    lengths (int32), their byte offsets in the .bin (int64) and the document boundaries as sequence
//    indices (int64, from 0 to the sequence count). Named by PREFIX.bin, PREFIX.idx or PREFIX; a .bin
//    with an .idx beside it is always read as Megatron's.
//
// The loader reads every file as one stream of tokens (documents are separated by the tokenizer's
// end-of-text token inside it) cut into windows of T+1 tokens at stride T: window k of a file starts
// at token k*T, its first T tokens are the inputs and its last T the targets. Each epoch visits every
// window of every file once, in an order drawn from the seed and the epoch (or in file order); each
// global batch takes the next world*B windows of that order, rank r the B from slot r*B. The
// loader's position is explicit state (epoch, position in the epoch's order, permutation seed) and
// every sequence has an id (file, token offset), so a resumed or resharded run can be shown to read
// exactly the sequences of an uninterrupted one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

// llm.c's shard headers (dev/data/data_common.py).
constexpr int32_t kShardMagic = 20240520;  // uint16 tokens
constexpr int32_t kShardVersion = 1;
constexpr int32_t kShardMagicU32 = 20240801;  // uint32 tokens (llm.c's "llama-3" format)
constexpr int32_t kShardVersionU32 = 7;
constexpr int kShardHeaderInts = 256;

enum class TokenFormat {
  llmc_u16,      // llm.c shard, uint16 tokens
  llmc_u32,      // llm.c shard, uint32 tokens
  megatron_u16,  // Megatron indexed dataset, dtype code 8 (uint16)
  megatron_i32,  // Megatron indexed dataset, dtype code 4 (int32)
};
const char* token_format_name(TokenFormat f);  // e.g. "llm.c uint16", "Megatron int32"

// One file of tokens, memory-mapped read-only.
class TokenShard {
 public:
  // Opens and checks the file's structure (not its token ids: see find_bad_token): an llm.c shard's
  // magic, version, token count > 0 and exact size (truncated files and trailing bytes are errors);
  // a Megatron dataset's .idx header, version and dtype, its size against its counts, every sequence
  // length and offset against the one before (the sequences must tile the .bin exactly), the
  // document boundaries, and the .bin's size. Throws a data error naming the file and the offset.
  explicit TokenShard(const std::string& path);
  ~TokenShard();
  TokenShard(TokenShard&& other) noexcept;
  TokenShard& operator=(TokenShard&& other) noexcept;
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;

  int64_t size() const { return count_; }  // tokens
  TokenFormat format() const { return format_; }
  int token_bytes() const;
  const std::string& path() const { return path_; }              // the file holding the tokens
  const std::string& index_path() const { return index_path_; }  // Megatron's .idx, else empty
  int64_t byte_offset(int64_t token) const { return data_offset_ + token * token_bytes(); }  // in path()
  int64_t documents() const { return documents_; }  // Megatron: from the .idx; llm.c: 0 (not recorded)

  // The id at token offset i as stored (int32 tokens may be negative).
  int64_t token(int64_t i) const;
  // Copies `count` tokens from `offset` as int32 (ids checked against the vocabulary beforehand).
  void read(int64_t offset, int64_t count, int32_t* out) const;
  // The first token offset in [begin, end) whose id lies outside [0, vocab_size), or -1.
  int64_t find_bad_token(int64_t begin, int64_t end, int vocab_size) const;
  // The data error for the id at token offset i: file, token and byte offset, the Megatron
  // sequence and document holding it, the id and the vocabulary size.
  [[noreturn]] void throw_bad_token(int64_t i, int vocab_size) const;

 private:
  void release();

  std::string path_, index_path_;
  TokenFormat format_ = TokenFormat::llmc_u16;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const unsigned char* tokens_ = nullptr;
  int64_t data_offset_ = 0;
  int64_t count_ = 0;
  int64_t documents_ = 0;
};

// Writes an llm.c shard (count > 0, at most 2^31-1 tokens: the header stores an int32): uint16
// tokens in the GPT-2 format, uint32 tokens in the LLaMA-3 format. Writes path.tmp first and
// renames it, so a reader never sees a half-written shard.
void write_token_shard(const std::string& path, const uint16_t* tokens, int64_t count);
void write_token_shard(const std::string& path, const uint32_t* tokens, int64_t count);

// What a check of token ids found.
struct TokenCheck {
  int64_t tokens = 0;     // ids checked
  int64_t bytes = 0;      // token bytes read
  int64_t first_bad = -1; // position (over all files back to back) of the first id outside the vocabulary, -1 if none
  double seconds = 0;
};

// The files a data pattern names, opened and checked.
class TokenDataset {
 public:
  // pattern: one path, a comma-separated list, or globs (the matches of each glob sorted by name; a
  // list keeps its order). Megatron datasets matched twice (by .bin and .idx) are opened once.
  // Throws a data error when nothing matches or a file is malformed.
  explicit TokenDataset(const std::string& pattern);

  const std::string& pattern() const { return pattern_; }
  const std::vector<TokenShard>& shards() const { return shards_; }
  int64_t total_tokens() const { return starts_.back(); }
  int64_t total_bytes() const;
  std::string formats() const;  // the formats present, e.g. "llm.c uint16"

  // Checks the ids of part `part` of `parts` of all tokens (contiguous ranges; the parts together
  // cover every token exactly once) against [0, vocab_size), memory-mapped, on `threads` OpenMP
  // threads (0: all). first_bad is the lowest bad position in this part, whatever the threads.
  TokenCheck check_tokens(int vocab_size, int part = 0, int parts = 1, int threads = 0) const;
  // The data error for the bad id at `position` (file, offset, id: see TokenShard::throw_bad_token).
  [[noreturn]] void throw_bad_token(int64_t position, int vocab_size) const;

 private:
  std::string pattern_;
  std::vector<TokenShard> shards_;
  std::vector<int64_t> starts_;  // position of each file's first token; starts_.back() = total
};

// Where the loader stands: enough to continue exactly where it was, under any data-parallel layout.
struct LoaderState {
  int64_t epoch = 0;
  int64_t position = 0;   // sequences of this epoch's order already read (by all ranks together)
  int64_t seed = 0;       // the permutation seed: epoch e's order is a function of (seed, e)
  bool shuffle = true;    // false: file order
  int64_t windows = 0;    // sequences per epoch in the data (recognises other data at a restore)
  int64_t seq_len = 0;    // T the sequences were cut with
};
bool operator==(const LoaderState& a, const LoaderState& b);
inline bool operator!=(const LoaderState& a, const LoaderState& b) { return !(a == b); }

// Where a sequence starts: file index in the data pattern and token offset in that file.
struct SampleId {
  int64_t shard = 0;
  int64_t offset = 0;
};
inline bool operator==(const SampleId& a, const SampleId& b) { return a.shard == b.shard && a.offset == b.offset; }
inline bool operator!=(const SampleId& a, const SampleId& b) { return !(a == b); }
inline bool operator<(const SampleId& a, const SampleId& b) {
  return a.shard != b.shard ? a.shard < b.shard : a.offset < b.offset;
}

struct LoaderOptions {
  bool shuffle = true;       // a new order of all sequences every epoch; false: file order
  int64_t seed = 0;          // the permutation seed (the same on every rank)
  bool check_tokens = true;  // check every token id at construction (a program that splits the
                             // check over its ranks passes false and calls dataset().check_tokens)
  int threads = 0;           // for that check (0: all cores)
};

class DataLoader {
 public:
  // B sequences of T tokens per rank per batch; rank/world split each global batch of world*B
  // sequences (rank r takes sequences r*B..r*B+B-1). Throws a data error when no file matches, a file
  // is malformed, a file holds no full window of T+1 tokens, the data holds fewer windows than one
  // global batch, or (check_tokens) an id lies outside the vocabulary; a config error for
  // nonsensical sizes (B, T, vocab_size < 1, rank outside 0..world-1).
  DataLoader(const std::string& pattern, int B, int T, int vocab_size, int rank = 0, int world = 1,
             const LoaderOptions& options = {});

  // Fills inputs and targets (B*T each, int32) with this rank's next B windows; targets are inputs
  // shifted by one. After the last global batch that fits in an epoch (the last windows_per_epoch
  // mod world*B of the order are left out), the next epoch begins with a new order. An id outside the
  // vocabulary (a file changed on disk since the check) throws the data error naming file and offset.
  void next_batch(int32_t* inputs, int32_t* targets);

  LoaderState state() const;  // the state before the next call of next_batch
  // Continues from a saved state, adopting its seed. Exact when the data, T and the order are those
  // it was saved with (any world and B: the state counts sequences); otherwise it continues at the
  // same fraction of the saved epoch in this loader's order. Returns one line per thing that differs
  // and what it means for the data position (empty: exact). Data error for a state no loader writes.
  std::vector<std::string> restore(const LoaderState& s);
  void reset();  // back to epoch 0, position 0 (same seed)

  SampleId sample_id(int b) const;  // id of sequence b (0..B-1) of this rank's most recent batch

  const TokenDataset& dataset() const { return data_; }
  int64_t total_tokens() const { return data_.total_tokens(); }
  int64_t windows_per_epoch() const { return window_starts_.back(); }
  int64_t batches_per_epoch() const;  // global batches in one epoch

  int batch_size() const { return B_; }
  int seq_len() const { return T_; }
  int vocab_size() const { return vocab_size_; }
  int rank() const { return rank_; }
  int world() const { return world_; }
  bool shuffled() const { return shuffle_; }

 private:
  int64_t global_batch() const { return int64_t(world_) * B_; }
  SampleId window(int64_t epoch, int64_t slot) const;  // the window at `slot` of epoch's order

  TokenDataset data_;
  std::vector<int64_t> window_starts_;  // index of each file's first window; back() = windows per epoch
  int B_, T_, vocab_size_, rank_, world_;
  bool shuffle_;
  LoaderState state_;
  LoaderState last_batch_;  // state at which the most recent batch was read
  bool has_batch_ = false;
  std::vector<int32_t> window_tokens_;  // T+1 tokens of one window, kept: batches do not allocate
};

}  // namespace tessera
