// SiLU-gated product: scalar reference (the entry point forwards to it until a SIMD version exists).
#include <cmath>

#include "kernels/cpu/activations.hpp"

namespace bitttt::kernels {

void silu_mul_scalar(const float* gate, const float* up, int64_t n, float* out) {
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
    silu_mul_scalar(gate, up, n, out);
}

}  // namespace bitttt::kernels
