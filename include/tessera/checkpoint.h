// Checkpoints: every rank writes its own file on a background thread; one rank commits.
//
// A checkpoint root holds:
//   step-00000030/manifest.json    every file with its size and CRC32C, every piece, the metadata
//   step-00000030/commit.json      the commit record: the manifest's size and CRC32C
//   step-00000030/rank-00000.bin   rank 0's pieces, each at the byte offset the manifest gives
//   latest                         the name of the newest committed directory ("step-00000030")
//   .tmp-step-00000040/            a checkpoint being written, or left by a crash (removed by the next commit)
//
// Saving, on each rank: copy device state into a CheckpointSnapshot (the only part that blocks
// training), hand it to AsyncCheckpointWriter::start, keep training, and wait() before the next
// save. Once every rank's wait() succeeded (the trainer combines the results over its
// communicator), one rank calls commit_checkpoint. A directory gets its manifest before it is
// renamed into place and only then does `latest` move, so a crash at any moment leaves the previous
// checkpoint intact and `latest` naming a complete one. Every byte that decides what is loaded where
// is checksummed: the data files by the manifest, the manifest by the commit record; a reader checks
// the commit record before it uses the manifest.
//
// A piece is a rectangle of a global tensor, described by (name, dtype, global shape, offset, shape).
// A reader assembles any rectangle of a tensor from whatever pieces overlap it, so a checkpoint
// saved under one layout (tensor, pipeline or data parallel, ZeRO shards) loads under another.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tessera/dtype.h"

namespace tessera {

// One rectangle of one global tensor. Elements are stored row-major over `shape`.
struct CheckpointPiece {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> global_shape;
  std::vector<int64_t> offset;  // where the rectangle starts in the global tensor, one entry per dimension
  std::vector<int64_t> shape;   // its extent in each dimension
  // Which copy of replicated data this is (data-parallel ranks hold the same pieces). A reader
  // takes one of identical rectangles; usually only replica 0 is saved.
  int replica = 0;
  const void* data = nullptr;   // host memory when saving

  int64_t numel() const;
  size_t nbytes() const;
  // The whole tensor as one piece.
  static CheckpointPiece whole(std::string name, DType dtype, std::vector<int64_t> global_shape,
                               const void* data = nullptr);
};

// The flat range [begin, begin + count) of a row-major tensor (a ZeRO shard's part of it) as at most
// 2*ndim-1 rectangles that follow each other in memory: piece i's data starts where piece i-1's ends
// (data, when given, is the range's first element).
std::vector<CheckpointPiece> flat_range_pieces(const std::string& name, DType dtype,
                                               const std::vector<int64_t>& global_shape, int64_t begin,
                                               int64_t count, const void* data = nullptr);

// The host copy of one rank's pieces that a write works from. Move-only.
class CheckpointSnapshot {
 public:
  CheckpointSnapshot();
  ~CheckpointSnapshot();
  CheckpointSnapshot(CheckpointSnapshot&&) noexcept;
  CheckpointSnapshot& operator=(CheckpointSnapshot&&) noexcept;
  CheckpointSnapshot(const CheckpointSnapshot&) = delete;
  CheckpointSnapshot& operator=(const CheckpointSnapshot&) = delete;

  // Host memory for one piece, owned by the snapshot; the caller fills it (the device-to-host copy)
  // before handing the snapshot to the writer. piece.data is ignored.
  void* add(const CheckpointPiece& piece);
  // A piece copied from piece.data now.
  void add_copy(const CheckpointPiece& piece);
  // A piece whose memory (piece.data) the caller keeps alive and unchanged until the writer's
  // wait() returned, e.g. a pinned host mirror of the parameters.
  void add_borrowed(const CheckpointPiece& piece);

  const std::vector<CheckpointPiece>& pieces() const { return pieces_; }
  uint64_t bytes() const { return bytes_; }

 private:
  std::vector<CheckpointPiece> pieces_;
  std::vector<std::unique_ptr<uint64_t[]>> owned_;
  uint64_t bytes_ = 0;
};

struct CheckpointWriteResult {
  bool ok = false;
  std::string error;         // what went wrong, when !ok
  int rank = 0;
  int64_t step = 0;
  std::string file;          // the rank's data file (in the temporary directory)
  uint64_t bytes = 0;
  uint32_t crc32c = 0;
  double write_seconds = 0;  // on the background thread, until the files were durable
};

struct CheckpointWriteOptions {
  // Runs on the background thread before anything is written (tests hold the write with it).
  std::function<void()> before_write;
};

// Writes one rank's file of one checkpoint on a background thread:
// <root>/.tmp-step-<N>/rank-<R>.bin (the pieces) and then rank-<R>.json (its size, CRC32C, pieces
// and the rank's metadata), which commit_checkpoint collects.
class AsyncCheckpointWriter {
 public:
  AsyncCheckpointWriter();
  ~AsyncCheckpointWriter();  // waits for a write still running
  AsyncCheckpointWriter(const AsyncCheckpointWriter&) = delete;
  AsyncCheckpointWriter& operator=(const AsyncCheckpointWriter&) = delete;

  // Returns at once. rank_metadata_json: this rank's own state (RNG, data position), a JSON value.
  // Config error when a write is still unwaited, for pieces that do not fit their global shape, or
  // metadata that is not JSON.
  void start(const std::string& root, int64_t step, int rank, CheckpointSnapshot snapshot,
             const std::string& rank_metadata_json = "{}", CheckpointWriteOptions options = {});
  bool busy() const;               // the write is still running
  CheckpointWriteResult wait();    // joins; a failed write is reported in the result, not thrown
  bool started() const { return thread_.joinable(); }

 private:
  struct Job;
  static void run(const std::shared_ptr<Job>& job);
  std::shared_ptr<Job> job_;
  std::thread thread_;
};

struct CheckpointCommitResult {
  std::string dir;                   // the committed directory
  int64_t step = 0;
  uint32_t manifest_crc32c = 0;      // as its commit record holds it
  std::vector<std::string> removed;  // directories pruned or cleaned up
  double seconds = 0;
};

// Called by one rank after every rank's write succeeded: collects ranks 0..world_size-1's files from
// <root>/.tmp-step-<N>/, writes the manifest (with metadata_json, the job-wide state: step, config,
// layout), renames the directory to <root>/step-<N>, points `latest` at it, and then removes the
// other temporary directories, checkpoints of step >= N left by an abandoned run, and all but the
// newest `keep` (0 keeps all). Data error naming the rank whose file is missing or wrong.
// The next save must not start before this returns (a collective after it guarantees that).
CheckpointCommitResult commit_checkpoint(const std::string& root, int64_t step, int world_size,
                                         const std::string& metadata_json, int keep);

// ---------------------------------------------------------------------------------------------
// Loading

enum class CheckpointVerify {
  sizes,      // manifest parses, every file is present with its size (cheap)
  checksums,  // and every file's CRC32C matches (reads everything)
};

// Something wrong with a checkpoint: which directory, file and rank (-1: not a rank's file).
struct CheckpointProblem {
  std::string dir, file;
  int rank = -1;
  std::string what;
  std::string message() const;  // "step-00000030: rank-00001.bin (rank 1): CRC32C 1234abcd, expected ..."
};

struct CheckpointInfo {
  std::string dir;            // root/step-...
  int64_t step = -1;
  int world_size = 0;         // ranks that saved it
  int64_t sequence = 0;       // commit order within the root
  std::string metadata_json;  // what commit_checkpoint was given
};

// Every problem of one committed directory (empty: it verifies).
std::vector<CheckpointProblem> verify_checkpoint(const std::string& dir,
                                                 CheckpointVerify verify = CheckpointVerify::checksums);

// Whether a checkpoint that verifies can be used: empty to take it, else why not (the caller's own
// checks: its metadata, its pieces against the model, its data position against the data).
using CheckpointAcceptor = std::function<std::string(const CheckpointInfo&)>;

// The newest committed checkpoint under root that verifies (newest by commit order) and that
// `accept` (when given) takes; each rejected newer one's problems are appended to *rejected, and
// the next older one is tried. nullopt when there is none (or no root).
// In a job, one rank verifies (checksums) and tells the others which directory to open.
std::optional<CheckpointInfo> find_latest_valid_checkpoint(const std::string& root,
                                                           std::vector<CheckpointProblem>* rejected = nullptr,
                                                           CheckpointVerify verify = CheckpointVerify::checksums,
                                                           const CheckpointAcceptor& accept = {});

// A given committed directory; data error listing its problems when it does not verify.
CheckpointInfo open_checkpoint(const std::string& dir, CheckpointVerify verify = CheckpointVerify::checksums);

// The path of a rank's data file in a committed directory (fault injection and tests damage it).
std::string checkpoint_rank_file(const std::string& dir, int rank);

// One writer per checkpoint root: an exclusive flock on <root>/lock, a file that names the holder
// (host, pid, job, since when). Released when the object is destroyed or the process ends, however
// it ends, so a killed job leaves no stale lock. Two runs writing one root would commit over each
// other; the second is refused instead.
class CheckpointDirLock {
 public:
  CheckpointDirLock() = default;  // holds nothing
  // Creates root if missing and takes its lock. Config error naming the holder when another process
  // holds it. On a file system without locks (Lustre mounted without -o flock), holds nothing and
  // warning() says so.
  static CheckpointDirLock acquire(const std::string& root, const std::string& job);
  ~CheckpointDirLock();
  CheckpointDirLock(CheckpointDirLock&& other) noexcept;
  CheckpointDirLock& operator=(CheckpointDirLock&& other) noexcept;
  CheckpointDirLock(const CheckpointDirLock&) = delete;
  CheckpointDirLock& operator=(const CheckpointDirLock&) = delete;

  bool held() const { return fd_ >= 0; }
  const std::string& warning() const { return warning_; }

 private:
  int fd_ = -1;
  std::string warning_;
};

// Reads tensors out of a committed checkpoint under any layout. Not thread-safe.
class CheckpointReader {
 public:
  // Parses and checks the manifest (data error if it is missing or inconsistent). With
  // verify_on_read, each file's CRC32C is checked the first time a read touches it.
  explicit CheckpointReader(const std::string& dir, bool verify_on_read = true);
  ~CheckpointReader();
  CheckpointReader(CheckpointReader&&) noexcept;
  CheckpointReader& operator=(CheckpointReader&&) noexcept;

  const std::string& dir() const;
  int64_t step() const;
  int world_size() const;
  const std::string& metadata_json() const;
  std::string rank_metadata_json(int rank) const;  // "{}" for a rank that saved none (data error if rank >= world_size)

  std::vector<std::string> tensor_names() const;  // in the order first saved
  bool has(const std::string& name) const;
  std::vector<int64_t> global_shape(const std::string& name) const;
  DType dtype(const std::string& name) const;     // as saved (of its first piece)

  // Assembles the rectangle [offset, offset + shape) of tensor `name` into out (row-major over
  // shape), converting between f32 and bf16 when dtype differs from what was saved. Data error if
  // the tensor is absent or the rectangle is not fully covered by saved pieces.
  void read(const std::string& name, const std::vector<int64_t>& offset, const std::vector<int64_t>& shape,
            DType dtype, void* out) const;
  void read_all(const std::string& name, DType dtype, void* out) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera
