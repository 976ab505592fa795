// Buffer: the owner of one allocation on the host or the context's device.
// Copies between host and device go through the context's stream.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <vector>

#include "tessera/context.h"
#include "tessera/tensor.h"

namespace tessera {

class Buffer {
 public:
  Buffer() = default;
  // Host memory is 64-byte aligned; device memory comes from cudaMalloc. Contents undefined.
  Buffer(const Context& ctx, size_t bytes, Device device);
  // Convenience: a buffer on the context's device sized for `shape` of `dtype`.
  static Buffer for_tensor(const Context& ctx, std::initializer_list<int64_t> shape, DType dtype);
  // Host memory for copies to and from the GPU: page-locked (cudaHostAlloc) on a GPU context, so
  // that copies are direct DMA; ordinary host memory on a CPU context.
  static Buffer pinned_host(const Context& ctx, size_t bytes);
  ~Buffer();
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  // Whether this is page-locked host memory (see pinned_host).
  bool pinned() const { return pinned_; }
  // A view of the start of the buffer with the given shape (must fit).
  Tensor view(std::initializer_list<int64_t> shape, DType dtype) const;

 private:
  void release();
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_ = Device::cpu;
  bool pinned_ = false;
};

// Copies src into dst (same dtype and element count; any pair of devices). Synchronous.
void copy_tensor(const Context& ctx, const Tensor& dst, const Tensor& src);
// t (f32 or bf16, any device) as float32 on the host.
std::vector<float> download_floats(const Context& ctx, const Tensor& t);
// t.numel() floats from src into t (f32 or bf16, any device); bf16 rounds to nearest even.
void upload_floats(const Context& ctx, const Tensor& t, const float* src);
// Sets every byte of t to zero.
void zero_tensor(const Context& ctx, const Tensor& t);
// Fills every 16-bit/32-bit word with a NaN pattern, so that a kernel which forgets to write
// part of its output is caught by tests.
void poison_tensor(const Context& ctx, const Tensor& t);

}  // namespace tessera
