#include "model/arena.h"

#include "tessera/error.h"

namespace tessera::model {

Tensor make_tensor(void* data, const std::vector<int64_t>& shape, DType dtype, Device device) {
  TESSERA_CHECK(!shape.empty() && shape.size() <= size_t(Tensor::kMaxDims), "tensor rank must be 1..4");
  Tensor t;
  t.data = data;
  t.dtype = dtype;
  t.device = device;
  for (int64_t d : shape) {
    TESSERA_CHECK(d >= 0, "negative dimension");
    t.dims[size_t(t.ndim++)] = d;
  }
  return t;
}

void Arena::add(Tensor* target, std::string name, std::vector<int64_t> shape, DType dtype) {
  *target = make_tensor(nullptr, shape, dtype, Device::cpu);
  size_t offset = planned_bytes_;
  planned_bytes_ = offset + (target->nbytes() + kAlignBytes - 1) / kAlignBytes * kAlignBytes;
  entries_.push_back(Entry{target, std::move(name), offset});
}

void Arena::allocate(const Context& ctx) {
  if (buffer_.bytes() < planned_bytes_ || buffer_.device() != ctx.device()) {
    buffer_ = Buffer();  // free the old allocation before asking for the new one
    buffer_ = Buffer(ctx, planned_bytes_, ctx.device());
  }
  char* base = static_cast<char*>(buffer_.data());
  for (const Entry& e : entries_) {
    e.target->data = base + e.offset;
    e.target->device = ctx.device();
  }
}

void Arena::clear() {
  entries_.clear();
  planned_bytes_ = 0;
}

}  // namespace tessera::model
