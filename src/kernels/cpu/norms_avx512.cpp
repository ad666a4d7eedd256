// AVX-512 RMSNorm: the sum of squares is accumulated in double (8 lanes, two accumulators), then
// each row is scaled exactly as in the scalar reference: y = (x * inv_rms) * weight.
// GCC 12 reports its own _mm512_undefined_*() helpers (inlined into reductions) as
// uninitialized; the intrinsics are correct, so that false positive is silenced for this file.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cmath>

#include "core/team.hpp"
#include "kernels/cpu/norms.hpp"

namespace bitttt::kernels {

void rmsnorm_avx512(const float* x, int64_t m, int64_t d, int64_t x_stride, const float* weight,
                    float eps, float* y, int64_t y_stride, float* inv_rms_out) {
    check_rmsnorm_args(x, m, d, x_stride, weight, y, y_stride);
    if (d == 0) return;
    parallel_for(m, m * d >= (int64_t{1} << 16), [&](int64_t i) {
        const float* xi = x + i * x_stride;
        float* yi = y + i * y_stride;
        __m512d ss0 = _mm512_setzero_pd(), ss1 = _mm512_setzero_pd();
        int64_t j = 0;
        for (; j + 16 <= d; j += 16) {
            const __m512d lo = _mm512_cvtps_pd(_mm256_loadu_ps(xi + j));
            const __m512d hi = _mm512_cvtps_pd(_mm256_loadu_ps(xi + j + 8));
            ss0 = _mm512_fmadd_pd(lo, lo, ss0);
            ss1 = _mm512_fmadd_pd(hi, hi, ss1);
        }
        double ss = _mm512_reduce_add_pd(_mm512_add_pd(ss0, ss1));
        for (; j < d; ++j) ss += static_cast<double>(xi[j]) * xi[j];
        const float inv_rms =
            1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(d)) + eps);
        const __m512 inv = _mm512_set1_ps(inv_rms);
        for (j = 0; j < d; j += 16) {
            const __mmask16 valid =
                d - j >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (d - j)) - 1);
            const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(valid, xi + j), inv);
            _mm512_mask_storeu_ps(yi + j, valid,
                                  _mm512_mul_ps(v, _mm512_maskz_loadu_ps(valid, weight + j)));
        }
        if (inv_rms_out) inv_rms_out[i] = inv_rms;
    });
}

}  // namespace bitttt::kernels
