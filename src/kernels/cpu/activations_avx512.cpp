// AVX-512 SiLU-gated product, out = g / (1 + exp(-g)) * up, with the vector exp of
// simd_avx512.hpp.
#include <immintrin.h>

#include "core/team.hpp"
#include "kernels/cpu/activations.hpp"
#include "kernels/cpu/simd_avx512.hpp"

namespace bitttt::kernels {
void silu_mul_avx512(const float* gate, const float* up, int64_t n, float* out) {
    check_silu_mul_args(gate, up, n, out);
    const int64_t vectors = (n + 15) / 16;
    parallel_for(vectors, n >= (int64_t{1} << 16), [&](int64_t b) {
        const int64_t i = b * 16;
        const __mmask16 valid =
            n - i >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1);
        const __m512 g = _mm512_maskz_loadu_ps(valid, gate + i);
        const __m512 e = simd::exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), g));
        const __m512 s = _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
        _mm512_mask_storeu_ps(out + i, valid,
                              _mm512_mul_ps(s, _mm512_maskz_loadu_ps(valid, up + i)));
    });
}

}  // namespace bitttt::kernels
