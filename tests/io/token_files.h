// Token files built byte by byte for the data tests, from the formats' documented layouts (not from
// the library's writers, so a reader and a writer cannot agree on a mistake).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "io/io_test_util.h"

namespace tessera::test {

template <class T>
void append_raw(std::string& bytes, T value) {
  bytes.append(reinterpret_cast<const char*>(&value), sizeof value);
}

// A Megatron indexed dataset's two files, as Megatron-LM's IndexedDatasetBuilder writes them.
struct MegatronFiles {
  std::string bin, idx;
};

// One sequence per document (what preprocess_data.py writes without sentence splitting); dtype
// code 8 stores uint16 tokens, code 4 int32.
inline MegatronFiles megatron_bytes(const std::vector<std::vector<int64_t>>& documents, uint8_t code) {
  MegatronFiles f;
  const int64_t item = code == 8 ? 2 : 4;
  std::vector<int32_t> lengths;
  std::vector<int64_t> pointers, boundaries = {0};
  int64_t pointer = 0;
  for (const std::vector<int64_t>& doc : documents) {
    for (int64_t t : doc) {
      if (code == 8) append_raw(f.bin, uint16_t(t));
      else append_raw(f.bin, int32_t(t));
    }
    lengths.push_back(int32_t(doc.size()));
    pointers.push_back(pointer);
    pointer += int64_t(doc.size()) * item;
    boundaries.push_back(int64_t(lengths.size()));
  }
  f.idx.append("MMIDIDX\0\0", 9);
  append_raw(f.idx, uint64_t(1));
  append_raw(f.idx, code);
  append_raw(f.idx, uint64_t(lengths.size()));
  append_raw(f.idx, uint64_t(boundaries.size()));
  for (int32_t n : lengths) append_raw(f.idx, n);
  for (int64_t p : pointers) append_raw(f.idx, p);
  for (int64_t b : boundaries) append_raw(f.idx, b);
  return f;
}

inline void write_megatron(const std::string& prefix, const MegatronFiles& f) {
  write_bytes(prefix + ".bin", f.bin);
  write_bytes(prefix + ".idx", f.idx);
}

// Byte offsets of the .idx's arrays, for tests that damage one field.
constexpr int64_t kIdxVersionAt = 9, kIdxCodeAt = 17, kIdxSequencesAt = 18, kIdxDocumentsAt = 26, kIdxLengthsAt = 34;

template <class T>
void poke(std::string& bytes, int64_t offset, T value) {
  std::memcpy(&bytes[size_t(offset)], &value, sizeof value);
}

}  // namespace tessera::test
