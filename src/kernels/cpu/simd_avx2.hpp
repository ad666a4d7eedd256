// Small AVX2 helpers shared by the *_avx2.cpp kernels. Include it only from files compiled with the
// AVX2 flags (CMakeLists.txt: suffix _avx2.cpp); every function is static, so each translation
// unit keeps its own copy, built with its own flags (no ODR clash with other ISAs' versions).
#pragma once

#if !defined(__AVX2__) || !defined(__FMA__)
#error "simd_avx2.hpp: include only from files compiled with -mavx2 -mfma (suffix _avx2.cpp)"
#endif

#include <immintrin.h>

#include <cstdint>

namespace bitttt::kernels::simd {

// Sum of the 8 lanes: halves, then pairs, then neighbours.
static inline float sum_lanes(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// All-ones in the first n lanes (n in 0..8), for _mm256_maskload_ps / _mm256_maskstore_ps.
static inline __m256i lane_mask(int64_t n) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), lanes);
}

}  // namespace bitttt::kernels::simd
