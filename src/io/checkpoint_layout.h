// What a checkpoint looks like on disk (private): names, the manifest and its JSON, piece geometry,
// and the commit's stages, which commit_checkpoint runs in order (tests run a prefix of them to
// stand for a crash in between).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/json.h"
#include "tessera/checkpoint.h"

namespace tessera::io::ckpt {

constexpr const char* kManifestName = "manifest.json";
constexpr const char* kCommitRecordName = "commit.json";
constexpr const char* kLatestName = "latest";
constexpr const char* kFormat = "tessera-checkpoint";
constexpr int kVersion = 1;
// Pieces start at multiples of this in a rank's file, so a mapped piece is aligned for any dtype.
constexpr uint64_t kPieceAlignment = 64;

std::string step_dir_name(int64_t step);  // "step-00000030"
std::string tmp_dir_name(int64_t step);   // ".tmp-step-00000030"
std::string rank_file_name(int rank);     // "rank-00003.bin"
std::string rank_info_name(int rank);     // "rank-00003.json"
// "step-00000030" or "step-00000030.2" (a second commit of the same step); false for other names.
bool parse_step_dir_name(const std::string& name, int64_t* step, int* suffix);
bool parse_tmp_dir_name(const std::string& name, int64_t* step);
std::string join(const std::string& dir, const std::string& name);

// A piece as stored: its geometry (data unused) and where its bytes are in its file.
struct PieceRecord {
  CheckpointPiece piece;
  uint64_t file_offset = 0;
  uint64_t bytes = 0;
};

// One rank's file.
struct FileRecord {
  int rank = 0;
  std::string file;  // name within the checkpoint directory
  uint64_t bytes = 0;
  uint32_t crc32c = 0;
  json::Value metadata = json::Value::object();
  std::vector<PieceRecord> pieces;
};

struct Manifest {
  int64_t step = 0;
  int64_t sequence = 0;
  int world_size = 0;
  std::string created;  // UTC, ISO 8601
  json::Value metadata = json::Value::object();
  std::vector<FileRecord> files;  // ordered by rank
};

json::Value to_json(const FileRecord& f);
FileRecord file_record_from_json(const json::Value& v, const std::string& where);
json::Value to_json(const Manifest& m);
Manifest manifest_from_json(const json::Value& v, const std::string& where);
// The manifest, after its bytes were checked against the commit record (data error naming the
// file that is missing, damaged or does not match).
Manifest read_manifest(const std::string& dir);
// The commit record of a manifest's exact bytes: {"manifest":"manifest.json","bytes":N,"crc32c":"..."}.
std::string commit_record(const std::string& manifest_text);

DType parse_piece_dtype(const std::string& s, const std::string& where);

// Geometry. A piece fits when every vector has the global shape's rank, 0 <= offset, shape >= 0
// and offset + shape <= global_shape (config error naming the piece otherwise).
int64_t shape_numel(const std::vector<int64_t>& shape);
void check_piece_geometry(const CheckpointPiece& p, const std::string& where);
// The pieces of each tensor agree on the global shape and do not partly overlap (identical
// rectangles are replicas). Data error naming the tensor otherwise.
void check_pieces_consistent(const std::vector<const CheckpointPiece*>& pieces, const std::string& where);

// The committed directories under root (unsorted); empty when root does not exist.
struct CommittedDir {
  std::string name;
  int64_t step = 0;
  int suffix = 0;
};
std::vector<CommittedDir> list_committed(const std::string& root);
std::string read_latest(const std::string& root);  // the name `latest` holds, "" when absent

// Files and directories.
void sync_directory(const std::string& dir);  // fsync, so renames and new entries are durable
// CRC32C of a whole file and its size, reading in large chunks; data error if unreadable.
uint32_t file_crc32c(const std::string& path, uint64_t* bytes);

// Commit stages.
// 1. The ranks' descriptions from the temporary directory, with the job's metadata; the sequence
//    follows the newest committed one. Removes files of the temporary directory that no rank listed.
Manifest collect_rank_files(const std::string& root, int64_t step, int world_size, const std::string& metadata_json);
// 2. Writes the manifest and its commit record into the temporary directory and renames it into
//    place; returns its name. *manifest_crc32c (when given): the manifest's CRC32C.
std::string publish(const std::string& root, const Manifest& manifest, uint32_t* manifest_crc32c = nullptr);
// 3. Points `latest` at a published directory (write + rename).
void point_latest(const std::string& root, const std::string& name);
// 4. Removes other temporary directories, directories of step >= the new one's other than it
//    (left by an abandoned run), and all but the newest `keep` (0: all). Returns what it removed.
std::vector<std::string> clean_up(const std::string& root, const std::string& name, int64_t step, int keep);

}  // namespace tessera::io::ckpt
