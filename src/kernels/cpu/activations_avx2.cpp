// AVX2 SiLU-gated product, out = g / (1 + exp(-g)) * up, with a vector exp:
// exp(v) = 2^n * exp(r), n = round(v / ln 2), r = v - n ln 2 in [-ln2/2, ln2/2] (ln 2 split in a
// high and a low part), exp(r) by its degree-7 Taylor polynomial (truncation error < 3e-9), and
// 2^n built in the exponent fields of two factors. Overflow gives +inf and underflow subnormals
// or 0, like std::exp.
#include <immintrin.h>

#include <cmath>

#include "core/team.hpp"
#include "kernels/cpu/activations.hpp"

namespace bitttt::kernels {
namespace {

inline __m256 exp_ps(__m256 v) {
    // Clamp where the result is already inf (v > 88.73) or 0 (v < -103.3) so n stays small;
    // min/max keep NaN (they return their second operand when one is NaN).
    v = _mm256_max_ps(_mm256_set1_ps(-104.0f), _mm256_min_ps(_mm256_set1_ps(89.0f), v));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(v, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), v);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187045e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    // 2^n = 2^e1 * 2^e2 with e1 = floor(n / 2), e2 = n - e1, both in [-75, 64]: each factor is a
    // normal float (exponent field e + 127), and the two products overflow to inf or round to
    // subnormals / 0 exactly where exp does.
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i e1 = _mm256_srai_epi32(ni, 1);
    const __m256i e2 = _mm256_sub_epi32(ni, e1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e1, bias), 23));
    const __m256 f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, f1), f2);
}

}  // namespace

void silu_mul_avx2(const float* gate, const float* up, int64_t n, float* out) {
    check_silu_mul_args(gate, up, n, out);
    const int64_t vectors = n / 8;
    parallel_for(vectors, n >= (int64_t{1} << 16), [&](int64_t b) {
        const int64_t i = b * 8;
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), g));
        const __m256 s = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    });
    for (int64_t i = vectors * 8; i < n; ++i)
        out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace bitttt::kernels
