// AVX2 RMSNorm: the sum of squares is accumulated in double (4 lanes, two accumulators), then
// each row is scaled exactly as in the scalar reference: y = (x * inv_rms) * weight.
#include <immintrin.h>

#include <cmath>

#include "core/team.hpp"
#include "kernels/cpu/norms.hpp"

namespace bitttt::kernels {

void rmsnorm_avx2(const float* x, int64_t m, int64_t d, int64_t x_stride, const float* weight,
                  float eps, float* y, int64_t y_stride, float* inv_rms_out) {
    check_rmsnorm_args(x, m, d, x_stride, weight, y, y_stride);
    if (d == 0) return;
    parallel_for(m, m * d >= (int64_t{1} << 16), [&](int64_t i) {
        const float* xi = x + i * x_stride;
        float* yi = y + i * y_stride;
        __m256d ss0 = _mm256_setzero_pd(), ss1 = _mm256_setzero_pd();
        int64_t j = 0;
        for (; j + 8 <= d; j += 8) {
            const __m256d lo = _mm256_cvtps_pd(_mm_loadu_ps(xi + j));
            const __m256d hi = _mm256_cvtps_pd(_mm_loadu_ps(xi + j + 4));
            ss0 = _mm256_fmadd_pd(lo, lo, ss0);
            ss1 = _mm256_fmadd_pd(hi, hi, ss1);
        }
        alignas(32) double lanes[4];
        _mm256_store_pd(lanes, _mm256_add_pd(ss0, ss1));
        double ss = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
        for (; j < d; ++j) ss += static_cast<double>(xi[j]) * xi[j];
        const float inv_rms =
            1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(d)) + eps);
        const __m256 inv = _mm256_set1_ps(inv_rms);
        for (j = 0; j + 8 <= d; j += 8) {
            const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(xi + j), inv);
            _mm256_storeu_ps(yi + j, _mm256_mul_ps(v, _mm256_loadu_ps(weight + j)));
        }
        for (; j < d; ++j) yi[j] = xi[j] * inv_rms * weight[j];
        if (inv_rms_out) inv_rms_out[i] = inv_rms;
    });
}

}  // namespace bitttt::kernels
