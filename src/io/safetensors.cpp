// Hugging Face safetensors, read through mmap and written atomically.
#include <algorithm>
#include <cstring>
#include <set>

#include "io/file_util.h"
#include "io/json.h"
#include "tessera/error.h"
#include "tessera/safetensors.h"

namespace tessera {

namespace {

// The reference implementation refuses headers above 100 MB; so do we (a corrupt length
// would otherwise make us parse the whole file as JSON).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kMetadataKey = "__metadata__";
constexpr const char* kReadHint = "the file is not valid safetensors; re-export or re-download it";

uint64_t read_u64_le(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void write_u64_le(unsigned char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

// Element count times element size, or false on overflow or a negative dimension.
bool byte_size(const std::vector<int64_t>& shape, size_t element_bytes, uint64_t* out) {
  unsigned __int128 n = element_bytes;
  for (int64_t d : shape) {
    if (d < 0) return false;
    n *= uint64_t(d);
    if (n > (unsigned __int128)(UINT64_MAX)) return false;
  }
  *out = uint64_t(n);
  return true;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

size_t safetensors_dtype_size(const std::string& dtype) {
  static const std::pair<const char*, size_t> kSizes[] = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
      {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1},  {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  for (const auto& [name, size] : kSizes)
    if (dtype == name) return size;
  return 0;
}

int64_t safetensors_first_non_finite(const SafetensorsEntry& e) {
  const char* raw = static_cast<const char*>(e.data);
  // A float is not finite exactly when its exponent bits are all ones.
  auto scan = [&](size_t elem, uint64_t exponent_mask) -> int64_t {
    const size_t n = e.bytes / elem;
    for (size_t i = 0; i < n; ++i) {
      uint64_t bits = 0;
      std::memcpy(&bits, raw + i * elem, elem);  // little-endian, as safetensors stores it
      if ((bits & exponent_mask) == exponent_mask) return int64_t(i);
    }
    return -1;
  };
  if (e.dtype == "F64") return scan(8, 0x7ff0000000000000ull);
  if (e.dtype == "F32") return scan(4, 0x7f800000u);
  if (e.dtype == "BF16") return scan(2, 0x7f80u);
  if (e.dtype == "F16") return scan(2, 0x7c00u);
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Writing

void write_safetensors(const std::string& path, const std::vector<SafetensorsEntry>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json::Value header = json::Value::object();
  if (!metadata.empty()) {
    json::Value meta = json::Value::object();
    for (const auto& [key, value] : metadata) meta.set(key, value);
    header.set(kMetadataKey, std::move(meta));
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const SafetensorsEntry& t : tensors) {
    if (t.name.empty() || t.name == kMetadataKey)
      throw config_error("invalid tensor name '" + t.name + "' for safetensors", "", path);
    if (!names.insert(t.name).second) throw config_error("duplicate tensor name '" + t.name + "'", "", path);
    size_t element_bytes = safetensors_dtype_size(t.dtype);
    if (element_bytes == 0)
      throw config_error("tensor '" + t.name + "' has unknown safetensors dtype '" + t.dtype + "'",
                         "use F32, BF16, F16, I32 or I64", path);
    uint64_t expected = 0;
    if (!byte_size(t.shape, element_bytes, &expected) || expected != t.bytes)
      throw config_error("tensor '" + t.name + "': " + std::to_string(t.bytes) + " bytes do not match shape " +
                             shape_string(t.shape) + " of " + t.dtype,
                         "", path);
    if (t.bytes > 0 && t.data == nullptr) throw config_error("tensor '" + t.name + "' has no data", "", path);
    json::Value entry = json::Value::object();
    entry.set("dtype", t.dtype);
    json::Value shape = json::Value::array();
    for (int64_t d : t.shape) shape.push_back(d);
    entry.set("shape", std::move(shape));
    json::Value offsets = json::Value::array();
    offsets.push_back(offset);
    offsets.push_back(offset + t.bytes);
    entry.set("data_offsets", std::move(offsets));
    header.set(t.name, std::move(entry));
    offset += t.bytes;
  }
  std::string text = header.dump();
  // Padding keeps the data 8-byte aligned from the start of the file.
  text.append((8 - text.size() % 8) % 8, ' ');

  unsigned char length[8];
  write_u64_le(length, text.size());
  io::AtomicFileWriter out(path, "safetensors file");
  out.write(length, sizeof length);
  out.write(text);
  for (const SafetensorsEntry& t : tensors) out.write(t.data, t.bytes);
  out.commit();
}

// ---------------------------------------------------------------------------------------------
// Reading

SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path) {
  auto bad = [&](const std::string& what) -> Error { return data_error(what, path, kReadHint); };

  io::ReadOnlyMapping mapping = io::map_file(path, "safetensors file");
  const auto* bytes = static_cast<const unsigned char*>(mapping.data);
  const uint64_t file_bytes = mapping.size;
  if (file_bytes < 8)
    throw bad("safetensors file is too small (" + std::to_string(file_bytes) +
              " bytes) to hold the 8-byte header length");
  const uint64_t header_bytes = read_u64_le(bytes);
  if (header_bytes > file_bytes - 8)
    throw bad("safetensors header length " + std::to_string(header_bytes) + " exceeds the file size (" +
              std::to_string(file_bytes) + " bytes)");
  if (header_bytes > kMaxHeaderBytes)
    throw bad("safetensors header length " + std::to_string(header_bytes) + " exceeds the 100 MB limit");
  if (header_bytes < 2 || bytes[8] != '{')
    throw bad("safetensors header does not start with a JSON object");
  const json::Value header = json::parse(reinterpret_cast<const char*>(bytes + 8), size_t(header_bytes), path);
  if (!header.is_object()) throw bad("safetensors header is not a JSON object");

  const uint64_t data_start = 8 + header_bytes;
  const uint64_t data_bytes = file_bytes - data_start;
  struct Range {
    uint64_t begin, end;
    size_t entry;
  };
  std::vector<Range> ranges;
  for (const json::Value::Member& m : header.members()) {
    if (m.key == kMetadataKey) {
      if (!m.value.is_object()) throw bad("\"__metadata__\" is not a JSON object");
      for (const json::Value::Member& kv : m.value.members()) {
        if (!kv.value.is_string()) throw bad("\"__metadata__\" value of \"" + kv.key + "\" is not a string");
        metadata_[kv.key] = kv.value.as_string();
      }
      continue;
    }
    const std::string what = "tensor '" + m.key + "': ";
    if (!m.value.is_object()) throw bad(what + "header entry is not a JSON object");
    const json::Value* dtype = m.value.find("dtype");
    const json::Value* shape = m.value.find("shape");
    const json::Value* offsets = m.value.find("data_offsets");
    if (!dtype || !dtype->is_string()) throw bad(what + "missing or non-string \"dtype\"");
    if (!shape || !shape->is_array()) throw bad(what + "missing or non-array \"shape\"");
    if (!offsets || !offsets->is_array() || offsets->size() != 2)
      throw bad(what + "\"data_offsets\" is not an array of two integers");
    const size_t element_bytes = safetensors_dtype_size(dtype->as_string());
    if (element_bytes == 0) throw bad(what + "unknown dtype '" + dtype->as_string() + "'");
    SafetensorsEntry entry;
    entry.name = m.key;
    entry.dtype = dtype->as_string();
    for (const json::Value& d : shape->items()) {
      if (!d.is_integer() || d.as_int64() < 0) throw bad(what + "shape holds something other than sizes >= 0");
      entry.shape.push_back(d.as_int64());
    }
    for (const json::Value& o : offsets->items())
      if (!o.is_integer() || o.as_int64() < 0) throw bad(what + "\"data_offsets\" are not integers >= 0");
    const uint64_t begin = uint64_t((*offsets)[0].as_int64());
    const uint64_t end = uint64_t((*offsets)[1].as_int64());
    if (end < begin)
      throw bad(what + "data offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "] are reversed");
    if (end > data_bytes)
      throw bad(what + "data offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                "] reach beyond the end of the data (" + std::to_string(data_bytes) + " bytes)");
    uint64_t expected = 0;
    if (!byte_size(entry.shape, element_bytes, &expected))
      throw bad(what + "shape " + shape_string(entry.shape) + " of " + entry.dtype + " needs more than 2^64 bytes");
    if (expected != end - begin)
      throw bad(what + "shape " + shape_string(entry.shape) + " of " + entry.dtype + " needs " +
                std::to_string(expected) + " bytes but its data offsets span " + std::to_string(end - begin));
    entry.data = bytes + data_start + begin;
    entry.bytes = size_t(end - begin);
    ranges.push_back(Range{begin, end, entries_.size()});
    index_[entry.name] = entries_.size();
    entries_.push_back(std::move(entry));
  }

  // The data must be covered exactly once: sorted by offset, each tensor starts where the last ended.
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  const std::string* previous = nullptr;
  for (const Range& r : ranges) {
    const std::string& name = entries_[r.entry].name;
    if (r.begin < cursor)
      throw bad("tensor '" + name + "' overlaps tensor '" + *previous + "' (data offsets from " +
                std::to_string(r.begin) + ", previous tensor ends at " + std::to_string(cursor) + ")");
    if (r.begin > cursor)
      throw bad("hole in the data before tensor '" + name + "' (bytes " + std::to_string(cursor) + " to " +
                std::to_string(r.begin) + " belong to no tensor)");
    cursor = r.end;
    previous = &name;
  }
  if (cursor != data_bytes)
    throw bad(std::to_string(data_bytes - cursor) + " trailing bytes after the last tensor's data");

  map_ = mapping.release(&map_bytes_);
}

SafetensorsReader::~SafetensorsReader() { release(); }

void SafetensorsReader::release() {
  if (map_) io::unmap(map_, map_bytes_);
  map_ = nullptr;
  map_bytes_ = 0;
}

SafetensorsReader::SafetensorsReader(SafetensorsReader&& other) noexcept
    : path_(std::move(other.path_)),
      map_(other.map_),
      map_bytes_(other.map_bytes_),
      entries_(std::move(other.entries_)),
      index_(std::move(other.index_)),
      metadata_(std::move(other.metadata_)) {
  other.map_ = nullptr;
  other.map_bytes_ = 0;
}

SafetensorsReader& SafetensorsReader::operator=(SafetensorsReader&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    map_ = other.map_;
    map_bytes_ = other.map_bytes_;
    entries_ = std::move(other.entries_);
    index_ = std::move(other.index_);
    metadata_ = std::move(other.metadata_);
    other.map_ = nullptr;
    other.map_bytes_ = 0;
  }
  return *this;
}

std::vector<std::string> SafetensorsReader::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const SafetensorsEntry& e : entries_) out.push_back(e.name);
  return out;
}

bool SafetensorsReader::has(const std::string& name) const { return index_.count(name) != 0; }

const SafetensorsEntry& SafetensorsReader::entry(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end())
    throw data_error("no tensor named '" + name + "' in the safetensors file", path_,
                     "check that the file holds the expected model (its tensor names differ)");
  return entries_[it->second];
}

}  // namespace tessera
