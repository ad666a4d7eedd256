// The AVX-512 tile loop of gemm_bf16 (gemm_bf16.hpp), shared by the vdpbf16ps kernel and its
// AVX-512F emulation, which differ only in `Dot::step` (acc + the pair products of a and b).
// Included only by files compiled with AVX-512 flags.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "train/gemm_bf16.hpp"

namespace bitttt::train::bf16_detail {

inline __mmask16 lanes(int64_t n) {
    return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

template <class Dot>
void gemm_bf16_tiles(float* c, const Bf16Panels& a, const Bf16Panels& b, float alpha,
                     bool accumulate) {
    const int64_t m = a.count, n = b.count, kp = a.pairs();
    const int64_t row_panels = a.panels(), col_panels = b.panels();
    // A work unit is one column panel times a group of row panels: the B panel's k block (64 KiB)
    // stays in L1/L2 while the group's A panels stream past it; units go column-panel-major, so a
    // thread's static share walks down few B panels.
    constexpr int64_t kGroup = 16;
    const int64_t groups = (row_panels + kGroup - 1) / kGroup;
    const __m512 va = _mm512_set1_ps(alpha);
#pragma omp parallel for schedule(static) if (m * n * kp > (1 << 16))
    for (int64_t u = 0; u < col_panels * groups; ++u) {
        const int64_t cp = u / groups, rg = u % groups;
        const uint32_t* bpanel = b.data.data() + cp * kp * kBf16Cols;
        const int64_t j0 = cp * kBf16Cols;
        __mmask16 mask[4];
        for (int q = 0; q < 4; ++q) mask[q] = lanes(n - j0 - 16 * q);
        const int64_t rp_end = std::min(row_panels, (rg + 1) * kGroup);
        for (int64_t p0 = 0; p0 < kp; p0 += kBf16DepthPairs) {
            const int64_t p1 = std::min(kp, p0 + kBf16DepthPairs);
            const bool overwrite = p0 == 0 && !accumulate;
            for (int64_t rp = rg * kGroup; rp < rp_end; ++rp) {
                const uint32_t* ap = a.data.data() + rp * kp * kBf16Rows;
                __m512 acc[4][4];
                for (auto& row : acc)
                    for (auto& v : row) v = _mm512_setzero_ps();
                for (int64_t p = p0; p < p1; ++p) {
                    const uint32_t* bp = bpanel + p * kBf16Cols;
                    const __m512i b0 = _mm512_load_si512(bp), b1 = _mm512_load_si512(bp + 16);
                    const __m512i b2 = _mm512_load_si512(bp + 32), b3 = _mm512_load_si512(bp + 48);
                    for (int r = 0; r < 4; ++r) {
                        const __m512i ar = _mm512_set1_epi32(static_cast<int>(ap[p * 4 + r]));
                        acc[r][0] = Dot::step(acc[r][0], ar, b0);
                        acc[r][1] = Dot::step(acc[r][1], ar, b1);
                        acc[r][2] = Dot::step(acc[r][2], ar, b2);
                        acc[r][3] = Dot::step(acc[r][3], ar, b3);
                    }
                }
                const int64_t rows = std::min<int64_t>(kBf16Rows, m - rp * kBf16Rows);
                for (int64_t r = 0; r < rows; ++r) {
                    float* cr = c + (rp * kBf16Rows + r) * n + j0;
                    for (int q = 0; q < 4; ++q) {
                        if (!mask[q]) continue;
                        __m512 v = _mm512_mul_ps(va, acc[r][q]);
                        if (!overwrite)
                            v = _mm512_add_ps(_mm512_maskz_loadu_ps(mask[q], cr + 16 * q), v);
                        _mm512_mask_storeu_ps(cr + 16 * q, mask[q], v);
                    }
                }
            }
        }
    }
}

}  // namespace bitttt::train::bf16_detail
