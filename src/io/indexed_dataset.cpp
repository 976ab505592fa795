// Megatron-LM's indexed datasets (PREFIX.bin + PREFIX.idx), as megatron/core/datasets/indexed_dataset.py
// writes them: the .idx is checked in full before a token is read.
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "io/file_util.h"
#include "io/token_formats.h"
#include "tessera/error.h"

namespace tessera::io {

namespace {

constexpr char kIndexMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
constexpr int64_t kIndexHeaderBytes = 9 + 8 + 1 + 8 + 8;  // magic, version, dtype code, two counts
constexpr uint8_t kCodeInt32 = 4, kCodeUint16 = 8;
const char* kIndexHint = "regenerate the dataset (Megatron-LM's tools/preprocess_data.py or tools/prepare_data.py)";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

template <class T>
T load(const unsigned char* bytes, int64_t offset) {
  T v;
  std::memcpy(&v, bytes + offset, sizeof v);
  return v;
}

// Megatron's DType enum, for naming codes it writes that are not token types.
const char* dtype_code_name(unsigned code) {
  static const char* names[] = {"?", "uint8", "int8", "int16", "int32", "int64", "float64", "float32", "uint16"};
  return code < sizeof names / sizeof names[0] ? names[code] : "unknown";
}

std::string at_byte(int64_t offset) { return " (at byte " + std::to_string(offset) + " of the .idx)"; }

}  // namespace

bool megatron_paths(const std::string& path, std::string* bin_path, std::string* idx_path) {
  std::string prefix;
  if (ends_with(path, ".idx")) prefix = path.substr(0, path.size() - 4);
  else if (ends_with(path, ".bin") && file_exists(path.substr(0, path.size() - 4) + ".idx"))
    prefix = path.substr(0, path.size() - 4);
  else if (!file_exists(path) && file_exists(path + ".idx")) prefix = path;
  else return false;
  *bin_path = prefix + ".bin";
  *idx_path = prefix + ".idx";
  return true;
}

MegatronIndex read_megatron_index(const std::string& idx_path, const std::string& bin_path, int64_t bin_bytes) {
  ReadOnlyMapping map = map_file(idx_path, "Megatron index");
  const auto* bytes = static_cast<const unsigned char*>(map.data);
  const int64_t size = int64_t(map.size);
  if (size < kIndexHeaderBytes)
    throw data_error("Megatron index is truncated: " + std::to_string(size) + " bytes, smaller than the " +
                         std::to_string(kIndexHeaderBytes) + "-byte header",
                     idx_path, kIndexHint);
  if (std::memcmp(bytes, kIndexMagic, sizeof kIndexMagic) != 0)
    throw data_error("not a Megatron index: the file does not start with MMIDIDX", idx_path, kIndexHint);
  const uint64_t version = load<uint64_t>(bytes, 9);
  if (version != 1)
    throw data_error("unsupported Megatron index version " + std::to_string(version) + " (expected 1)" + at_byte(9),
                     idx_path, kIndexHint);
  const unsigned code = load<uint8_t>(bytes, 17);
  MegatronIndex index;
  if (code == kCodeUint16) index.format = TokenFormat::megatron_u16;
  else if (code == kCodeInt32) index.format = TokenFormat::megatron_i32;
  else
    throw data_error("Megatron index has dtype code " + std::to_string(code) + " (" + dtype_code_name(code) +
                         "), not a token type tessera reads (uint16, code 8, or int32, code 4)" + at_byte(17),
                     idx_path, kIndexHint);
  const int64_t item = code == kCodeUint16 ? 2 : 4;
  const uint64_t n = load<uint64_t>(bytes, 18), d = load<uint64_t>(bytes, 26);
  // Counts beyond the file's size cannot be right, and bounding them first keeps the sums below exact.
  if (n > uint64_t(size) || d > uint64_t(size))
    throw data_error("Megatron index claims " + std::to_string(n) + " sequences and " + std::to_string(d) +
                         " document boundaries, more than its " + std::to_string(size) + " bytes can hold" + at_byte(18),
                     idx_path, kIndexHint);
  index.sequences = int64_t(n);
  const int64_t lengths_at = kIndexHeaderBytes, pointers_at = lengths_at + 4 * int64_t(n);
  const int64_t documents_at = pointers_at + 8 * int64_t(n), expected = documents_at + 8 * int64_t(d);
  if (size != expected) {
    std::string what = "Megatron index has " + std::to_string(size) + " bytes; its " + std::to_string(n) +
                       " sequences and " + std::to_string(d) + " document boundaries take " + std::to_string(expected);
    if (size == expected + int64_t(n)) what += " (the extra bytes are a per-sequence mode array: multimodal data, which tessera does not read)";
    else if (size < expected) what += " (truncated)";
    throw data_error(what, idx_path, kIndexHint);
  }
  if (d < 1)
    throw data_error("Megatron index has no document boundaries (it must list at least the leading 0)" + at_byte(26),
                     idx_path, kIndexHint);

  // The sequences must lie back to back from byte 0, each where the one before ends.
  int64_t next = 0;
  for (int64_t i = 0; i < int64_t(n); ++i) {
    const int32_t length = load<int32_t>(bytes, lengths_at + 4 * i);
    const int64_t pointer = load<int64_t>(bytes, pointers_at + 8 * i);
    if (length < 0)
      throw data_error("sequence " + std::to_string(i) + " has a negative length " + std::to_string(length) +
                           at_byte(lengths_at + 4 * i),
                       idx_path, kIndexHint);
    if (pointer != next)
      throw data_error("sequence " + std::to_string(i) + " starts at byte " + std::to_string(pointer) +
                           " of the .bin, but the sequences before it end at byte " + std::to_string(next) +
                           at_byte(pointers_at + 8 * i),
                       idx_path, kIndexHint);
    next += int64_t(length) * item;
  }
  int64_t previous = -1;
  for (int64_t j = 0; j < int64_t(d); ++j) {
    const int64_t boundary = load<int64_t>(bytes, documents_at + 8 * j);
    const bool ok = j == 0 ? boundary == 0 : boundary >= previous && boundary <= int64_t(n);
    if (!ok)
      throw data_error("document boundary " + std::to_string(j) + " is sequence " + std::to_string(boundary) +
                           (j == 0 ? " (the first must be 0)" : ", outside " + std::to_string(previous) + ".." + std::to_string(n)) +
                           at_byte(documents_at + 8 * j),
                       idx_path, kIndexHint);
    previous = boundary;
  }
  if (previous != int64_t(n))
    throw data_error("the last document boundary is sequence " + std::to_string(previous) + ", not the sequence count " +
                         std::to_string(n) + at_byte(documents_at + 8 * (int64_t(d) - 1)),
                     idx_path, kIndexHint);
  index.documents = int64_t(d) - 1;
  index.tokens = next / item;
  if (bin_bytes != next)
    throw data_error("the .bin has " + std::to_string(bin_bytes) + " bytes, but its index's sequences take " +
                         std::to_string(next) + (bin_bytes < next ? " (truncated)" : " (trailing bytes)"),
                     bin_path, "the .bin and .idx do not belong together; " + std::string(kIndexHint));
  if (index.tokens == 0) throw data_error("Megatron dataset holds no tokens", bin_path, "remove it or regenerate it");
  return index;
}

std::string megatron_locate(const std::string& idx_path, int64_t token) {
  try {
    ReadOnlyMapping map = map_file(idx_path, "Megatron index");
    const auto* bytes = static_cast<const unsigned char*>(map.data);
    const unsigned code = load<uint8_t>(bytes, 17);
    const int64_t item = code == kCodeUint16 ? 2 : 4;
    const int64_t n = int64_t(load<uint64_t>(bytes, 18)), d = int64_t(load<uint64_t>(bytes, 26));
    const int64_t pointers_at = kIndexHeaderBytes + 4 * n, documents_at = pointers_at + 8 * n;
    const int64_t byte = token * item;
    // The last sequence starting at or before the byte (a binary search over the read-back pointers).
    int64_t lo = 0, hi = n;
    while (hi - lo > 1) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (load<int64_t>(bytes, pointers_at + 8 * mid) <= byte) lo = mid;
      else hi = mid;
    }
    int64_t document = 0, last = d - 2;  // the last document whose first sequence is <= lo
    while (document < last) {
      const int64_t mid = document + (last - document + 1) / 2;
      if (load<int64_t>(bytes, documents_at + 8 * mid) <= lo) document = mid;
      else last = mid - 1;
    }
    return "sequence " + std::to_string(lo) + ", document " + std::to_string(document);
  } catch (const Error&) {
    return "";
  }
}

}  // namespace tessera::io
