// SwiGLU's gated product: out = silu(gate) * up, silu(g) = g / (1 + exp(-g)).
#pragma once

#include <cstdint>

namespace bitttt::kernels {

// out[i] = silu(gate[i]) * up[i] for i < n (out may alias gate or up). Dispatches on
// active_isa(); large n is split over OpenMP threads. The SIMD versions use a polynomial exp
// (within 2 float ulp of std::exp), so they agree with the scalar reference to ~1e-6 relative.
void silu_mul(const float* gate, const float* up, int64_t n, float* out);
// Scalar reference of silu_mul.
void silu_mul_scalar(const float* gate, const float* up, int64_t n, float* out);
// Per-ISA versions (internal: use silu_mul; tests call them directly).
void silu_mul_avx2(const float* gate, const float* up, int64_t n, float* out);
void silu_mul_avx512(const float* gate, const float* up, int64_t n, float* out);
// Throws Error unless the arguments of a silu_mul call are consistent (every version calls it).
void check_silu_mul_args(const float* gate, const float* up, int64_t n, const float* out);

}  // namespace bitttt::kernels
