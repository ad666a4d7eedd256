// Bf16Linear (bf16_linear.hpp): which operand goes where in gemm_bf16's C = A·B.
#include "train/bf16_linear.hpp"

namespace bitttt::train {

void Bf16Linear::forward(float* out, const float* x, const float* weight, int64_t N, int64_t C,
                         int64_t OC) {
    // out = A·B with A(n, c) = x[n, c] and B(c, o) = weight[o, c] (weight's rows paired along c).
    pack_bf16_a(a_, x, C, 1, N, C);
    pack_bf16_b(b_, weight, 1, C, C, OC);
    gemm_bf16(out, a_, b_, 1.0f, false);
}

void Bf16Linear::backward(float* dx, float* dweight, const float* dy, const float* x,
                          const float* weight, int64_t N, int64_t C, int64_t OC) {
    if (dx) {
        // dx = A·B with A(n, o) = dy[n, o] and B(o, c) = weight[o, c] (depth OC).
        pack_bf16_a(a_, dy, OC, 1, N, OC);
        pack_bf16_b(b_, weight, C, 1, OC, C);
        gemm_bf16(dx, a_, b_, 1.0f, true);
    }
    // dweight = A·B with A(o, n) = dy[n, o] (dy read transposed) and B(n, c) = x[n, c].
    if (x != x_of_ || x_rows_ != N || x_cols_ != C) {
        pack_bf16_b(x_, x, C, 1, N, C);
        x_of_ = x, x_rows_ = N, x_cols_ = C;
    }
    pack_bf16_a(a_, dy, 1, OC, OC, N);
    gemm_bf16(dweight, a_, x_, 1.0f, true);
}

}  // namespace bitttt::train
