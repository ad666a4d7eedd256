// SwiGLU's gated product: out = silu(gate) * up, silu(g) = g / (1 + exp(-g)).
#pragma once

#include <cstdint>

namespace bitttt::kernels {

// out[i] = silu(gate[i]) * up[i] for i < n (out may alias gate or up).
void silu_mul(const float* gate, const float* up, int64_t n, float* out);
// Scalar reference of silu_mul.
void silu_mul_scalar(const float* gate, const float* up, int64_t n, float* out);

}  // namespace bitttt::kernels
