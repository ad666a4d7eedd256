// SiLU-gated product: scalar reference, argument checks and the ISA dispatch.
#include "kernels/cpu/activations.hpp"

#include <cmath>

#include "core/cpu_features.hpp"
#include "core/error.hpp"

namespace bitttt::kernels {

void check_silu_mul_args(const float* gate, const float* up, int64_t n, const float* out) {
    check(n >= 0 && n <= (int64_t{1} << 40), ErrorKind::kInvalidArgument,
          "silu_mul: length {} is out of range", n);
    check(n == 0 || (gate != nullptr && up != nullptr && out != nullptr),
          ErrorKind::kInvalidArgument, "silu_mul: null gate, up or output buffer");
}

void silu_mul_scalar(const float* gate, const float* up, int64_t n, float* out) {
    check_silu_mul_args(gate, up, n, out);
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
    switch (active_isa()) {
        case Isa::kAvx512:
            return silu_mul_avx512(gate, up, n, out);
        case Isa::kAvx2:
            return silu_mul_avx2(gate, up, n, out);
        case Isa::kScalar:
            break;
    }
    silu_mul_scalar(gate, up, n, out);
}

}  // namespace bitttt::kernels
