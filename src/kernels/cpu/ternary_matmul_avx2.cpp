// AVX2 ternary x int8 products (placeholder until the SIMD kernel lands: forwards to scalar).
#include "kernels/cpu/ternary_isa.hpp"

namespace bitttt::kernels {
void ternary_matmul_avx2(const TernaryWeights& w, const int8_t* xq, int64_t xq_stride,
                         const float* act_scale, int64_t m, float* y, int64_t y_stride) {
    ternary_matmul_scalar(w, xq, xq_stride, act_scale, m, y, y_stride);
}
}  // namespace bitttt::kernels
