// gemm_bf16 on AVX-512F without AVX512_BF16: each pair's two products as two FMAs, odd k first
// (as vdpbf16ps orders them). A bf16 value is the top half of an fp32 one, so the odd half of a
// word is the word with its low 16 bits cleared, the even half the word shifted left by 16.
// (maskz forms: GCC 12's unmasked shift trips -Wmaybe-uninitialized.) Products of bf16 values are
// exact in fp32, so each FMA rounds once, as each of vdpbf16ps's additions does; unlike it,
// denormals are kept (the scalar reference's arithmetic exactly).
#include "train/gemm_bf16_tile.hpp"

namespace bitttt::train {
namespace {
struct EmulatedDot {
    static __m512 step(__m512 acc, __m512i a, __m512i b) {
        const __m512i hi = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
        const __m512 a_odd = _mm512_castsi512_ps(_mm512_and_si512(a, hi));
        const __m512 b_odd = _mm512_castsi512_ps(_mm512_and_si512(b, hi));
        const __m512 a_even = _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xFFFF, a, 16));
        const __m512 b_even = _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xFFFF, b, 16));
        return _mm512_fmadd_ps(a_even, b_even, _mm512_fmadd_ps(a_odd, b_odd, acc));
    }
};
}  // namespace

void gemm_bf16_emulated(float* c, const Bf16Panels& a, const Bf16Panels& b, float alpha,
                        bool accumulate) {
    bf16_detail::gemm_bf16_tiles<EmulatedDot>(c, a, b, alpha, accumulate);
}

}  // namespace bitttt::train

namespace bitttt::train {
namespace {

// x rounded to bf16 in the high half of each lane (the low half is garbage): RNE by adding
// 0x7fff plus the kept lowest bit; a NaN keeps its bits with the quiet bit set (bf16_round's).
inline __m512i round_high(__m512 x) {
    const __m512i u = _mm512_castps_si512(x);
    const __m512i lsb =
        _mm512_and_si512(_mm512_maskz_srli_epi32(0xFFFF, u, 16), _mm512_set1_epi32(1));
    const __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    const __mmask16 nan = _mm512_cmpgt_epi32_mask(
        _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    return _mm512_mask_or_epi32(r, nan, u, _mm512_set1_epi32(0x00400000));
}

// Words of pairs (even from e, odd from o) for 16 lanes.
inline __m512i pair_words(__m512 even, __m512 odd) {
    const __m512i lo = _mm512_maskz_srli_epi32(0xFFFF, round_high(even), 16);
    const __m512i hi = _mm512_and_si512(round_high(odd), _mm512_set1_epi32(int(0xFFFF0000u)));
    return _mm512_or_si512(lo, hi);
}

// 8 words of pairs from 16 consecutive floats (even, odd, even, ...).
inline __m256i pair_words_contiguous(__m512 x) {
    const __m512i r = round_high(x);  // 64-bit lanes: even rounded in bits 16..31, odd in 48..63
    const __m512i lo =
        _mm512_and_si512(_mm512_maskz_srli_epi64(0xFF, r, 16), _mm512_set1_epi64(0xFFFF));
    const __m512i hi =
        _mm512_and_si512(_mm512_maskz_srli_epi64(0xFF, r, 32), _mm512_set1_epi64(0xFFFF0000));
    return _mm512_maskz_cvtepi64_epi32(0xFF, _mm512_or_si512(lo, hi));
}

}  // namespace

// The vector twin of gemm_bf16.cpp's pack_panels for sources contiguous along k (ks == 1) or
// along the elements (es == 1); the same words (tested), the same work split.
void pack_panels_avx512(uint32_t* dst, const float* src, int64_t es, int64_t ks, int64_t count,
                        int64_t depth, int64_t width) {
    const int64_t kp = (depth + 1) / 2;
    const int64_t group = std::max<int64_t>(width, 16);
    const int64_t groups = (count + group - 1) / group;
#pragma omp parallel for schedule(static) if (count * depth > (1 << 16))
    for (int64_t g = 0; g < groups; ++g) {
        const int64_t e0 = g * group, e1 = std::min(count, e0 + group);
        if (ks == 1) {
            // Each element's row: 16 floats give 8 pairs, stored width words apart.
            alignas(32) uint32_t words[8];
            for (int64_t e = e0; e < e1; ++e) {
                const float* s = src + e * es;
                uint32_t* d = dst + (e / width) * kp * width + e % width;
                for (int64_t p0 = 0; p0 < kp; p0 += 8) {
                    const __m512 x =
                        _mm512_maskz_loadu_ps(bf16_detail::lanes(depth - 2 * p0), s + 2 * p0);
                    _mm256_store_si256(reinterpret_cast<__m256i*>(words), pair_words_contiguous(x));
                    const int64_t n = std::min<int64_t>(8, kp - p0);
                    for (int64_t q = 0; q < n; ++q) d[(p0 + q) * width] = words[q];
                }
            }
        } else {
            // Rows 2p and 2p+1 of the source give 16 elements' pairs at once.
            for (int64_t p = 0; p < kp; ++p) {
                const float* s0 = src + 2 * p * ks;
                const bool has_odd = 2 * p + 1 < depth;
                for (int64_t e = e0; e < e1; e += 16) {
                    const __mmask16 m = bf16_detail::lanes(e1 - e);
                    const __m512 even = _mm512_maskz_loadu_ps(m, s0 + e);
                    const __m512 odd =
                        has_odd ? _mm512_maskz_loadu_ps(m, s0 + ks + e) : _mm512_setzero_ps();
                    const __m512i w = pair_words(even, odd);
                    if (width >= 16) {
                        _mm512_mask_storeu_epi32(dst + ((e / width) * kp + p) * width + e % width,
                                                 m, w);
                    } else {  // width 4: four panels, 4 words each
                        alignas(64) uint32_t words[16];
                        _mm512_store_si512(words, w);
                        for (int64_t c = 0; c < 16 && e + c < e1; c += 4) {
                            uint32_t* d = dst + ((e + c) / width * kp + p) * width;
                            for (int64_t r = 0; r < 4 && e + c + r < e1; ++r) d[r] = words[c + r];
                        }
                    }
                }
            }
        }
    }
}

}  // namespace bitttt::train
