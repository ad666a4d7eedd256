// AVX-512 SiLU-gated product, out = g / (1 + exp(-g)) * up, with a vector exp:
// exp(v) = 2^n * exp(r), n = round(v / ln 2), r = v - n ln 2 in [-ln2/2, ln2/2] (ln 2 split in a
// high and a low part so r is exact to float precision), exp(r) by its degree-7 Taylor
// polynomial (truncation error r^8/8! < 3e-9, far below float precision), and 2^n applied with
// vscalefps, which gives +inf on overflow and 0 on underflow like std::exp.
// GCC 12 reports its own _mm512_undefined_*() helpers (inlined into min/max/round/scalef) as
// uninitialized; the intrinsics are correct, so that false positive is silenced for this file.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "core/team.hpp"
#include "kernels/cpu/activations.hpp"

namespace bitttt::kernels {
namespace {

inline __m512 exp_ps(__m512 v) {
    // Clamp far outside the finite range (the result is already inf or 0 there) so n stays a
    // small integer; min/max keep NaN (they return their second operand when one is NaN).
    v = _mm512_max_ps(_mm512_set1_ps(-120.0f), _mm512_min_ps(_mm512_set1_ps(100.0f), v));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(1.44269504088896341f)),
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
    return _mm512_scalef_ps(p, n);
}

}  // namespace

void silu_mul_avx512(const float* gate, const float* up, int64_t n, float* out) {
    check_silu_mul_args(gate, up, n, out);
    const int64_t vectors = (n + 15) / 16;
    parallel_for(vectors, n >= (int64_t{1} << 16), [&](int64_t b) {
        const int64_t i = b * 16;
        const __mmask16 valid =
            n - i >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1);
        const __m512 g = _mm512_maskz_loadu_ps(valid, gate + i);
        const __m512 e = exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), g));
        const __m512 s = _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
        _mm512_mask_storeu_ps(out + i, valid,
                              _mm512_mul_ps(s, _mm512_maskz_loadu_ps(valid, up + i)));
    });
}

}  // namespace bitttt::kernels
