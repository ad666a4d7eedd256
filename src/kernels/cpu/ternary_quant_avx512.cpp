// AVX-512 per-token activation quantization, bit-identical to quantize_activations_scalar:
// the same float operations in the same order (x * (127 / gamma), round half to even, NaN -> 0,
// clamp to [-127, 127]); only the max over |x| is reordered, and max is exact in any order.
// GCC 12 reports its own _mm512_undefined_*() helpers as uninitialized (a false positive).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>

#include "kernels/cpu/ternary_isa.hpp"

namespace bitttt::kernels {

void quantize_activations_avx512(const float* x, int64_t m, int64_t k, int64_t x_stride, int8_t* xq,
                                 int64_t xq_stride, float* act_scale) {
    check_quantize_args(x, m, k, x_stride, xq, xq_stride, act_scale);
    const int64_t k_pad = packed_cols(k);
    const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    for (int64_t i = 0; i < m; ++i) {
        const float* xi = x + i * x_stride;
        int8_t* qi = xq + i * xq_stride;
        // vmaxps returns its second operand when either is NaN: max(|x|, acc) skips NaN inputs
        // exactly as std::max(acc, |x|) does in the scalar version.
        __m512 vmax = _mm512_setzero_ps();
        int64_t j = 0;
        for (; j + 16 <= k; j += 16)
            vmax = _mm512_max_ps(_mm512_and_ps(_mm512_loadu_ps(xi + j), abs_mask), vmax);
        if (j < k) {
            const __mmask16 tail = static_cast<__mmask16>((1u << (k - j)) - 1);
            vmax =
                _mm512_max_ps(_mm512_and_ps(_mm512_maskz_loadu_ps(tail, xi + j), abs_mask), vmax);
        }
        const float gamma = std::max(_mm512_reduce_max_ps(vmax), 1e-5f);
        const __m512 s = _mm512_set1_ps(127.0f / gamma);
        const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
        for (j = 0; j < k; j += 16) {
            const __mmask16 valid =
                k - j >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (k - j)) - 1);
            __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(valid, xi + j), s),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            r = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(r, r, _CMP_ORD_Q), r);  // NaN -> 0
            r = _mm512_max_ps(_mm512_min_ps(r, hi), lo);
            _mm_mask_storeu_epi8(qi + j, valid, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(r)));
        }
        std::fill(qi + k, qi + k_pad, int8_t{0});
        act_scale[i] = gamma / 127.0f;
    }
}

}  // namespace bitttt::kernels
