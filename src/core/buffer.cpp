#include "tessera/buffer.h"

#include <cstdlib>
#include <cstring>

#include "core/device_api.h"
#include "tessera/error.h"

namespace tessera {

Buffer::Buffer(const Context& ctx, size_t bytes, Device device) : bytes_(bytes), device_(device) {
  if (device == Device::cuda) {
    TESSERA_CHECK(ctx.cuda() != nullptr, "device buffer requested on a CPU context");
    data_ = detail::cuda_malloc(bytes);
  } else {
    size_t rounded = (bytes + 63) / 64 * 64;
    data_ = std::aligned_alloc(64, rounded ? rounded : 64);
    if (!data_)
      throw Error(ExitCode::bad_config, "out of host memory allocating " + std::to_string(bytes) + " bytes",
                  TESSERA_HERE, "use a smaller batch, sequence length or model");
  }
}

Buffer Buffer::for_tensor(const Context& ctx, std::initializer_list<int64_t> shape, DType dtype) {
  Tensor probe(nullptr, shape, dtype, ctx.device());
  return Buffer(ctx, probe.nbytes(), ctx.device());
}

Buffer Buffer::pinned_host(const Context& ctx, size_t bytes) {
  if (!ctx.on_gpu()) return Buffer(ctx, bytes, Device::cpu);
  Buffer b;
  b.data_ = detail::cuda_host_alloc(bytes);
  b.bytes_ = bytes;
  b.device_ = Device::cpu;
  b.pinned_ = true;
  return b;
}

Buffer::~Buffer() { release(); }

Buffer::Buffer(Buffer&& other) noexcept { *this = std::move(other); }

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = other.data_;
    bytes_ = other.bytes_;
    device_ = other.device_;
    pinned_ = other.pinned_;
    other.data_ = nullptr;
    other.bytes_ = 0;
    other.pinned_ = false;
  }
  return *this;
}

void Buffer::release() {
  if (!data_) return;
  if (device_ == Device::cuda)
    detail::cuda_free(data_);
  else if (pinned_)
    detail::cuda_free_host(data_);
  else
    std::free(data_);
  data_ = nullptr;
}

Tensor Buffer::view(std::initializer_list<int64_t> shape, DType dtype) const {
  Tensor t(data_, shape, dtype, device_);
  TESSERA_CHECK(t.nbytes() <= bytes_, "view " + t.shape_str() + " exceeds buffer of " +
                                          std::to_string(bytes_) + " bytes");
  return t;
}

void copy_tensor(const Context& ctx, const Tensor& dst, const Tensor& src) {
  TESSERA_CHECK(dst.dtype == src.dtype && dst.numel() == src.numel(),
                "copy " + src.shape_str() + " -> " + dst.shape_str());
  if (dst.device == Device::cpu && src.device == Device::cpu) {
    std::memcpy(dst.data, src.data, src.nbytes());
    return;
  }
  detail::cuda_memcpy(ctx.cuda(), dst.data, src.data, src.nbytes());
}

static void fill_bytes(const Context& ctx, const Tensor& t, int value) {
  if (t.device == Device::cpu)
    std::memset(t.data, value, t.nbytes());
  else
    detail::cuda_memset(ctx.cuda(), t.data, value, t.nbytes());
}

void zero_tensor(const Context& ctx, const Tensor& t) { fill_bytes(ctx, t, 0); }

// 0xFF bytes are a NaN in both float32 and bfloat16 (and -1 in int32).
void poison_tensor(const Context& ctx, const Tensor& t) { fill_bytes(ctx, t, 0xFF); }

}  // namespace tessera
