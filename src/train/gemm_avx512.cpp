// The fp32 training GEMM with AVX-512: the same tiles as gemm.cpp, but a 4×64 tile of C lives in
// 16 zmm registers while k runs (4 loads of B and 4 broadcasts of A feed 16 FMAs per step), so it
// is bound by FMA throughput rather than by L1 traffic. Edge tiles use the portable loop.
#include <immintrin.h>

#include <algorithm>

#include "train/gemm.hpp"

namespace bitttt::train {

void gemm_f32_avx512(float* c, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                     int64_t m, int64_t nc, int64_t k, float alpha, bool accumulate) {
    constexpr int64_t kRows = 4, kCols = 64, kDepth = 256;
    const int64_t row_tiles = (m + kRows - 1) / kRows;
    const int64_t col_tiles = (nc + kCols - 1) / kCols;
    // k is cut into blocks of kDepth: B's [kDepth, 64] strip (64 KiB) stays in L2 while every row
    // tile of one column tile uses it (tiles are numbered column-tile-major so a thread's static
    // share walks down one strip), and a transposed A touches kDepth lines that stay cached
    // across neighbouring row tiles. Each element of C still gets its blocks in k order.
#pragma omp parallel if (m * nc * k > (1 << 17))
    for (int64_t p0 = 0; p0 < k; p0 += kDepth) {
        const int64_t p1 = std::min(k, p0 + kDepth);
        const bool overwrite = p0 == 0 && !accumulate;
#pragma omp for schedule(static)
        for (int64_t tile = 0; tile < row_tiles * col_tiles; ++tile) {
            const int64_t i0 = (tile % row_tiles) * kRows, j0 = (tile / row_tiles) * kCols;
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
            __m512 acc[kRows][4];
            for (auto& row : acc)
                for (auto& v : row) v = _mm512_setzero_ps();
            const float* a0 = a + i0 * a_rs;
            for (int64_t p = p0; p < p1; ++p) {
                const float* bp = b + p * nc + j0;
                const __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
                const __m512 b2 = _mm512_loadu_ps(bp + 32), b3 = _mm512_loadu_ps(bp + 48);
                for (int64_t r = 0; r < kRows; ++r) {
                    const __m512 ar = _mm512_set1_ps(a0[r * a_rs + p * a_cs]);
                    acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
                    acc[r][2] = _mm512_fmadd_ps(ar, b2, acc[r][2]);
                    acc[r][3] = _mm512_fmadd_ps(ar, b3, acc[r][3]);
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

}  // namespace bitttt::train
