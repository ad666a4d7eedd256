// AVX2 per-token activation quantization, bit-identical to quantize_activations_scalar:
// the same float operations in the same order (x * (127 / gamma), round half to even, NaN -> 0,
// clamp to [-127, 127]); only the max over |x| is reordered, and max is exact in any order.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels/cpu/ternary_isa.hpp"

namespace bitttt::kernels {
namespace {

// The scalar definition, for the columns past the last full vector.
inline int8_t quantize_one(float x, float s) {
    float r = std::nearbyint(x * s);
    if (!(r == r)) r = 0.0f;
    return static_cast<int8_t>(std::clamp(r, -127.0f, 127.0f));
}

inline __m256i quantize8(const float* x, __m256 s) {
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    __m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x), s),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm256_and_ps(r, _mm256_cmp_ps(r, r, _CMP_ORD_Q));  // NaN -> 0
    return _mm256_cvtps_epi32(_mm256_max_ps(_mm256_min_ps(r, hi), lo));
}

}  // namespace

void quantize_activations_avx2(const float* x, int64_t m, int64_t k, int64_t x_stride, int8_t* xq,
                               int64_t xq_stride, float* act_scale) {
    check_quantize_args(x, m, k, x_stride, xq, xq_stride, act_scale);
    const int64_t k_pad = packed_cols(k);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t i = 0; i < m; ++i) {
        const float* xi = x + i * x_stride;
        int8_t* qi = xq + i * xq_stride;
        // vmaxps returns its second operand when either is NaN: max(|x|, acc) skips NaN inputs
        // exactly as std::max(acc, |x|) does in the scalar version.
        __m256 vmax = _mm256_setzero_ps();
        int64_t j = 0;
        for (; j + 8 <= k; j += 8)
            vmax = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(xi + j), abs_mask), vmax);
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, vmax);
        float absmax = 0.0f;
        for (float v : lanes) absmax = std::max(absmax, v);
        for (; j < k; ++j) absmax = std::max(absmax, std::fabs(xi[j]));
        const float gamma = std::max(absmax, 1e-5f);
        const float scale = 127.0f / gamma;
        const __m256 s = _mm256_set1_ps(scale);
        // 32 values per step: int32 -> int16 -> int8 packs work within 128-bit lanes, the final
        // permutation puts the four groups of 8 back in order.
        const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (j = 0; j + 32 <= k; j += 32) {
            __m256i ab = _mm256_packs_epi32(quantize8(xi + j, s), quantize8(xi + j + 8, s));
            __m256i cd = _mm256_packs_epi32(quantize8(xi + j + 16, s), quantize8(xi + j + 24, s));
            __m256i q = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), order);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(qi + j), q);
        }
        for (; j < k; ++j) qi[j] = quantize_one(xi[j], scale);
        std::fill(qi + k, qi + k_pad, int8_t{0});
        act_scale[i] = gamma / 127.0f;
    }
}

}  // namespace bitttt::kernels
