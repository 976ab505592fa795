// Activation arena: every activation of one (B,T) plan lives in a single buffer. Tensors are
// declared first (name, shape, dtype), then one allocation backs them all; each declared Tensor
// is bound to its slice. Offsets are aligned to 256 bytes (vector loads, cuBLASLt).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "tessera/buffer.h"
#include "tessera/context.h"
#include "tessera/tensor.h"

namespace tessera::model {

class Arena {
 public:
  static constexpr size_t kAlignBytes = 256;

  // Declares a tensor; *target gets its shape now and its memory at allocate(). target must stay
  // valid (not move) until allocate().
  void add(Tensor* target, std::string name, std::vector<int64_t> shape, DType dtype);
  // Binds every declared tensor, reusing the current buffer when it is large enough.
  void allocate(const Context& ctx);
  // Forgets the declarations (the buffer is kept for reuse by the next plan).
  void clear();

  size_t planned_bytes() const { return planned_bytes_; }
  size_t capacity_bytes() const { return buffer_.bytes(); }

 private:
  struct Entry {
    Tensor* target;
    std::string name;
    size_t offset;
  };
  std::vector<Entry> entries_;
  size_t planned_bytes_ = 0;
  Buffer buffer_;
};

// A tensor view from a shape held in a vector.
Tensor make_tensor(void* data, const std::vector<int64_t>& shape, DType dtype, Device device);

}  // namespace tessera::model
