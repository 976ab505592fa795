// Parameter values between the host (always float32) and a tensor of any float dtype on the
// context's device: initialisation, Hugging Face import/export, logits for sampling, losses.
#include "tessera/buffer.h"
#include "tessera/error.h"

namespace tessera {

std::vector<float> download_floats(const Context& ctx, const Tensor& t) {
  const int64_t n = t.numel();
  std::vector<float> out(static_cast<size_t>(n));
  if (t.dtype == DType::f32) {
    copy_tensor(ctx, Tensor(out.data(), {n}, DType::f32, Device::cpu), t);
  } else {
    TESSERA_CHECK(t.dtype == DType::bf16, "download_floats of " + t.shape_str());
    std::vector<bf16> raw(static_cast<size_t>(n));
    copy_tensor(ctx, Tensor(raw.data(), {n}, DType::bf16, Device::cpu), t);
    for (size_t i = 0; i < raw.size(); ++i) out[i] = bf16_to_float(raw[i]);
  }
  return out;
}

void upload_floats(const Context& ctx, const Tensor& t, const float* src) {
  const int64_t n = t.numel();
  if (t.dtype == DType::f32) {
    copy_tensor(ctx, t, Tensor(const_cast<float*>(src), {n}, DType::f32, Device::cpu));
  } else {
    TESSERA_CHECK(t.dtype == DType::bf16, "upload_floats to " + t.shape_str());
    std::vector<bf16> raw(static_cast<size_t>(n));
    for (size_t i = 0; i < raw.size(); ++i) raw[i] = float_to_bf16(src[i]);
    copy_tensor(ctx, t, Tensor(raw.data(), {n}, DType::bf16, Device::cpu));
  }
}

}  // namespace tessera
