#include "tessera/tensor.h"

#include "tessera/error.h"

namespace tessera {

Tensor::Tensor(void* data_, std::initializer_list<int64_t> shape, DType dtype_, Device device_)
    : data(data_), dtype(dtype_), device(device_) {
  TESSERA_CHECK(int(shape.size()) <= kMaxDims, "at most 4 dimensions");
  for (int64_t d : shape) {
    TESSERA_CHECK(d >= 0, "negative dimension");
    dims[size_t(ndim++)] = d;
  }
}

int64_t Tensor::size(int i) const {
  if (i < 0) i += ndim;
  TESSERA_CHECK(i >= 0 && i < ndim, "dimension index out of range for " + shape_str());
  return dims[size_t(i)];
}

int64_t Tensor::numel() const {
  if (ndim == 0) return data ? 1 : 0;
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= dims[size_t(i)];
  return n;
}

std::string Tensor::shape_str() const {
  std::string s = "(";
  for (int i = 0; i < ndim; ++i) {
    if (i) s += ", ";
    s += std::to_string(dims[size_t(i)]);
  }
  s += ") ";
  s += dtype_name(dtype);
  s += " ";
  s += device_name(device);
  return s;
}

Tensor Tensor::reshape(std::initializer_list<int64_t> shape) const {
  Tensor t(data, shape, dtype, device);
  TESSERA_CHECK(t.numel() == numel(), "reshape of " + shape_str() + " to " + t.shape_str());
  return t;
}

Tensor Tensor::flat_range(int64_t offset, int64_t count) const {
  TESSERA_CHECK(offset >= 0 && count >= 0 && offset + count <= numel(),
                "flat range out of bounds of " + shape_str());
  char* base = static_cast<char*>(data) + size_t(offset) * dtype_size(dtype);
  return Tensor(base, {count}, dtype, device);
}

Tensor Tensor::rows(int64_t row, int64_t count) const {
  TESSERA_CHECK(ndim >= 1 && row >= 0 && count >= 0 && row + count <= dims[0],
                "rows out of bounds of " + shape_str());
  Tensor t = *this;
  int64_t row_elems = dims[0] ? numel() / dims[0] : 0;
  t.data = static_cast<char*>(data) + size_t(row * row_elems) * dtype_size(dtype);
  t.dims[0] = count;
  return t;
}

}  // namespace tessera
