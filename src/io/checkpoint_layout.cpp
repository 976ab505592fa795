#include "io/checkpoint_layout.h"

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>

#include <fcntl.h>
#include <unistd.h>

#include "io/crc32c.h"
#include "io/file_util.h"
#include "tessera/error.h"

namespace tessera::io::ckpt {

namespace fs = std::filesystem;

namespace {

std::string padded(int64_t v, int width) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%0*" PRId64, width, v);
  return buf;
}

bool all_digits(const std::string& s) {
  return !s.empty() && s.size() <= 18 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

json::Value shape_json(const std::vector<int64_t>& v) {
  json::Value a = json::Value::array();
  for (int64_t x : v) a.push_back(x);
  return a;
}

std::vector<int64_t> shape_from_json(const json::Value& v) {
  std::vector<int64_t> out;
  for (const auto& x : v.items()) out.push_back(x.as_int64());
  return out;
}

uint64_t to_u64(int64_t v, const char* what) {
  if (v < 0) throw data_error(std::string(what) + " is negative", "checkpoint manifest");
  return uint64_t(v);
}

std::string shape_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// Empty when the piece's geometry is sound, else what is wrong with it.
std::string geometry_problem(const CheckpointPiece& p) {
  if (p.name.empty()) return "a piece has no name";
  size_t n = p.global_shape.size();
  if (p.offset.size() != n || p.shape.size() != n)
    return "piece of '" + p.name + "': global shape " + shape_str(p.global_shape) + ", offset " + shape_str(p.offset) +
           " and shape " + shape_str(p.shape) + " do not have the same number of dimensions";
  for (size_t d = 0; d < n; ++d) {
    if (p.global_shape[d] < 0 || p.offset[d] < 0 || p.shape[d] < 0 || p.offset[d] + p.shape[d] > p.global_shape[d])
      return "piece of '" + p.name + "' at offset " + shape_str(p.offset) + " with shape " + shape_str(p.shape) +
             " does not fit the global shape " + shape_str(p.global_shape);
  }
  return "";
}

}  // namespace

std::string step_dir_name(int64_t step) { return "step-" + padded(step, 8); }
std::string tmp_dir_name(int64_t step) { return ".tmp-" + step_dir_name(step); }
std::string rank_file_name(int rank) { return "rank-" + padded(rank, 5) + ".bin"; }
std::string rank_info_name(int rank) { return "rank-" + padded(rank, 5) + ".json"; }

bool parse_step_dir_name(const std::string& name, int64_t* step, int* suffix) {
  if (name.rfind("step-", 0) != 0) return false;
  std::string rest = name.substr(5), number = rest, extra;
  if (auto dot = rest.find('.'); dot != std::string::npos) {
    number = rest.substr(0, dot);
    extra = rest.substr(dot + 1);
    if (!all_digits(extra) || extra.size() > 6) return false;
  }
  if (!all_digits(number)) return false;
  *step = std::stoll(number);
  *suffix = extra.empty() ? 0 : std::stoi(extra);
  return true;
}

bool parse_tmp_dir_name(const std::string& name, int64_t* step) {
  int suffix = 0;
  return name.rfind(".tmp-", 0) == 0 && parse_step_dir_name(name.substr(5), step, &suffix) && suffix == 0;
}

std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

DType parse_piece_dtype(const std::string& s, const std::string& where) {
  if (s == "f32") return DType::f32;
  if (s == "bf16") return DType::bf16;
  if (s == "i32") return DType::i32;
  throw data_error("unknown dtype '" + s + "' in a checkpoint piece", where, "the checkpoint is damaged or newer than this tessera");
}

json::Value to_json(const FileRecord& f) {
  json::Value v = json::Value::object();
  v.set("rank", f.rank);
  v.set("file", f.file);
  v.set("bytes", f.bytes);
  v.set("crc32c", crc32c_hex(f.crc32c));
  v.set("metadata", f.metadata);
  json::Value pieces = json::Value::array();
  for (const auto& r : f.pieces) {
    json::Value p = json::Value::object();
    p.set("name", r.piece.name);
    p.set("dtype", dtype_name(r.piece.dtype));
    p.set("global_shape", shape_json(r.piece.global_shape));
    p.set("offset", shape_json(r.piece.offset));
    p.set("shape", shape_json(r.piece.shape));
    p.set("replica", r.piece.replica);
    p.set("file_offset", r.file_offset);
    p.set("bytes", r.bytes);
    pieces.push_back(std::move(p));
  }
  v.set("pieces", std::move(pieces));
  return v;
}

FileRecord file_record_from_json(const json::Value& v, const std::string& where) {
  try {
    FileRecord f;
    int64_t rank = v.at("rank").as_int64();
    if (rank < 0 || rank > INT32_MAX) throw data_error("rank " + std::to_string(rank) + " out of range", where);
    f.rank = int(rank);
    f.file = v.at("file").as_string();
    if (f.file.empty() || f.file.find('/') != std::string::npos || f.file[0] == '.')
      throw data_error("file name '" + f.file + "' is not a plain name", where);
    f.bytes = to_u64(v.at("bytes").as_int64(), "file size");
    if (!parse_crc32c_hex(v.at("crc32c").as_string(), &f.crc32c))
      throw data_error("crc32c '" + v.at("crc32c").as_string() + "' is not eight hex digits", where);
    if (const json::Value* m = v.find("metadata")) f.metadata = *m;
    for (const auto& p : v.at("pieces").items()) {
      PieceRecord r;
      r.piece.name = p.at("name").as_string();
      r.piece.dtype = parse_piece_dtype(p.at("dtype").as_string(), where);
      r.piece.global_shape = shape_from_json(p.at("global_shape"));
      r.piece.offset = shape_from_json(p.at("offset"));
      r.piece.shape = shape_from_json(p.at("shape"));
      r.piece.replica = int(p.at("replica").as_int64());
      r.file_offset = to_u64(p.at("file_offset").as_int64(), "piece offset");
      r.bytes = to_u64(p.at("bytes").as_int64(), "piece size");
      if (std::string problem = geometry_problem(r.piece); !problem.empty()) throw data_error(problem, where);
      if (r.bytes != r.piece.nbytes())
        throw data_error("piece of '" + r.piece.name + "' holds " + std::to_string(r.bytes) + " bytes, but its shape " +
                             shape_str(r.piece.shape) + " of " + dtype_name(r.piece.dtype) + " needs " +
                             std::to_string(r.piece.nbytes()),
                         where);
      if (r.file_offset > f.bytes || r.bytes > f.bytes - r.file_offset)
        throw data_error("piece of '" + r.piece.name + "' lies beyond the end of " + f.file, where);
      f.pieces.push_back(std::move(r));
    }
    return f;
  } catch (const Error& e) {
    if (e.where() == where) throw;
    throw data_error(e.what_happened(), where, "the checkpoint is damaged; an older one can be used");
  }
}

json::Value to_json(const Manifest& m) {
  json::Value v = json::Value::object();
  v.set("format", kFormat);
  v.set("version", kVersion);
  v.set("step", m.step);
  v.set("sequence", m.sequence);
  v.set("world_size", m.world_size);
  v.set("created", m.created);
  v.set("metadata", m.metadata);
  json::Value files = json::Value::array();
  for (const auto& f : m.files) files.push_back(to_json(f));
  v.set("files", std::move(files));
  return v;
}

Manifest manifest_from_json(const json::Value& v, const std::string& where) {
  Manifest m;
  try {
    if (v.at("format").as_string() != kFormat) throw data_error("not a tessera checkpoint manifest", where);
    if (v.at("version").as_int64() != kVersion)
      throw data_error("manifest version " + std::to_string(v.at("version").as_int64()) + " is not supported (this tessera reads " +
                           std::to_string(kVersion) + ")",
                       where);
    m.step = v.at("step").as_int64();
    if (m.step < 0) throw data_error("step " + std::to_string(m.step) + " is negative", where);
    m.sequence = v.at("sequence").as_int64();
    int64_t world = v.at("world_size").as_int64();
    if (world < 1 || world > INT32_MAX) throw data_error("world size " + std::to_string(world) + " out of range", where);
    m.world_size = int(world);
    m.created = v.at("created").as_string();
    m.metadata = v.at("metadata");
    for (const auto& f : v.at("files").items()) m.files.push_back(file_record_from_json(f, where));
  } catch (const Error& e) {
    if (e.where() == where) throw;
    throw data_error(e.what_happened(), where, "the checkpoint is damaged; an older one can be used");
  }
  if (int(m.files.size()) != m.world_size)
    throw data_error("manifest lists " + std::to_string(m.files.size()) + " files for " + std::to_string(m.world_size) + " ranks",
                     where);
  for (int r = 0; r < m.world_size; ++r)
    if (m.files[size_t(r)].rank != r) throw data_error("manifest files are not in rank order", where);
  std::vector<const CheckpointPiece*> all;
  for (const auto& f : m.files)
    for (const auto& p : f.pieces) all.push_back(&p.piece);
  check_pieces_consistent(all, where);
  return m;
}

std::string commit_record(const std::string& manifest_text) {
  json::Value v = json::Value::object();
  v.set("manifest", kManifestName);
  v.set("bytes", uint64_t(manifest_text.size()));
  v.set("crc32c", crc32c_hex(crc32c(manifest_text.data(), manifest_text.size())));
  return v.dump() + "\n";
}

Manifest read_manifest(const std::string& dir) {
  const std::string path = join(dir, kManifestName), record_path = join(dir, kCommitRecordName);
  const char* hint = "the checkpoint is damaged; an older one can be used";
  uint64_t bytes = 0;
  uint32_t crc = 0;
  try {
    const json::Value record = json::parse(read_file(record_path, "checkpoint commit record"), record_path);
    const int64_t n = record.at("bytes").as_int64();
    if (n < 0 || !parse_crc32c_hex(record.at("crc32c").as_string(), &crc))
      throw data_error("the commit record's size or CRC32C is malformed", record_path, hint);
    bytes = uint64_t(n);
  } catch (const Error& e) {
    if (e.where() == record_path) throw;
    throw data_error(e.what_happened(), record_path, hint);
  }
  const std::string text = read_file(path, "checkpoint manifest");
  const uint32_t actual = crc32c(text.data(), text.size());
  if (text.size() != bytes || actual != crc)
    throw data_error("the manifest (" + std::to_string(text.size()) + " bytes, CRC32C " + crc32c_hex(actual) +
                         ") does not match its commit record (" + std::to_string(bytes) + " bytes, CRC32C " +
                         crc32c_hex(crc) + ")",
                     path, hint);
  return manifest_from_json(json::parse(text, path), path);
}

int64_t shape_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void check_piece_geometry(const CheckpointPiece& p, const std::string& where) {
  if (std::string problem = geometry_problem(p); !problem.empty())
    throw config_error(problem, "describe each piece by its global shape and the offset and shape of its rectangle", where);
}

void check_pieces_consistent(const std::vector<const CheckpointPiece*>& pieces, const std::string& where) {
  std::map<std::string, std::vector<const CheckpointPiece*>> by_name;
  for (const CheckpointPiece* p : pieces) by_name[p->name].push_back(p);
  for (const auto& [name, list] : by_name) {
    for (size_t i = 0; i < list.size(); ++i) {
      const CheckpointPiece& a = *list[i];
      if (a.global_shape != list[0]->global_shape)
        throw data_error("pieces of '" + name + "' disagree on its global shape: " + shape_str(list[0]->global_shape) +
                             " and " + shape_str(a.global_shape),
                         where);
      if (a.numel() == 0) continue;
      for (size_t j = 0; j < i; ++j) {
        const CheckpointPiece& b = *list[j];
        if (b.numel() == 0 || (a.offset == b.offset && a.shape == b.shape)) continue;  // replicas are identical
        bool overlap = true;
        for (size_t d = 0; d < a.offset.size() && overlap; ++d)
          overlap = std::max(a.offset[d], b.offset[d]) < std::min(a.offset[d] + a.shape[d], b.offset[d] + b.shape[d]);
        if (overlap)
          throw data_error("pieces of '" + name + "' at offsets " + shape_str(b.offset) + " (shape " + shape_str(b.shape) +
                               ") and " + shape_str(a.offset) + " (shape " + shape_str(a.shape) + ") partly overlap",
                           where, "each element of a tensor must be saved by one piece (or by identical replicas)");
      }
    }
  }
}

std::vector<CommittedDir> list_committed(const std::string& root) {
  std::vector<CommittedDir> out;
  std::error_code ec;
  fs::directory_iterator it(root, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    CommittedDir d;
    d.name = it->path().filename().string();
    std::error_code dir_ec;
    if (parse_step_dir_name(d.name, &d.step, &d.suffix) && it->is_directory(dir_ec)) out.push_back(d);
  }
  return out;
}

std::string read_latest(const std::string& root) {
  std::error_code ec;
  std::string path = join(root, kLatestName);
  if (!fs::is_regular_file(path, ec)) return "";
  std::string s = read_file(path, "checkpoint pointer");
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

void sync_directory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw data_error("cannot open directory to sync it: " + std::string(std::strerror(errno)), dir);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0 && err != EINVAL && err != EROFS)
    throw data_error("cannot sync directory: " + std::string(std::strerror(err)), dir, "check the file system");
}

uint32_t file_crc32c(const std::string& path, uint64_t* bytes) {
  struct stat st;
  int fd = open_for_reading(path, "checkpoint file", &st);
  std::vector<char> buf(size_t(8) << 20);
  uint32_t crc = 0;
  uint64_t total = 0;
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      throw data_error("cannot read checkpoint file: " + std::string(std::strerror(err)), path);
    }
    if (n == 0) break;
    crc = crc32c(buf.data(), size_t(n), crc);
    total += uint64_t(n);
  }
  ::close(fd);
  *bytes = total;
  return crc;
}

Manifest collect_rank_files(const std::string& root, int64_t step, int world_size, const std::string& metadata_json) {
  if (world_size < 1) throw config_error("commit_checkpoint: world size must be at least 1", "", root);
  const std::string tmp = join(root, tmp_dir_name(step));
  const std::string hint = "commit only after every rank's AsyncCheckpointWriter::wait() succeeded";
  std::error_code ec;
  if (!fs::is_directory(tmp, ec))
    throw data_error("no checkpoint of step " + std::to_string(step) + " is being written (its temporary directory is missing)",
                     tmp, hint);
  Manifest m;
  m.step = step;
  m.world_size = world_size;
  m.created = utc_now();
  try {
    m.metadata = json::parse(metadata_json, "checkpoint metadata");
  } catch (const Error& e) {
    throw config_error("checkpoint metadata is not JSON: " + e.what_happened(), "pass a JSON value", root);
  }
  for (int r = 0; r < world_size; ++r) {
    std::string info = join(tmp, rank_info_name(r));
    if (!fs::is_regular_file(info, ec))
      throw data_error("rank " + std::to_string(r) + " has not finished writing its checkpoint file", info, hint);
    FileRecord f = file_record_from_json(json::parse(read_file(info, "checkpoint rank description"), info), info);
    if (f.rank != r || f.file != rank_file_name(r))
      throw data_error("rank description names rank " + std::to_string(f.rank) + " and file " + f.file, info, hint);
    std::string data = join(tmp, f.file);
    uintmax_t size = fs::file_size(data, ec);
    if (ec) throw data_error("rank " + std::to_string(r) + "'s checkpoint file is missing", data, hint);
    if (uint64_t(size) != f.bytes)
      throw data_error("rank " + std::to_string(r) + "'s checkpoint file holds " + std::to_string(size) + " bytes, expected " +
                           std::to_string(f.bytes),
                       data, hint);
    m.files.push_back(std::move(f));
  }
  std::vector<const CheckpointPiece*> all;
  for (const auto& f : m.files)
    for (const auto& p : f.pieces) all.push_back(&p.piece);
  check_pieces_consistent(all, tmp);

  int64_t newest = 0;
  for (const auto& d : list_committed(root)) {
    try {
      newest = std::max(newest, read_manifest(join(root, d.name)).sequence);
    } catch (const Error&) {
      // A damaged directory has no say in the order.
    }
  }
  m.sequence = newest + 1;

  // Files of a crashed earlier attempt (more ranks, half-written .tmp files) would only confuse.
  for (fs::directory_iterator it(tmp, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    bool listed = false;
    for (int r = 0; r < world_size && !listed; ++r) listed = name == rank_file_name(r) || name == rank_info_name(r);
    if (!listed) {
      std::error_code rm_ec;
      fs::remove_all(it->path(), rm_ec);
    }
  }
  return m;
}

std::string publish(const std::string& root, const Manifest& manifest, uint32_t* manifest_crc32c) {
  const std::string tmp = join(root, tmp_dir_name(manifest.step));
  const std::string text = to_json(manifest).dump() + "\n";
  {
    AtomicFileWriter w(join(tmp, kManifestName), "checkpoint manifest");
    w.write(text);
    w.commit();
  }
  {
    AtomicFileWriter w(join(tmp, kCommitRecordName), "checkpoint commit record");
    w.write(commit_record(text));
    w.commit();
  }
  if (manifest_crc32c) *manifest_crc32c = crc32c(text.data(), text.size());
  for (int r = 0; r < manifest.world_size; ++r) std::remove(join(tmp, rank_info_name(r)).c_str());
  sync_directory(tmp);

  std::string name = step_dir_name(manifest.step);
  std::error_code ec;
  for (int suffix = 1; fs::exists(join(root, name), ec); ++suffix) name = step_dir_name(manifest.step) + "." + std::to_string(suffix);
  if (std::rename(tmp.c_str(), join(root, name).c_str()) != 0)
    throw data_error("cannot move the checkpoint into place: " + std::string(std::strerror(errno)), join(root, name),
                     "check that the checkpoint directory is writable");
  sync_directory(root);
  return name;
}

void point_latest(const std::string& root, const std::string& name) {
  AtomicFileWriter w(join(root, kLatestName), "checkpoint pointer");
  w.write(name + "\n");
  w.commit();
  sync_directory(root);
}

std::vector<std::string> clean_up(const std::string& root, const std::string& name, int64_t step, int keep) {
  std::vector<std::string> removed;
  auto remove = [&](const std::string& entry) {
    std::error_code ec;
    fs::remove_all(join(root, entry), ec);
    if (!ec) removed.push_back(entry);
  };
  std::error_code ec;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    int64_t s;
    std::string entry = it->path().filename().string();
    if (parse_tmp_dir_name(entry, &s)) remove(entry);
  }
  std::vector<CommittedDir> older;
  for (const auto& d : list_committed(root)) {
    if (d.name == name) continue;
    if (d.step >= step) remove(d.name);  // an abandoned run's future, or an earlier commit of this step
    else older.push_back(d);
  }
  if (keep > 0) {
    std::sort(older.begin(), older.end(), [](const CommittedDir& a, const CommittedDir& b) {
      return a.step != b.step ? a.step > b.step : a.suffix > b.suffix;
    });
    for (size_t i = size_t(keep - 1); i < older.size(); ++i) remove(older[i].name);
  }
  return removed;
}

}  // namespace tessera::io::ckpt
