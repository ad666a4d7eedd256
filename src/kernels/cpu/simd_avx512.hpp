// Small AVX-512 helpers shared by the *_avx512.cpp and *_avx512bf16.cpp kernels. Include it only
// from files compiled with the AVX-512 flags (CMakeLists.txt); every function is static, so each
// translation unit keeps its own copy, built with its own flags (no ODR clash between the
// _avx512 and _avx512bf16 builds or with other ISAs' versions).
#pragma once

#if !defined(__AVX512F__)
#error "simd_avx512.hpp: include only from files compiled with -mavx512f (suffix _avx512.cpp)"
#endif

#include <immintrin.h>

#include <cstdint>

namespace bitttt::kernels::simd {

// Sum of the 16 lanes, by swapping halves, quarters, pairs, neighbours. (The maskz forms: GCC 12's
// unmasked ones, like _mm512_reduce_add_ps, start from an undefined register and trip
// -Wmaybe-uninitialized.)
static inline float sum_lanes(__m512 v) {
    v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(0xFFFF, v, v, 0x4E));
    v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(0xFFFF, v, v, 0xB1));
    v = _mm512_add_ps(v, _mm512_maskz_permute_ps(0xFFFF, v, 0x4E));
    v = _mm512_add_ps(v, _mm512_maskz_permute_ps(0xFFFF, v, 0xB1));
    return _mm512_cvtss_f32(v);
}

// The first n lanes (all 16 for n >= 16), for masked loads and stores.
static inline __mmask16 lane_mask(int64_t n) {
    return static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1);
}

// e^v in every lane: e^v = 2^n · e^r with n = round(v / ln 2) and r = v − n·ln 2 in [−ln2/2, ln2/2]
// (ln 2 split in a high part with 16 significant bits, so n·hi is exact, and a low part), e^r by
// its degree-7 Taylor polynomial (truncation error r^8/8! < 3e-9, far below float precision), and
// 2^n applied with vscalefps, which gives +inf on overflow and 0 (through the denormals) on
// underflow like std::exp. v is first clamped far outside the finite range (the result is inf
// or 0 there either way) so n stays a small integer; min/max keep NaN (they return their second
// operand when one is NaN). The maskz forms with all lanes: GCC 12's unmasked min/max/
// roundscale/scalef start from an undefined register and trip -Wmaybe-uninitialized.
static inline __m512 exp_ps(__m512 v) {
    v = _mm512_maskz_max_ps(0xFFFF, _mm512_set1_ps(-120.0f),
                            _mm512_maskz_min_ps(0xFFFF, _mm512_set1_ps(100.0f), v));
    const __m512 n =
        _mm512_maskz_roundscale_ps(0xFFFF, _mm512_mul_ps(v, _mm512_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), v);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(0xFFFF, p, n);
}

}  // namespace bitttt::kernels::simd
