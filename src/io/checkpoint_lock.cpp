// The one-writer lock of a checkpoint root: flock(2) on <root>/lock, whose text names the holder.
// flock, not fcntl locks: it belongs to the open file, so threads of the holder never release it by
// closing another descriptor of the file, and the kernel drops it when the holder dies.
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "io/checkpoint_layout.h"
#include "tessera/checkpoint.h"
#include "tessera/error.h"

namespace tessera {

namespace {

constexpr const char* kLockName = "lock";

std::string holder_text(const std::string& job) {
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char since[32];
  std::strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string("host ") + host + ", pid " + std::to_string(::getpid()) + ", job " + (job.empty() ? "-" : job) +
         ", since " + since + "\n";
}

// What the lock file says about its holder (its first line).
std::string read_holder(int fd) {
  char buf[512] = {};
  ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
  std::string text = n > 0 ? std::string(buf, size_t(n)) : std::string();
  if (auto nl = text.find('\n'); nl != std::string::npos) text.resize(nl);
  return text.empty() ? "a process that has not written its name yet" : text;
}

}  // namespace

CheckpointDirLock CheckpointDirLock::acquire(const std::string& root, const std::string& job) {
  std::error_code ec;
  std::filesystem::create_directories(root, ec);
  if (ec)
    throw config_error("cannot create the checkpoint directory: " + ec.message(), "choose a writable --checkpoint-dir",
                       root);
  const std::string path = io::ckpt::join(root, kLockName);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0)
    throw config_error("cannot open the checkpoint directory's lock file: " + std::string(std::strerror(errno)),
                       "choose a writable --checkpoint-dir", path);
  CheckpointDirLock lock;
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err == EWOULDBLOCK) {
      const std::string holder = read_holder(fd);
      ::close(fd);
      throw config_error("the checkpoint directory " + root + " is being written by another run (" + holder + ")",
                         "wait for that run to end, or give this run another --checkpoint-dir", path);
    }
    ::close(fd);
    if (err == ENOLCK || err == EOPNOTSUPP || err == ENOSYS || err == EINVAL) {
      lock.warning_ = "the file system of " + root + " does not support locks (" + std::strerror(err) +
                      "): a second run writing into it would not be refused";
      return lock;
    }
    throw config_error("cannot lock the checkpoint directory: " + std::string(std::strerror(err)), "", path);
  }
  const std::string text = holder_text(job);
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, text.data(), text.size(), 0) != ssize_t(text.size())) {
    const int err = errno;
    ::close(fd);
    throw config_error("cannot write the checkpoint directory's lock file: " + std::string(std::strerror(err)),
                       "check the free space and permissions of --checkpoint-dir", path);
  }
  lock.fd_ = fd;
  return lock;
}

CheckpointDirLock::~CheckpointDirLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the only descriptor of the open file releases the flock
}

CheckpointDirLock::CheckpointDirLock(CheckpointDirLock&& other) noexcept
    : fd_(other.fd_), warning_(std::move(other.warning_)) {
  other.fd_ = -1;
}

CheckpointDirLock& CheckpointDirLock::operator=(CheckpointDirLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    warning_ = std::move(other.warning_);
    other.fd_ = -1;
  }
  return *this;
}

}  // namespace tessera
