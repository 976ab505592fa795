#include "io/file_util.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "tessera/error.h"

namespace tessera::io {

namespace {

// Closes a descriptor when leaving scope.
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

std::string file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

[[noreturn]] void not_regular(const std::string& path, const std::string& what, mode_t mode) {
  throw data_error(what + " is " + file_kind(mode) + ", not a regular file", path,
                   "give the path of a regular file (reading a pipe, socket or device could block forever)");
}

}  // namespace

int open_for_reading(const std::string& path, const std::string& what, struct stat* st) {
  // Checked before the open: opening a FIFO for reading blocks until a writer comes, and opening
  // some devices has effects of its own.
  if (::stat(path.c_str(), st) != 0) {
    int err = errno;
    throw data_error("cannot open " + what + ": " + std::strerror(err), path,
                     err == ENOENT ? "check the path (the file does not exist)" : "check the path and its permissions");
  }
  if (!S_ISREG(st->st_mode)) not_regular(path, what, st->st_mode);
  // O_NONBLOCK: should the path be swapped for a FIFO between the stat and the open, the open
  // still returns (and the fstat below refuses it). It changes nothing for a regular file.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    int err = errno;
    throw data_error("cannot open " + what + ": " + std::strerror(err), path,
                     err == ENOENT ? "check the path (the file does not exist)" : "check the path and its permissions");
  }
  if (::fstat(fd, st) != 0) {
    int err = errno;
    ::close(fd);
    throw data_error("cannot stat " + what + ": " + std::strerror(err), path);
  }
  if (!S_ISREG(st->st_mode)) {
    ::close(fd);
    not_regular(path, what, st->st_mode);
  }
  return fd;
}

namespace {

int open_regular_file(const std::string& path, const std::string& what, struct stat* st) {
  return open_for_reading(path, what, st);
}

}  // namespace

ReadOnlyMapping::~ReadOnlyMapping() {
  if (data) unmap(data, size);
}

void* ReadOnlyMapping::release(size_t* bytes) {
  void* p = data;
  *bytes = size;
  data = nullptr;
  size = 0;
  return p;
}

ReadOnlyMapping map_file(const std::string& path, const std::string& what) {
  struct stat st;
  FdCloser fd{open_regular_file(path, what, &st)};
  size_t bytes = size_t(st.st_size);
  if (bytes == 0) return ReadOnlyMapping();
  void* p = ::mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE, fd.fd, 0);
  if (p == MAP_FAILED) throw data_error("cannot map " + what + ": " + std::strerror(errno), path);
  return ReadOnlyMapping(p, bytes);
}

void unmap(void* data, size_t bytes) {
  if (data && bytes) ::munmap(data, bytes);
}

std::string read_file(const std::string& path, const std::string& what) {
  struct stat st;
  FdCloser fd{open_regular_file(path, what, &st)};
  std::string out;
  out.resize(size_t(st.st_size));
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::read(fd.fd, &out[done], out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw data_error("cannot read " + what + ": " + std::strerror(errno), path);
    if (n == 0) break;  // the file shrank while we read it
    done += size_t(n);
  }
  out.resize(done);
  return out;
}

AtomicFileWriter::AtomicFileWriter(const std::string& path, const std::string& what)
    : path_(path), tmp_path_(path + ".tmp"), what_(what) {
  file_ = std::fopen(tmp_path_.c_str(), "wb");
  if (!file_)
    throw config_error("cannot create " + what_ + ": " + std::strerror(errno),
                       "check that the directory exists and is writable", tmp_path_);
}

AtomicFileWriter::~AtomicFileWriter() {
  if (file_) {
    std::fclose(file_);
    std::remove(tmp_path_.c_str());
  }
}

std::string free_space_note(const std::string& path, int err) {
  if (err != ENOSPC && err != EDQUOT && err != EFBIG) return "";
  std::string dir = path;
  const size_t slash = dir.find_last_of('/');
  dir = slash == std::string::npos ? "." : slash == 0 ? "/" : dir.substr(0, slash);
  struct statvfs fs;
  if (::statvfs(dir.c_str(), &fs) != 0) return "";
  char buf[160];
  std::snprintf(buf, sizeof(buf), " (%.1f MB free of %.1f MB on the file system of %s)",
                double(fs.f_bavail) * double(fs.f_frsize) / 1e6, double(fs.f_blocks) * double(fs.f_frsize) / 1e6,
                dir.c_str());
  return buf;
}

void AtomicFileWriter::fail(const std::string& doing) {
  int err = errno;
  std::fclose(file_);
  file_ = nullptr;
  std::remove(tmp_path_.c_str());
  throw data_error("cannot " + doing + " " + what_ + ": " + std::strerror(err) + free_space_note(tmp_path_, err),
                   tmp_path_, "check free disk space and permissions");
}

void AtomicFileWriter::write(const void* data, size_t bytes) {
  TESSERA_CHECK(file_ != nullptr, "write after commit");
  if (bytes && std::fwrite(data, 1, bytes, file_) != bytes) fail("write");
}

void AtomicFileWriter::commit() {
  TESSERA_CHECK(file_ != nullptr, "commit called twice");
  if (std::fflush(file_) != 0) fail("write");
  if (::fsync(::fileno(file_)) != 0) fail("sync");
  std::FILE* f = file_;
  file_ = nullptr;
  if (std::fclose(f) != 0) {
    int err = errno;
    std::remove(tmp_path_.c_str());
    throw data_error("cannot close " + what_ + ": " + std::strerror(err) + free_space_note(tmp_path_, err), tmp_path_,
                     "check free disk space and permissions");
  }
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    int err = errno;
    std::remove(tmp_path_.c_str());
    throw config_error("cannot move the finished " + what_ + " into place: " + std::strerror(err),
                       "check that the destination is writable and not a directory", path_);
  }
}

}  // namespace tessera::io
