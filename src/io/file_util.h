// File helpers shared by the io formats (private): read-only mappings, whole-file reads, and
// writers that go through path.tmp + rename so a reader never sees a half-written file.
//
// Every reader of an input file (token shards, safetensors, configs and other JSON, text for
// tessera-prepare-data, checkpoints) opens it through open_for_reading: anything that is not a
// regular file (a FIFO, a socket, a device, a directory) is refused before it is opened, so a
// wrong path is an error and never a read that blocks forever.
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>

#include <sys/stat.h>

namespace tessera::io {

// A read-only memory mapping of a whole file; unmapped on destruction unless released.
class ReadOnlyMapping {
 public:
  ReadOnlyMapping() = default;
  ReadOnlyMapping(void* data, size_t size) : data(data), size(size) {}
  ~ReadOnlyMapping();
  ReadOnlyMapping(ReadOnlyMapping&& other) noexcept : data(other.data), size(other.size) {
    other.data = nullptr;
    other.size = 0;
  }
  ReadOnlyMapping& operator=(ReadOnlyMapping&&) = delete;
  ReadOnlyMapping(const ReadOnlyMapping&) = delete;
  ReadOnlyMapping& operator=(const ReadOnlyMapping&) = delete;

  // Gives up ownership: the caller unmaps with unmap(pointer, *bytes).
  void* release(size_t* bytes);

  void* data = nullptr;  // nullptr for an empty file
  size_t size = 0;
};

// A descriptor of `path` open for reading, and its stat. Data error naming the file (and `what`,
// the kind of file: "token shard") when it is missing, unreadable or not a regular file.
int open_for_reading(const std::string& path, const std::string& what, struct stat* st);

// Maps `path`; `what` names the kind of file in errors ("token shard"). A missing or unreadable
// file, or one that is not a regular file, is a data error.
ReadOnlyMapping map_file(const std::string& path, const std::string& what);
void unmap(void* data, size_t bytes);

// Reads a whole file into a string (data error naming the file if it cannot).
std::string read_file(const std::string& path, const std::string& what);

// For an error that means "the disk is full" (ENOSPC, EDQUOT, EFBIG): " (12.0 MB free of 1000.0 MB
// on the file system of DIR)" for the directory of path; "" for other errors.
std::string free_space_note(const std::string& path, int err);

// Writes path.tmp, then commit() flushes, syncs and renames it over path. Destroyed without
// commit() (an exception on the way), it removes path.tmp.
class AtomicFileWriter {
 public:
  AtomicFileWriter(const std::string& path, const std::string& what);  // config error if it cannot create
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t bytes);
  void write(const std::string& s) { write(s.data(), s.size()); }
  void commit();

 private:
  [[noreturn]] void fail(const std::string& doing);

  std::string path_, tmp_path_, what_;
  std::FILE* file_ = nullptr;
};

}  // namespace tessera::io
