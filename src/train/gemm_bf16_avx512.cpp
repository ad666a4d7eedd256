// gemm_bf16 on AVX-512F without AVX512_BF16: each pair's two products as two FMAs, odd k first
// (as vdpbf16ps orders them). A bf16 value is the top half of an fp32 one, so the odd half of a
// word is the word with its low 16 bits cleared, the even half the word shifted left by 16.
// (maskz forms: GCC 12's unmasked shift trips -Wmaybe-uninitialized.) Products of bf16 values are
// exact in fp32, so each FMA rounds once, as each of vdpbf16ps's additions does; unlike it,
// denormals are kept (the scalar reference's arithmetic exactly).
#include <omp.h>

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

// Pair p's words (rows 2p and 2p+1 of a source contiguous along the elements) of elements
// [e0, e1), 16 at a time, into their panels.
inline void pack_pair_row(uint32_t* dst, const float* src, int64_t ks, int64_t depth, int64_t kp,
                          int64_t width, int64_t p, int64_t e0, int64_t e1) {
    const float* s0 = src + 2 * p * ks;
    const bool has_odd = 2 * p + 1 < depth;
    for (int64_t e = e0; e < e1; e += 16) {
        const __mmask16 m = bf16_detail::lanes(e1 - e);
        const __m512 even = _mm512_maskz_loadu_ps(m, s0 + e);
        const __m512 odd = has_odd ? _mm512_maskz_loadu_ps(m, s0 + ks + e) : _mm512_setzero_ps();
        const __m512i w = pair_words(even, odd);
        if (width >= 16) {
            _mm512_mask_storeu_epi32(dst + ((e / width) * kp + p) * width + e % width, m, w);
        } else if (e + 16 <= e1) {  // width 4: four panels, 4 words each
            uint32_t* d = dst + (e / 4 * kp + p) * 4;
            _mm_storeu_si128(reinterpret_cast<__m128i*>(d),
                             _mm512_maskz_extracti32x4_epi32(0xF, w, 0));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(d + kp * 4),
                             _mm512_maskz_extracti32x4_epi32(0xF, w, 1));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(d + 2 * kp * 4),
                             _mm512_maskz_extracti32x4_epi32(0xF, w, 2));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(d + 3 * kp * 4),
                             _mm512_maskz_extracti32x4_epi32(0xF, w, 3));
        } else {  // the range's last, partial 16
            alignas(64) uint32_t words[16];
            _mm512_store_si512(words, w);
            for (int64_t c = 0; c < 16 && e + c < e1; c += 4) {
                uint32_t* d = dst + ((e + c) / width * kp + p) * width;
                for (int64_t r = 0; r < 4 && e + c + r < e1; ++r) d[r] = words[c + r];
            }
        }
    }
}

}  // namespace

// The vector twin of gemm_bf16.cpp's pack_panels for sources contiguous along k (ks == 1) or
// along the elements (es == 1); the same words (tested).
void pack_panels_avx512(uint32_t* dst, const float* src, int64_t es, int64_t ks, int64_t count,
                        int64_t depth, int64_t width) {
    const int64_t kp = (depth + 1) / 2;
    // Work goes in groups of elements that fill whole panels and whole cache lines.
    const int64_t group = std::max<int64_t>(width, 16);
    const int64_t groups = (count + group - 1) / group;
    if (ks == 1) {
#pragma omp parallel for schedule(static) if (count * depth > (1 << 16))
        for (int64_t g = 0; g < groups; ++g) {
            const int64_t e0 = g * group, e1 = std::min(count, e0 + group);
            if (width == 4) {
                // A panel's 4 rows at once: 16 floats of each give 8 pairs, and a 4 x 8 transpose
                // of the words gives the panel's layout [p][r], 32 consecutive words.
                for (int64_t e = e0; e < e1; e += 4) {
                    const int64_t rows = std::min<int64_t>(4, e1 - e);
                    uint32_t* d = dst + (e / 4) * kp * 4;
                    for (int64_t p0 = 0; p0 < kp; p0 += 8) {
                        const __mmask16 m = bf16_detail::lanes(depth - 2 * p0);
                        __m256i r[4];
                        for (int64_t i = 0; i < 4; ++i)
                            r[i] = pair_words_contiguous(
                                i < rows ? _mm512_maskz_loadu_ps(m, src + (e + i) * es + 2 * p0)
                                         : _mm512_setzero_ps());
                        const __m256i t01l =
                            _mm256_unpacklo_epi32(r[0], r[1]);  // p0 p0 p1 p1 | p4..
                        const __m256i t01h =
                            _mm256_unpackhi_epi32(r[0], r[1]);  // p2 p2 p3 p3 | p6..
                        const __m256i t23l = _mm256_unpacklo_epi32(r[2], r[3]);
                        const __m256i t23h = _mm256_unpackhi_epi32(r[2], r[3]);
                        const __m256i q04 = _mm256_unpacklo_epi64(t01l, t23l);  // p0 | p4
                        const __m256i q15 = _mm256_unpackhi_epi64(t01l, t23l);  // p1 | p5
                        const __m256i q26 = _mm256_unpacklo_epi64(t01h, t23h);  // p2 | p6
                        const __m256i q37 = _mm256_unpackhi_epi64(t01h, t23h);  // p3 | p7
                        const __m256i out[4] = {_mm256_permute2x128_si256(q04, q15, 0x20),
                                                _mm256_permute2x128_si256(q26, q37, 0x20),
                                                _mm256_permute2x128_si256(q04, q15, 0x31),
                                                _mm256_permute2x128_si256(q26, q37, 0x31)};
                        const int64_t n = std::min<int64_t>(8, kp - p0);  // pairs to store
                        for (int64_t i = 0; i < 4; ++i) {
                            const int64_t left = 4 * n - 8 * i;  // words of out[i] to store
                            if (left <= 0) break;
                            _mm256_mask_storeu_epi32(
                                d + p0 * 4 + 8 * i,
                                static_cast<__mmask8>(left >= 8 ? 0xFF : (1u << left) - 1), out[i]);
                        }
                    }
                }
            } else {
                // Each element's row: 16 floats give 8 pairs, stored width words apart.
                alignas(32) uint32_t words[8];
                for (int64_t e = e0; e < e1; ++e) {
                    const float* s = src + e * es;
                    uint32_t* d = dst + (e / width) * kp * width + e % width;
                    for (int64_t p0 = 0; p0 < kp; p0 += 8) {
                        const __m512 x =
                            _mm512_maskz_loadu_ps(bf16_detail::lanes(depth - 2 * p0), s + 2 * p0);
                        _mm256_store_si256(reinterpret_cast<__m256i*>(words),
                                           pair_words_contiguous(x));
                        const int64_t n = std::min<int64_t>(8, kp - p0);
                        for (int64_t q = 0; q < n; ++q) d[(p0 + q) * width] = words[q];
                    }
                }
            }
        }
        return;
    }
    // A source contiguous along the elements (es == 1: a transposed dy, whose rows are 64 KiB
    // apart for lm_head's dlogits): each thread takes a range of whole groups, in tiles of
    // kPairs pairs x kElems elements, so both sides move in pieces of whole lines on few pages
    // (32 source rows x 1 KiB read, 64 A panels x 256 B written). With 4 KiB pages, walking the
    // pairs outermost (a 16-byte store per A panel per pair, panels 16 KiB apart) or a few lines
    // of every row per visit both ran at ~5 GB/s, bound by TLB misses.
    constexpr int64_t kPairs = 16, kElems = 256;
#pragma omp parallel if (count * depth > (1 << 16))
    {
        const int64_t threads = omp_get_num_threads(), id = omp_get_thread_num();
        const int64_t e0 = std::min(count, groups * id / threads * group);
        const int64_t e1 = std::min(count, groups * (id + 1) / threads * group);
        for (int64_t eb = e0; eb < e1; eb += kElems)
            for (int64_t pb = 0; pb < kp; pb += kPairs)
                for (int64_t p = pb; p < std::min(kp, pb + kPairs); ++p)
                    pack_pair_row(dst, src, ks, depth, kp, width, p, eb, std::min(e1, eb + kElems));
    }
}

}  // namespace bitttt::train
