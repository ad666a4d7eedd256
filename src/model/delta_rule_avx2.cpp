// AVX2 + FMA row primitives of the delta-rule scan (the loop: delta_rule_impl.hpp); 8-lane
// vectors with a scalar tail.
#include <immintrin.h>

#include "kernels/cpu/simd_avx2.hpp"
#include "model/delta_rule.hpp"
#include "model/delta_rule_impl.hpp"

namespace bitttt {
namespace {

using kernels::simd::sum_lanes;

struct Avx2Ops {
    static float dot(const float* a, const float* b, int64_t n) {
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        int64_t j = 0;
        for (; j + 16 <= n; j += 16) {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 8), _mm256_loadu_ps(b + j + 8), s1);
        }
        for (; j + 8 <= n; j += 8)
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), s0);
        float s = sum_lanes(_mm256_add_ps(s0, s1));
        for (; j < n; ++j) s += a[j] * b[j];
        return s;
    }
    static void axpy(float* w, float c, const float* k, int64_t n) {
        const __m256 cv = _mm256_set1_ps(c);
        int64_t j = 0;
        for (; j + 8 <= n; j += 8)
            _mm256_storeu_ps(w + j,
                             _mm256_fmadd_ps(cv, _mm256_loadu_ps(k + j), _mm256_loadu_ps(w + j)));
        for (; j < n; ++j) w[j] += c * k[j];
    }
    static float axpy_dot(float* w, float c, const float* k, const float* q, int64_t n) {
        const __m256 cv = _mm256_set1_ps(c);
        __m256 s = _mm256_setzero_ps();
        int64_t j = 0;
        for (; j + 8 <= n; j += 8) {
            const __m256 x = _mm256_fmadd_ps(cv, _mm256_loadu_ps(k + j), _mm256_loadu_ps(w + j));
            _mm256_storeu_ps(w + j, x);
            s = _mm256_fmadd_ps(x, _mm256_loadu_ps(q + j), s);
        }
        float r = sum_lanes(s);
        for (; j < n; ++j) {
            w[j] += c * k[j];
            r += w[j] * q[j];
        }
        return r;
    }
};

}  // namespace

void delta_rule_scan_avx2(const DeltaRuleScan& scan) {
    detail::delta_rule_scan_rows<Avx2Ops>(scan);
}

}  // namespace bitttt
