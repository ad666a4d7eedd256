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

}  // namespace bitttt::kernels::simd
