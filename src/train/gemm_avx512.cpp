// The fp32 training GEMM with AVX-512: the same tiles as gemm.cpp, but a 4×64 tile of C lives in
// 16 zmm registers while k runs (4 loads of B and 4 broadcasts of A feed 16 FMAs per step), so it
// is bound by FMA throughput rather than by L1 traffic. Edge tiles use the portable loop.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "train/gemm.hpp"

namespace bitttt::train {

void gemm_f32_avx512(float* c, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                     int64_t m, int64_t nc, int64_t k, float alpha, bool accumulate, bool packing) {
    constexpr int64_t kRows = 4, kCols = 64, kDepth = 256;
    // Transposed A is packed 16 rows (one cache line per k) at a time: 4 row tiles.
    constexpr int64_t kPackRows = 16;
    const int64_t row_tiles = (m + kRows - 1) / kRows;
    const int64_t col_tiles = (nc + kCols - 1) / kCols;
    // Packing (a copy of what a tile reads into a small contiguous buffer; the sums are the
    // same operations in the same order, so the results are bit-identical without it):
    //  - B, when its rows are longer than a tile (nc > 64): B's [kDepth, 64] strip otherwise
    //    has rows nc floats apart, and at nc = 16384 (lm_head's forward) all 256 of them fall
    //    into the same few cache sets, so the strip does not stay in L1/L2 across row tiles;
    //  - a transposed A (a_cs != 1, the dweight products): a tile reads 4 floats per k at a
    //    stride of a_cs (64 KiB for lm_head's dweight: the same cache-set conflicts), so the
    //    16 rows of 4 row tiles are copied once per k block, a full line per k.
    const bool pack_b = packing && nc > kCols;
    const bool pack_a = packing && a_cs != 1;
    // With a packed A and a narrow B (its k block fits in L2), tiles go row-tile-major, so one
    // packed A block serves every column tile; otherwise column-tile-major, so a thread's static
    // share walks down one B strip (and a transposed A touches lines neighbouring tiles reuse).
    const bool row_major_tiles = pack_a && kDepth * nc * 4 <= (512 << 10);
#pragma omp parallel if (m * nc * k > (1 << 17))
    {
        std::vector<float> a_buf(pack_a ? kDepth * kPackRows : 0);
        // Row-tile-major: every full B strip of the k block, packed once per thread (<= 512 KiB,
        // in its core's L2); column-tile-major: the current strip only.
        const int64_t full_col_tiles = nc / kCols;
        std::vector<float> b_buf(pack_b ? kDepth * kCols * (row_major_tiles ? full_col_tiles : 1)
                                        : 0);
        for (int64_t p0 = 0; p0 < k; p0 += kDepth) {
            const int64_t p1 = std::min(k, p0 + kDepth), depth = p1 - p0;
            const bool overwrite = p0 == 0 && !accumulate;
            int64_t a_group = -1, b_tile = -1;  // what a_buf / b_buf hold in this k block
            if (pack_b && row_major_tiles) {
                for (int64_t ct = 0; ct < full_col_tiles; ++ct)
                    for (int64_t p = 0; p < depth; ++p)
                        std::copy(b + (p0 + p) * nc + ct * kCols,
                                  b + (p0 + p) * nc + ct * kCols + kCols,
                                  b_buf.data() + (ct * depth + p) * kCols);
            }
#pragma omp for schedule(static)
            for (int64_t tile = 0; tile < row_tiles * col_tiles; ++tile) {
                const int64_t rt = row_major_tiles ? tile / col_tiles : tile % row_tiles;
                const int64_t ct = row_major_tiles ? tile % col_tiles : tile / row_tiles;
                const int64_t i0 = rt * kRows, j0 = ct * kCols;
                const int64_t rows = std::min(kRows, m - i0), cols = std::min(kCols, nc - j0);
                if (rows < kRows || cols < kCols) {
                    // Edge tile: the plain loop.
                    for (int64_t r = 0; r < rows; ++r)
                        for (int64_t j = 0; j < cols; ++j) {
                            float sum = 0;
                            for (int64_t p = p0; p < p1; ++p)
                                sum += a[(i0 + r) * a_rs + p * a_cs] * b[p * nc + j0 + j];
                            float& out = c[(i0 + r) * nc + j0 + j];
                            out = (overwrite ? 0.0f : out) + alpha * sum;
                        }
                    continue;
                }
                // Where the tile reads A(i0 + r, p) = a0[r * ars + (p - p0) * acs] and B's row p
                // of its strip = b0 + (p - p0) * bs.
                const float* a0 = a + i0 * a_rs + p0 * a_cs;
                int64_t ars = a_rs, acs = a_cs;
                if (pack_a) {
                    const int64_t g = i0 / kPackRows, g0 = g * kPackRows;
                    const int64_t g_rows = std::min(kPackRows, m - g0);
                    if (g != a_group) {
                        for (int64_t p = 0; p < depth; ++p)
                            for (int64_t r = 0; r < g_rows; ++r)
                                a_buf[p * kPackRows + r] = a[(g0 + r) * a_rs + (p0 + p) * a_cs];
                        a_group = g;
                    }
                    a0 = a_buf.data() + (i0 - g0), ars = 1, acs = kPackRows;
                }
                const float* b0 = b + p0 * nc + j0;
                int64_t bs = nc;
                if (pack_b && row_major_tiles) {
                    b0 = b_buf.data() + ct * depth * kCols, bs = kCols;
                } else if (pack_b) {
                    if (ct != b_tile) {
                        for (int64_t p = 0; p < depth; ++p)
                            std::copy(b0 + p * nc, b0 + p * nc + kCols, b_buf.data() + p * kCols);
                        b_tile = ct;
                    }
                    b0 = b_buf.data(), bs = kCols;
                }
                __m512 acc[kRows][4];
                for (auto& row : acc)
                    for (auto& v : row) v = _mm512_setzero_ps();
                for (int64_t p = 0; p < depth; ++p) {
                    const float* bp = b0 + p * bs;
                    const __m512 b_0 = _mm512_loadu_ps(bp), b_1 = _mm512_loadu_ps(bp + 16);
                    const __m512 b_2 = _mm512_loadu_ps(bp + 32), b_3 = _mm512_loadu_ps(bp + 48);
                    for (int64_t r = 0; r < kRows; ++r) {
                        const __m512 ar = _mm512_set1_ps(a0[r * ars + p * acs]);
                        acc[r][0] = _mm512_fmadd_ps(ar, b_0, acc[r][0]);
                        acc[r][1] = _mm512_fmadd_ps(ar, b_1, acc[r][1]);
                        acc[r][2] = _mm512_fmadd_ps(ar, b_2, acc[r][2]);
                        acc[r][3] = _mm512_fmadd_ps(ar, b_3, acc[r][3]);
                    }
                }
                const __m512 va = _mm512_set1_ps(alpha);
                for (int64_t r = 0; r < kRows; ++r) {
                    float* cr = c + (i0 + r) * nc + j0;
                    for (int q = 0; q < 4; ++q) {
                        __m512 v = _mm512_mul_ps(va, acc[r][q]);
                        if (!overwrite) v = _mm512_add_ps(_mm512_loadu_ps(cr + 16 * q), v);
                        _mm512_storeu_ps(cr + 16 * q, v);
                    }
                }
            }
        }
    }
}

}  // namespace bitttt::train
