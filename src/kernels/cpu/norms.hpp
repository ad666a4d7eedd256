// RMSNorm over rows: y = x / sqrt(mean(x^2) + eps) * weight.
#pragma once

#include <cstdint>

namespace bitttt::kernels {

// For each of m rows of length d (row i at x + i*x_stride, y + i*y_stride; y may equal x):
// y[j] = x[j] * inv_rms * weight[j] with inv_rms = 1 / sqrt(mean(x^2) + eps).
// If inv_rms_out is not null, stores inv_rms per row (training's backward needs it).
// Dispatches on active_isa(); rows are spread over OpenMP threads when there is enough work.
// mean(x^2) is accumulated in double on every ISA, so the ISAs agree to about 1 float ulp.
void rmsnorm(const float* x, int64_t m, int64_t d, int64_t x_stride, const float* weight, float eps,
             float* y, int64_t y_stride, float* inv_rms_out = nullptr);
// Scalar reference of rmsnorm.
void rmsnorm_scalar(const float* x, int64_t m, int64_t d, int64_t x_stride, const float* weight,
                    float eps, float* y, int64_t y_stride, float* inv_rms_out = nullptr);
// Per-ISA versions (internal: use rmsnorm; tests call them directly).
void rmsnorm_avx2(const float* x, int64_t m, int64_t d, int64_t x_stride, const float* weight,
                  float eps, float* y, int64_t y_stride, float* inv_rms_out = nullptr);
void rmsnorm_avx512(const float* x, int64_t m, int64_t d, int64_t x_stride, const float* weight,
                    float eps, float* y, int64_t y_stride, float* inv_rms_out = nullptr);
// Throws Error unless the arguments of an rmsnorm call are consistent (every version calls it).
void check_rmsnorm_args(const float* x, int64_t m, int64_t d, int64_t x_stride, const float* weight,
                        const float* y, int64_t y_stride);

}  // namespace bitttt::kernels
