// AVX-512 row primitives of the delta-rule scan (the loop: delta_rule_impl.hpp). Rows are short
// (Dh floats, in L1), so two accumulators and a masked tail are all they need.
#include <immintrin.h>

#include "kernels/cpu/simd_avx512.hpp"
#include "model/delta_rule.hpp"
#include "model/delta_rule_impl.hpp"

namespace bitttt {
namespace {

using kernels::simd::lane_mask;
using kernels::simd::sum_lanes;

struct Avx512Ops {
    static float dot(const float* a, const float* b, int64_t n) {
        __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
        int64_t j = 0;
        for (; j + 32 <= n; j += 32) {
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j), s0);
            s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j + 16), _mm512_loadu_ps(b + j + 16), s1);
        }
        for (; j < n; j += 16) {
            const __mmask16 m = lane_mask(n - j);
            s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + j), _mm512_maskz_loadu_ps(m, b + j),
                                 s0);
        }
        return sum_lanes(_mm512_add_ps(s0, s1));
    }
    static void axpy(float* w, float c, const float* k, int64_t n) {
        const __m512 cv = _mm512_set1_ps(c);
        for (int64_t j = 0; j < n; j += 16) {
            const __mmask16 m = lane_mask(n - j);
            const __m512 x = _mm512_fmadd_ps(cv, _mm512_maskz_loadu_ps(m, k + j),
                                             _mm512_maskz_loadu_ps(m, w + j));
            _mm512_mask_storeu_ps(w + j, m, x);
        }
    }
    static float axpy_dot(float* w, float c, const float* k, const float* q, int64_t n) {
        const __m512 cv = _mm512_set1_ps(c);
        __m512 s = _mm512_setzero_ps();
        for (int64_t j = 0; j < n; j += 16) {
            const __mmask16 m = lane_mask(n - j);
            const __m512 x = _mm512_fmadd_ps(cv, _mm512_maskz_loadu_ps(m, k + j),
                                             _mm512_maskz_loadu_ps(m, w + j));
            _mm512_mask_storeu_ps(w + j, m, x);
            s = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m, q + j), s);
        }
        return sum_lanes(s);
    }
};

}  // namespace

void delta_rule_scan_avx512(const DeltaRuleScan& scan) {
    detail::delta_rule_scan_rows<Avx512Ops>(scan);
}

}  // namespace bitttt
