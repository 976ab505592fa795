// Saving: pieces, snapshots, the background writer of one rank's file, and the commit.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "io/checkpoint_layout.h"
#include "io/crc32c.h"
#include "io/file_util.h"
#include "tessera/checkpoint.h"
#include "tessera/error.h"

namespace tessera {

namespace fs = std::filesystem;
using io::ckpt::join;

int64_t CheckpointPiece::numel() const { return io::ckpt::shape_numel(shape); }
size_t CheckpointPiece::nbytes() const { return size_t(numel()) * dtype_size(dtype); }

CheckpointPiece CheckpointPiece::whole(std::string name, DType dtype, std::vector<int64_t> global_shape, const void* data) {
  CheckpointPiece p;
  p.name = std::move(name);
  p.dtype = dtype;
  p.offset.assign(global_shape.size(), 0);
  p.shape = global_shape;
  p.global_shape = std::move(global_shape);
  p.data = data;
  return p;
}

namespace {

// Splits elements [a, b) of the sub-tensor at `prefix` (indices of dims < k) into rectangles, in
// row-major order: a partial leading index, a run of whole indices, a partial trailing index.
void decompose(const std::vector<int64_t>& shape, std::vector<int64_t>& prefix, int64_t a, int64_t b,
               std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>>& out) {
  if (a >= b) return;
  size_t k = prefix.size(), n = shape.size();
  auto emit = [&](int64_t index, int64_t extent, bool rest_whole) {
    std::vector<int64_t> offset = prefix, sizes(k, 1);
    offset.push_back(index);
    sizes.push_back(extent);
    for (size_t d = k + 1; d < n; ++d) {
      offset.push_back(0);
      sizes.push_back(rest_whole ? shape[d] : 1);
    }
    out.emplace_back(std::move(offset), std::move(sizes));
  };
  if (k + 1 == n) {
    emit(a, b - a, true);
    return;
  }
  int64_t stride = 1;
  for (size_t d = k + 1; d < n; ++d) stride *= shape[d];
  if (a % stride != 0) {
    int64_t i = a / stride, end = std::min(b, (i + 1) * stride);
    prefix.push_back(i);
    decompose(shape, prefix, a - i * stride, end - i * stride, out);
    prefix.pop_back();
    a = end;
  }
  if (a >= b) return;
  int64_t whole = b / stride - a / stride;
  if (whole > 0) {
    emit(a / stride, whole, true);
    a += whole * stride;
  }
  if (a < b) {
    int64_t i = a / stride;
    prefix.push_back(i);
    decompose(shape, prefix, 0, b - i * stride, out);
    prefix.pop_back();
  }
}

}  // namespace

std::vector<CheckpointPiece> flat_range_pieces(const std::string& name, DType dtype, const std::vector<int64_t>& global_shape,
                                               int64_t begin, int64_t count, const void* data) {
  int64_t total = io::ckpt::shape_numel(global_shape);
  for (int64_t d : global_shape)
    if (d < 0) throw config_error("flat_range_pieces: negative dimension in the shape of '" + name + "'");
  if (begin < 0 || count < 0 || begin + count > total)
    throw config_error("flat_range_pieces: range [" + std::to_string(begin) + ", " + std::to_string(begin + count) +
                       ") does not fit '" + name + "' of " + std::to_string(total) + " elements");
  std::vector<CheckpointPiece> pieces;
  if (count == 0) return pieces;
  std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> rects;
  if (global_shape.empty()) {
    rects.emplace_back(std::vector<int64_t>{}, std::vector<int64_t>{});  // a scalar
  } else {
    std::vector<int64_t> prefix;
    decompose(global_shape, prefix, begin, begin + count, rects);
  }
  const char* bytes = static_cast<const char*>(data);
  for (auto& [offset, shape] : rects) {
    CheckpointPiece p;
    p.name = name;
    p.dtype = dtype;
    p.global_shape = global_shape;
    p.offset = std::move(offset);
    p.shape = std::move(shape);
    p.data = bytes;
    if (bytes) bytes += p.nbytes();
    pieces.push_back(std::move(p));
  }
  return pieces;
}

// ---------------------------------------------------------------------------------------------
// Snapshot

CheckpointSnapshot::CheckpointSnapshot() = default;
CheckpointSnapshot::~CheckpointSnapshot() = default;
CheckpointSnapshot::CheckpointSnapshot(CheckpointSnapshot&&) noexcept = default;
CheckpointSnapshot& CheckpointSnapshot::operator=(CheckpointSnapshot&&) noexcept = default;

void* CheckpointSnapshot::add(const CheckpointPiece& piece) {
  io::ckpt::check_piece_geometry(piece, "checkpoint snapshot");
  size_t words = (piece.nbytes() + 7) / 8;
  owned_.push_back(std::unique_ptr<uint64_t[]>(new uint64_t[std::max<size_t>(words, 1)]));
  CheckpointPiece p = piece;
  p.data = owned_.back().get();
  bytes_ += p.nbytes();
  pieces_.push_back(std::move(p));
  return owned_.back().get();
}

void CheckpointSnapshot::add_copy(const CheckpointPiece& piece) {
  TESSERA_CHECK(piece.data != nullptr || piece.nbytes() == 0, "add_copy of piece '" + piece.name + "' without data");
  void* dst = add(piece);
  if (piece.nbytes()) std::memcpy(dst, piece.data, piece.nbytes());
}

void CheckpointSnapshot::add_borrowed(const CheckpointPiece& piece) {
  io::ckpt::check_piece_geometry(piece, "checkpoint snapshot");
  TESSERA_CHECK(piece.data != nullptr || piece.nbytes() == 0, "add_borrowed of piece '" + piece.name + "' without data");
  bytes_ += piece.nbytes();
  pieces_.push_back(piece);
}

// ---------------------------------------------------------------------------------------------
// Background writer

struct AsyncCheckpointWriter::Job {
  std::string root;
  int64_t step = 0;
  int rank = 0;
  CheckpointSnapshot snapshot;
  json::Value metadata;
  CheckpointWriteOptions options;
  std::atomic<bool> done{false};
  CheckpointWriteResult result;
};

namespace {

// Writes the rank's data file (pieces at aligned offsets, CRC32C computed on the way) and then its
// description; both land under their final names only once complete and synced.
void write_rank_file(const std::string& root, int64_t step, int rank, const CheckpointSnapshot& snapshot,
                     const json::Value& metadata, CheckpointWriteResult& result) {
  const std::string tmp = join(root, io::ckpt::tmp_dir_name(step));
  std::error_code ec;
  fs::create_directories(tmp, ec);
  if (ec) throw data_error("cannot create the checkpoint directory: " + ec.message(), tmp, "check that the checkpoint directory is writable");

  io::ckpt::FileRecord record;
  record.rank = rank;
  record.file = io::ckpt::rank_file_name(rank);
  record.metadata = metadata;
  const std::string path = join(tmp, record.file);

  io::AtomicFileWriter out(path, "checkpoint file");
  static const char zeros[io::ckpt::kPieceAlignment] = {};
  constexpr size_t kChunk = size_t(4) << 20;  // checksum a chunk while it is in cache, then write it
  uint64_t pos = 0;
  uint32_t crc = 0;
  for (const CheckpointPiece& piece : snapshot.pieces()) {
    size_t pad = size_t((io::ckpt::kPieceAlignment - pos % io::ckpt::kPieceAlignment) % io::ckpt::kPieceAlignment);
    if (pad) {
      crc = io::crc32c(zeros, pad, crc);
      out.write(zeros, pad);
      pos += pad;
    }
    io::ckpt::PieceRecord r;
    r.piece = piece;
    r.piece.data = nullptr;
    r.file_offset = pos;
    r.bytes = piece.nbytes();
    const char* src = static_cast<const char*>(piece.data);
    for (size_t done = 0; done < r.bytes;) {
      size_t n = std::min(kChunk, size_t(r.bytes) - done);
      crc = io::crc32c(src + done, n, crc);
      out.write(src + done, n);
      done += n;
    }
    pos += r.bytes;
    record.pieces.push_back(std::move(r));
  }
  out.commit();
  record.bytes = pos;
  record.crc32c = crc;

  io::AtomicFileWriter info(join(tmp, io::ckpt::rank_info_name(rank)), "checkpoint rank description");
  info.write(io::ckpt::to_json(record).dump());
  info.write("\n");
  info.commit();
  io::ckpt::sync_directory(tmp);

  result.file = path;
  result.bytes = pos;
  result.crc32c = crc;
}

}  // namespace

void AsyncCheckpointWriter::run(const std::shared_ptr<Job>& job) {
  auto t0 = std::chrono::steady_clock::now();
  job->result.rank = job->rank;
  job->result.step = job->step;
  try {
    if (job->options.before_write) job->options.before_write();
    write_rank_file(job->root, job->step, job->rank, job->snapshot, job->metadata, job->result);
    job->result.ok = true;
  } catch (const std::exception& e) {
    job->result.ok = false;
    job->result.error = e.what();
  } catch (...) {
    job->result.ok = false;
    job->result.error = "unknown error while writing the checkpoint";
  }
  job->result.write_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  job->done.store(true, std::memory_order_release);
}

AsyncCheckpointWriter::AsyncCheckpointWriter() = default;

AsyncCheckpointWriter::~AsyncCheckpointWriter() {
  if (thread_.joinable()) thread_.join();
}

void AsyncCheckpointWriter::start(const std::string& root, int64_t step, int rank, CheckpointSnapshot snapshot,
                                  const std::string& rank_metadata_json, CheckpointWriteOptions options) {
  if (thread_.joinable())
    throw config_error("a checkpoint write was started while the previous one was not waited for",
                       "call wait() before starting the next write", root);
  if (step < 0 || rank < 0) throw config_error("checkpoint step and rank must not be negative", "", root);
  auto job = std::make_shared<Job>();
  try {
    job->metadata = json::parse(rank_metadata_json, "rank metadata");
  } catch (const Error& e) {
    throw config_error("checkpoint rank metadata is not JSON: " + e.what_happened(), "pass a JSON value", root);
  }
  std::vector<const CheckpointPiece*> all;
  for (const auto& p : snapshot.pieces()) all.push_back(&p);
  try {
    io::ckpt::check_pieces_consistent(all, "rank " + std::to_string(rank) + "'s checkpoint snapshot");
  } catch (const Error& e) {
    throw config_error(e.what_happened(), e.hint(), e.where());
  }
  job->root = root;
  job->step = step;
  job->rank = rank;
  job->snapshot = std::move(snapshot);
  job->options = std::move(options);
  job_ = job;
  thread_ = std::thread([job] { run(job); });
}

bool AsyncCheckpointWriter::busy() const { return job_ && !job_->done.load(std::memory_order_acquire); }

CheckpointWriteResult AsyncCheckpointWriter::wait() {
  TESSERA_CHECK(thread_.joinable(), "AsyncCheckpointWriter::wait() without a write started");
  thread_.join();
  CheckpointWriteResult r = std::move(job_->result);
  job_.reset();
  return r;
}

// ---------------------------------------------------------------------------------------------
// Commit

CheckpointCommitResult commit_checkpoint(const std::string& root, int64_t step, int world_size,
                                         const std::string& metadata_json, int keep) {
  if (keep < 0) throw config_error("checkpoints to keep must be 0 (all) or more, not " + std::to_string(keep));
  auto t0 = std::chrono::steady_clock::now();
  io::ckpt::Manifest manifest = io::ckpt::collect_rank_files(root, step, world_size, metadata_json);
  CheckpointCommitResult result;
  std::string name = io::ckpt::publish(root, manifest, &result.manifest_crc32c);
  io::ckpt::point_latest(root, name);
  result.removed = io::ckpt::clean_up(root, name, step, keep);
  result.dir = join(root, name);
  result.step = step;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace tessera
