// RMSNorm over rows: y = x / sqrt(mean(x^2) + eps) * weight.
#pragma once

#include <cstdint>

namespace bitttt::kernels {

// For each of m rows of length d (row i at x + i*x_stride, y + i*y_stride; y may equal x):
// y[j] = x[j] * inv_rms * weight[j] with inv_rms = 1 / sqrt(mean(x^2) + eps).
// If inv_rms_out is not null, stores inv_rms per row (training's backward needs it).
void rmsnorm(const float* x, int64_t m, int64_t d, int64_t x_stride, const float* weight, float eps,
             float* y, int64_t y_stride, float* inv_rms_out = nullptr);
// Scalar reference of rmsnorm.
void rmsnorm_scalar(const float* x, int64_t m, int64_t d, int64_t x_stride, const float* weight,
                    float eps, float* y, int64_t y_stride, float* inv_rms_out = nullptr);

}  // namespace bitttt::kernels
