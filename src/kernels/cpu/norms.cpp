// RMSNorm: scalar reference, argument checks and the ISA dispatch.
#include "kernels/cpu/norms.hpp"

#include <cmath>

#include "core/cpu_features.hpp"
#include "core/error.hpp"

namespace bitttt::kernels {

void check_rmsnorm_args(const float* x, int64_t m, int64_t d, int64_t x_stride, const float* weight,
                        const float* y, int64_t y_stride) {
    constexpr int64_t kMaxDim = int64_t{1} << 40;  // keeps every offset far from overflow
    check(m >= 0 && m <= kMaxDim && d >= 0 && d <= kMaxDim, ErrorKind::kInvalidArgument,
          "rmsnorm: shape [{}, {}] is out of range", m, d);
    if (m == 0 || d == 0) return;
    check(x != nullptr && weight != nullptr && y != nullptr, ErrorKind::kInvalidArgument,
          "rmsnorm: null input, weight or output buffer");
    check(m == 1 || (x_stride >= d && x_stride <= kMaxDim && y_stride >= d && y_stride <= kMaxDim),
          ErrorKind::kDimensionMismatch, "rmsnorm: strides {} and {} must be in [{}, 2^40]",
          x_stride, y_stride, d);
}

void rmsnorm_scalar(const float* x, int64_t m, int64_t d, int64_t x_stride, const float* weight,
                    float eps, float* y, int64_t y_stride, float* inv_rms_out) {
    check_rmsnorm_args(x, m, d, x_stride, weight, y, y_stride);
    if (d == 0) return;
    for (int64_t i = 0; i < m; ++i) {
        const float* xi = x + i * x_stride;
        float* yi = y + i * y_stride;
        double ss = 0.0;
        for (int64_t j = 0; j < d; ++j) ss += static_cast<double>(xi[j]) * xi[j];
        const float inv_rms =
            1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(d)) + eps);
        for (int64_t j = 0; j < d; ++j) yi[j] = xi[j] * inv_rms * weight[j];
        if (inv_rms_out) inv_rms_out[i] = inv_rms;
    }
}

void rmsnorm(const float* x, int64_t m, int64_t d, int64_t x_stride, const float* weight, float eps,
             float* y, int64_t y_stride, float* inv_rms_out) {
    switch (active_isa()) {
        case Isa::kAvx512:
            return rmsnorm_avx512(x, m, d, x_stride, weight, eps, y, y_stride, inv_rms_out);
        case Isa::kAvx2:
            return rmsnorm_avx2(x, m, d, x_stride, weight, eps, y, y_stride, inv_rms_out);
        case Isa::kScalar:
            break;
    }
    rmsnorm_scalar(x, m, d, x_stride, weight, eps, y, y_stride, inv_rms_out);
}

}  // namespace bitttt::kernels
