// RMSNorm: scalar reference (dispatching entry point forwards to it until a SIMD version exists).
#include <cmath>

#include "kernels/cpu/norms.hpp"

namespace bitttt::kernels {

void rmsnorm_scalar(const float* x, int64_t m, int64_t d, int64_t x_stride, const float* weight,
                    float eps, float* y, int64_t y_stride, float* inv_rms_out) {
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
    rmsnorm_scalar(x, m, d, x_stride, weight, eps, y, y_stride, inv_rms_out);
}

}  // namespace bitttt::kernels
