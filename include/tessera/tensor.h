// Tensor: a non-owning view (pointer, shape, dtype, device). Memory belongs to owners
// (tessera::Buffer, arenas, flat parameter buffers); a Tensor never frees anything.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "tessera/dtype.h"

namespace tessera {

struct Tensor {
  static constexpr int kMaxDims = 4;

  void* data = nullptr;
  std::array<int64_t, kMaxDims> dims{};
  int ndim = 0;
  DType dtype = DType::f32;
  Device device = Device::cpu;

  Tensor() = default;
  Tensor(void* data, std::initializer_list<int64_t> shape, DType dtype, Device device);

  bool empty() const { return data == nullptr; }
  int64_t size(int i) const;  // negative i counts from the back
  int64_t numel() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
  std::string shape_str() const;  // e.g. "(4, 64, 768) bf16 cuda"

  // Same memory, new shape with the same element count.
  Tensor reshape(std::initializer_list<int64_t> shape) const;
  // Elements [offset, offset + count) of the flattened tensor, as a 1-D view.
  Tensor flat_range(int64_t offset, int64_t count) const;
  // Rows [row, row + count) along dim 0.
  Tensor rows(int64_t row, int64_t count) const;

  template <class T>
  T* ptr() const {
    return static_cast<T*>(data);
  }
};

}  // namespace tessera
