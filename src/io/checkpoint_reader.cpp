// Loading: verification, the choice of the newest good checkpoint, and reading any rectangle of a
// tensor from whatever pieces overlap it.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>

#include "io/checkpoint_layout.h"
#include "io/crc32c.h"
#include "io/file_util.h"
#include "tessera/checkpoint.h"
#include "tessera/error.h"

namespace tessera {

namespace fs = std::filesystem;
using io::ckpt::join;

namespace {

std::string shape_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

std::string last_component(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return fs::path(p).filename().string();
}

CheckpointInfo info_of(const std::string& dir, const io::ckpt::Manifest& m) {
  CheckpointInfo info;
  info.dir = dir;
  info.step = m.step;
  info.world_size = m.world_size;
  info.sequence = m.sequence;
  info.metadata_json = m.metadata.dump();
  return info;
}

// Converts n consecutive elements.
void convert_run(const char* src, DType from, char* dst, DType to, int64_t n) {
  if (from == to) {
    std::memcpy(dst, src, size_t(n) * dtype_size(from));
  } else if (from == DType::f32 && to == DType::bf16) {
    for (int64_t i = 0; i < n; ++i) {
      float f;
      std::memcpy(&f, src + 4 * i, 4);
      bf16 h = float_to_bf16(f);
      std::memcpy(dst + 2 * i, &h.bits, 2);
    }
  } else {  // bf16 -> f32 (other pairs are refused before copying)
    for (int64_t i = 0; i < n; ++i) {
      bf16 h;
      std::memcpy(&h.bits, src + 2 * i, 2);
      float f = bf16_to_float(h);
      std::memcpy(dst + 4 * i, &f, 4);
    }
  }
}

std::vector<int64_t> row_major_strides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> s(shape.size(), 1);
  for (size_t d = shape.size(); d-- > 1;) s[d - 1] = s[d] * shape[d];
  return s;
}

}  // namespace

std::string CheckpointProblem::message() const {
  std::string s = dir;
  if (!file.empty()) s += ": " + file;
  if (rank >= 0) s += " (rank " + std::to_string(rank) + ")";
  return s + ": " + what;
}

std::string checkpoint_rank_file(const std::string& dir, int rank) { return join(dir, io::ckpt::rank_file_name(rank)); }

std::vector<CheckpointProblem> verify_checkpoint(const std::string& dir, CheckpointVerify verify) {
  std::vector<CheckpointProblem> problems;
  io::ckpt::Manifest m;
  try {
    m = io::ckpt::read_manifest(dir);
  } catch (const Error& e) {
    problems.push_back({dir, io::ckpt::kManifestName, -1, e.what_happened()});
    return problems;
  }
  int64_t step = 0;
  int suffix = 0;
  if (io::ckpt::parse_step_dir_name(last_component(dir), &step, &suffix) && step != m.step)
    problems.push_back({dir, io::ckpt::kManifestName, -1,
                        "the manifest is of step " + std::to_string(m.step) + ", the directory's name says " + std::to_string(step)});
  for (const auto& f : m.files) {
    std::string path = join(dir, f.file);
    std::error_code ec;
    uintmax_t size = fs::file_size(path, ec);
    if (ec) {
      problems.push_back({dir, f.file, f.rank, "missing"});
      continue;
    }
    if (uint64_t(size) != f.bytes) {
      problems.push_back({dir, f.file, f.rank,
                          "holds " + std::to_string(size) + " bytes, expected " + std::to_string(f.bytes) +
                              (uint64_t(size) < f.bytes ? " (truncated)" : "")});
      continue;
    }
    if (verify != CheckpointVerify::checksums) continue;
    try {
      uint64_t read = 0;
      uint32_t crc = io::ckpt::file_crc32c(path, &read);
      if (crc != f.crc32c)
        problems.push_back({dir, f.file, f.rank,
                            "CRC32C " + io::crc32c_hex(crc) + ", expected " + io::crc32c_hex(f.crc32c) + " (the file is corrupt)"});
    } catch (const Error& e) {
      problems.push_back({dir, f.file, f.rank, e.what_happened()});
    }
  }
  return problems;
}

std::optional<CheckpointInfo> find_latest_valid_checkpoint(const std::string& root, std::vector<CheckpointProblem>* rejected,
                                                           CheckpointVerify verify, const CheckpointAcceptor& accept) {
  struct Candidate {
    io::ckpt::CommittedDir dir;
    io::ckpt::Manifest manifest;
  };
  std::vector<Candidate> candidates;
  std::vector<std::pair<int64_t, CheckpointProblem>> unreadable;  // (step, problem)
  auto committed = io::ckpt::list_committed(root);
  for (const auto& d : committed) {
    std::string dir = join(root, d.name);
    try {
      candidates.push_back({d, io::ckpt::read_manifest(dir)});
    } catch (const Error& e) {
      unreadable.emplace_back(d.step, CheckpointProblem{dir, io::ckpt::kManifestName, -1, e.what_happened()});
    }
  }
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
    if (a.manifest.sequence != b.manifest.sequence) return a.manifest.sequence > b.manifest.sequence;
    return a.dir.step != b.dir.step ? a.dir.step > b.dir.step : a.dir.suffix > b.dir.suffix;
  });

  std::vector<CheckpointProblem> problems;
  std::string latest;
  try {
    latest = io::ckpt::read_latest(root);
  } catch (const Error& e) {
    problems.push_back({root, io::ckpt::kLatestName, -1, e.what_happened()});
  }
  if (!latest.empty() && std::none_of(committed.begin(), committed.end(),
                                      [&](const io::ckpt::CommittedDir& d) { return d.name == latest; }))
    problems.push_back({root, io::ckpt::kLatestName, -1, "names '" + latest + "', which is not a committed checkpoint"});

  std::optional<CheckpointInfo> found;
  for (const auto& c : candidates) {
    std::string dir = join(root, c.dir.name);
    auto p = verify_checkpoint(dir, verify);
    if (p.empty()) {
      CheckpointInfo info = info_of(dir, c.manifest);
      std::string why = accept ? accept(info) : std::string();
      if (why.empty()) {
        found = std::move(info);
        break;
      }
      p.push_back({dir, "", -1, why});
    }
    problems.insert(problems.end(), p.begin(), p.end());
  }
  // A directory without a readable manifest counts as rejected unless an older step was chosen over it.
  for (auto& [step, problem] : unreadable)
    if (!found || step >= found->step) problems.push_back(std::move(problem));
  if (rejected) rejected->insert(rejected->end(), problems.begin(), problems.end());
  return found;
}

CheckpointInfo open_checkpoint(const std::string& dir, CheckpointVerify verify) {
  auto problems = verify_checkpoint(dir, verify);
  if (!problems.empty()) {
    std::string what = "checkpoint does not verify:";
    for (const auto& p : problems) what += "\n  " + p.message();
    throw data_error(what, dir, "use an older checkpoint of the same run");
  }
  return info_of(dir, io::ckpt::read_manifest(dir));
}

// ---------------------------------------------------------------------------------------------
// Reader

struct CheckpointReader::Impl {
  struct Ref {
    const io::ckpt::PieceRecord* record;
    size_t file;  // index into manifest.files
  };

  std::string dir;
  io::ckpt::Manifest manifest;
  std::string metadata_json;
  bool verify_on_read = true;
  std::vector<std::string> names;
  std::map<std::string, std::vector<Ref>> tensors;
  mutable std::vector<std::unique_ptr<io::ReadOnlyMapping>> maps;

  const std::vector<Ref>& pieces(const std::string& name) const {
    auto it = tensors.find(name);
    if (it == tensors.end())
      throw data_error("the checkpoint holds no tensor '" + name + "'", dir,
                       "check that it was saved by the same model (tensor_names() lists what it holds)");
    return it->second;
  }

  // The bytes of a file, mapped (and its checksum checked) on first use.
  const char* file_data(size_t i) const {
    const auto& f = manifest.files[i];
    if (!maps[i]) {
      std::string path = join(dir, f.file);
      auto map = std::make_unique<io::ReadOnlyMapping>(io::map_file(path, "checkpoint file"));
      if (uint64_t(map->size) != f.bytes)
        throw data_error("checkpoint file of rank " + std::to_string(f.rank) + " holds " + std::to_string(map->size) +
                             " bytes, expected " + std::to_string(f.bytes),
                         path, "the checkpoint is damaged; use an older one");
      if (verify_on_read) {
        uint32_t crc = io::crc32c(map->data, map->size);
        if (crc != f.crc32c)
          throw data_error("checkpoint file of rank " + std::to_string(f.rank) + " has CRC32C " + io::crc32c_hex(crc) +
                               ", expected " + io::crc32c_hex(f.crc32c),
                           path, "the checkpoint is corrupt; use an older one");
      }
      maps[i] = std::move(map);
    }
    return static_cast<const char*>(maps[i]->data);
  }
};

CheckpointReader::CheckpointReader(const std::string& dir, bool verify_on_read) : impl_(std::make_unique<Impl>()) {
  impl_->dir = dir;
  impl_->manifest = io::ckpt::read_manifest(dir);
  impl_->metadata_json = impl_->manifest.metadata.dump();
  impl_->verify_on_read = verify_on_read;
  impl_->maps.resize(impl_->manifest.files.size());
  for (size_t i = 0; i < impl_->manifest.files.size(); ++i)
    for (const auto& r : impl_->manifest.files[i].pieces) {
      if (r.piece.numel() == 0) continue;
      auto [it, added] = impl_->tensors.try_emplace(r.piece.name);
      if (added) impl_->names.push_back(r.piece.name);
      it->second.push_back({&r, i});
    }
  // Replicas: keep the lowest replica of identical rectangles.
  for (auto& [name, refs] : impl_->tensors) {
    std::stable_sort(refs.begin(), refs.end(),
                     [](const Impl::Ref& a, const Impl::Ref& b) { return a.record->piece.replica < b.record->piece.replica; });
    std::vector<Impl::Ref> unique;
    for (const auto& r : refs)
      if (std::none_of(unique.begin(), unique.end(), [&](const Impl::Ref& u) {
            return u.record->piece.offset == r.record->piece.offset && u.record->piece.shape == r.record->piece.shape;
          }))
        unique.push_back(r);
    refs = std::move(unique);
  }
}

CheckpointReader::~CheckpointReader() = default;
CheckpointReader::CheckpointReader(CheckpointReader&&) noexcept = default;
CheckpointReader& CheckpointReader::operator=(CheckpointReader&&) noexcept = default;

const std::string& CheckpointReader::dir() const { return impl_->dir; }
int64_t CheckpointReader::step() const { return impl_->manifest.step; }
int CheckpointReader::world_size() const { return impl_->manifest.world_size; }
const std::string& CheckpointReader::metadata_json() const { return impl_->metadata_json; }

std::string CheckpointReader::rank_metadata_json(int rank) const {
  if (rank < 0 || rank >= impl_->manifest.world_size)
    throw data_error("the checkpoint was saved by " + std::to_string(impl_->manifest.world_size) + " ranks; it has no rank " +
                         std::to_string(rank),
                     impl_->dir);
  return impl_->manifest.files[size_t(rank)].metadata.dump();
}

std::vector<std::string> CheckpointReader::tensor_names() const { return impl_->names; }
bool CheckpointReader::has(const std::string& name) const { return impl_->tensors.count(name) != 0; }
std::vector<int64_t> CheckpointReader::global_shape(const std::string& name) const {
  return impl_->pieces(name).front().record->piece.global_shape;
}
DType CheckpointReader::dtype(const std::string& name) const { return impl_->pieces(name).front().record->piece.dtype; }

void CheckpointReader::read(const std::string& name, const std::vector<int64_t>& offset, const std::vector<int64_t>& shape,
                            DType dtype, void* out) const {
  const auto& refs = impl_->pieces(name);
  const std::vector<int64_t>& global = refs.front().record->piece.global_shape;
  const size_t n = global.size();
  const std::string what = "rectangle at offset " + shape_str(offset) + " with shape " + shape_str(shape) + " of '" + name + "'";
  if (offset.size() != n || shape.size() != n)
    throw config_error(what + " does not have the " + std::to_string(n) + " dimensions of its global shape " + shape_str(global));
  for (size_t d = 0; d < n; ++d)
    if (offset[d] < 0 || shape[d] < 0 || offset[d] + shape[d] > global[d])
      throw config_error(what + " does not fit its global shape " + shape_str(global));
  const int64_t total = io::ckpt::shape_numel(shape);
  if (total == 0) return;
  TESSERA_CHECK(out != nullptr, "CheckpointReader::read into a null pointer");

  const std::vector<int64_t> dst_strides = row_major_strides(shape);
  const size_t dst_size = dtype_size(dtype);
  char* dst = static_cast<char*>(out);
  int64_t covered = 0;
  for (const auto& ref : refs) {
    const CheckpointPiece& p = ref.record->piece;
    std::vector<int64_t> lo(n), hi(n);
    bool empty = false;
    for (size_t d = 0; d < n; ++d) {
      lo[d] = std::max(offset[d], p.offset[d]);
      hi[d] = std::min(offset[d] + shape[d], p.offset[d] + p.shape[d]);
      empty = empty || lo[d] >= hi[d];
    }
    if (empty) continue;
    if ((p.dtype == DType::i32) != (dtype == DType::i32))
      throw data_error("tensor '" + name + "' was saved as " + dtype_name(p.dtype) + " and cannot be read as " + dtype_name(dtype),
                       impl_->dir, "read it with the dtype it was saved with");
    const char* src = impl_->file_data(ref.file) + ref.record->file_offset;
    const std::vector<int64_t> src_strides = row_major_strides(p.shape);
    const size_t src_size = dtype_size(p.dtype);
    if (n == 0) {
      convert_run(src, p.dtype, dst, dtype, 1);
      covered += 1;
      continue;
    }
    const int64_t run = hi[n - 1] - lo[n - 1];
    std::vector<int64_t> idx = lo;
    for (;;) {
      int64_t s = 0, t = 0;
      for (size_t d = 0; d < n; ++d) {
        s += (idx[d] - p.offset[d]) * src_strides[d];
        t += (idx[d] - offset[d]) * dst_strides[d];
      }
      convert_run(src + s * int64_t(src_size), p.dtype, dst + t * int64_t(dst_size), dtype, run);
      covered += run;
      // Next row: an odometer over every dimension but the last.
      int d = int(n) - 2;
      for (; d >= 0; --d) {
        if (++idx[size_t(d)] < hi[size_t(d)]) break;
        idx[size_t(d)] = lo[size_t(d)];
      }
      if (d < 0) break;
    }
  }
  if (covered != total)
    throw data_error("only " + std::to_string(covered) + " of the " + std::to_string(total) + " elements of the " + what +
                         " were saved",
                     impl_->dir, "the checkpoint does not hold this part of the tensor (was it saved by every rank?)");
}

void CheckpointReader::read_all(const std::string& name, DType dtype, void* out) const {
  std::vector<int64_t> shape = global_shape(name);
  read(name, std::vector<int64_t>(shape.size(), 0), shape, dtype, out);
}

}  // namespace tessera
