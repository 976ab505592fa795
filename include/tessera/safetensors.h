// Hugging Face safetensors: an 8-byte little-endian header length, a JSON header mapping each
// tensor name to {"dtype", "shape", "data_offsets"} (plus an optional "__metadata__" object of
// string -> string), then the tensor bytes, contiguous and without holes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace tessera {

// dtype is the safetensors name: "F32", "BF16", "F16", "I32", "I64" (also "F64", "I8", "U8",
// "I16", "U16", "U32", "U64", "BOOL", "F8_E4M3", "F8_E5M2"). In a reader's entries, data points
// into the mapped file; it is only as aligned as the file makes it (copy with memcpy).
struct SafetensorsEntry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t bytes = 0;
};

// Bytes per element of a safetensors dtype, or 0 if the name is unknown.
size_t safetensors_dtype_size(const std::string& dtype);

// The index of the first NaN or infinity of a floating-point tensor (F64, F32, F16, BF16), or -1
// when every element is finite (and for other dtypes).
int64_t safetensors_first_non_finite(const SafetensorsEntry& entry);

// Writes the tensors in the order given (bytes must equal the element count times the dtype size;
// names unique), the header padded with spaces to a multiple of 8 bytes. Writes path.tmp, then renames.
void write_safetensors(const std::string& path, const std::vector<SafetensorsEntry>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Reads a file through mmap. Validates the header length, the JSON, each dtype's size against the
// shape and the offsets, and that the offsets lie inside the file and cover the data exactly once
// (no overlap, no hole); a data error naming the file otherwise.
class SafetensorsReader {
 public:
  explicit SafetensorsReader(const std::string& path);
  ~SafetensorsReader();
  SafetensorsReader(SafetensorsReader&& other) noexcept;
  SafetensorsReader& operator=(SafetensorsReader&& other) noexcept;
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;

  std::vector<std::string> names() const;  // in header order
  bool has(const std::string& name) const;
  const SafetensorsEntry& entry(const std::string& name) const;  // data error naming tensor and file if missing
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

 private:
  void release();

  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace tessera
