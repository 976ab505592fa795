#include "tessera/communicator.h"

namespace tessera {

Work::Work(std::function<void()> wait_fn, std::function<bool()> test_fn)
    : wait_(std::move(wait_fn)), test_(std::move(test_fn)), done_(false) {}

Work::Work(Work&& other) noexcept { *this = std::move(other); }

Work& Work::operator=(Work&& other) noexcept {
  if (this != &other) {
    if (!done_ && wait_) {
      try {
        wait_();
      } catch (...) {
      }
    }
    wait_ = std::move(other.wait_);
    test_ = std::move(other.test_);
    done_ = other.done_;
    other.done_ = true;
  }
  return *this;
}

Work::~Work() {
  // An operation in flight owns buffers the peers are writing into: finish it before they go.
  if (!done_ && wait_) {
    try {
      wait_();
    } catch (...) {
    }
  }
}

void Work::wait() {
  if (done_) return;
  done_ = true;
  if (wait_) wait_();
}

bool Work::is_completed() {
  if (done_) return true;
  return test_ ? test_() : false;
}

}  // namespace tessera
