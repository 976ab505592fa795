#include "common/output_checks.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "tessera/error.h"

namespace tessera::program {

namespace fs = std::filesystem;

namespace {

std::string parent_of(const std::string& path) {
  fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

// Empty when `dir` takes a new file, else why not. A real file, not access(): root passes
// access() on a read-only mount, and so do ACLs that refuse the write.
std::string probe_writable(const std::string& dir) {
  char host[256] = "host";
  ::gethostname(host, sizeof(host) - 1);
  const std::string probe = (fs::path(dir) / (".tessera-write-test-" + std::string(host) + "-" +
                                              std::to_string(::getpid()))).string();
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return std::strerror(errno);
  ::close(fd);
  ::unlink(probe.c_str());
  return "";
}

// The path itself if it exists, else its nearest existing ancestor.
std::string nearest_existing(const std::string& path) {
  fs::path p = fs::absolute(fs::path(path)).lexically_normal();
  std::error_code ec;
  while (!fs::exists(p, ec) && p.has_parent_path() && p.parent_path() != p) p = p.parent_path();
  return p.string();
}

[[noreturn]] void refuse(const std::string& flag, const std::string& path, const std::string& why,
                         const std::string& hint) {
  throw config_error(flag + " " + path + ": " + why, hint, path);
}

}  // namespace

std::string format_bytes(uint64_t bytes) {
  char buf[32];
  if (bytes >= 1000000000ull) std::snprintf(buf, sizeof(buf), "%.2f GB", double(bytes) / 1e9);
  else std::snprintf(buf, sizeof(buf), "%.2f MB", double(bytes) / 1e6);
  return buf;
}

void check_output_file(const std::string& flag, const std::string& path) {
  std::error_code ec;
  if (path.empty()) refuse(flag, "''", "an empty path", "give a file name");
  if (fs::is_directory(path, ec)) refuse(flag, path, "is a directory", "give the path of a file");
  if (fs::exists(path, ec) && !fs::is_regular_file(path, ec))
    refuse(flag, path, "is not a regular file (a device, FIFO or socket)", "give the path of a file");
  const std::string dir = parent_of(path);
  if (!fs::is_directory(dir, ec)) refuse(flag, path, "its directory " + dir + " does not exist", "create it first");
  if (std::string why = probe_writable(dir); !why.empty())
    refuse(flag, path, "cannot create files in " + dir + ": " + why, "choose a writable location");
}

void check_log_file(const std::string& flag, const std::string& path) {
  std::error_code ec;
  if (path.empty()) refuse(flag, "''", "an empty path", "give a file name");
  const std::string dir = parent_of(path);
  if (fs::is_directory(dir, ec)) return check_output_file(flag, path);
  const std::string existing = nearest_existing(dir);
  if (!fs::is_directory(existing, ec))
    refuse(flag, path, existing + " is not a directory, so " + dir + " cannot be created", "choose another path");
  if (std::string why = probe_writable(existing); !why.empty())
    refuse(flag, path, "cannot create " + dir + " in " + existing + ": " + why, "choose a writable location");
}

void check_output_dir(const std::string& flag, const std::string& path, uint64_t bytes_needed) {
  std::error_code ec;
  if (path.empty()) refuse(flag, "''", "an empty path", "give a directory");
  if (fs::exists(path, ec) && !fs::is_directory(path, ec))
    refuse(flag, path, "exists and is not a directory", "give the path of a directory (it is created if missing)");
  fs::create_directories(path, ec);
  if (ec) refuse(flag, path, "cannot create the directory: " + ec.message(), "choose a writable location");
  if (std::string why = probe_writable(path); !why.empty())
    refuse(flag, path, "cannot create files in it: " + why, "choose a writable directory");
  if (bytes_needed == 0) return;
  struct statvfs fsinfo;
  if (::statvfs(path.c_str(), &fsinfo) != 0) return;  // no figure to compare with: the write will tell
  const uint64_t free_bytes = uint64_t(fsinfo.f_bavail) * uint64_t(fsinfo.f_frsize);
  if (free_bytes < bytes_needed)
    refuse(flag, path,
           "its file system has " + format_bytes(free_bytes) + " free, and one checkpoint takes " +
               format_bytes(bytes_needed),
           "free some space or choose another directory");
}

void check_creatable_dir(const std::string& flag, const std::string& path) {
  std::error_code ec;
  if (path.empty()) refuse(flag, "''", "an empty path", "give a directory");
  if (fs::exists(path, ec) && !fs::is_directory(path, ec))
    refuse(flag, path, "exists and is not a directory", "give the path of a directory (it is created if missing)");
  const std::string existing = nearest_existing(path);
  if (!fs::is_directory(existing, ec))
    refuse(flag, path, existing + " is not a directory, so the directory cannot be created", "choose another path");
  if (std::string why = probe_writable(existing); !why.empty())
    refuse(flag, path, "cannot create files in " + existing + ": " + why, "choose a writable location");
}

}  // namespace tessera::program
