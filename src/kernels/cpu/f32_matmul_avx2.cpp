// AVX2 + FMA fp32 products (math: f32_matmul.hpp; tiling as in f32_matmul_avx512.cpp, with
// 8-lane vectors and a masked load for the column tail).
#include <immintrin.h>

#include "core/team.hpp"
#include "kernels/cpu/f32_matmul.hpp"
#include "kernels/cpu/simd_avx2.hpp"

namespace bitttt::kernels {
namespace {

using simd::lane_mask;
using simd::sum_lanes;

template <int R, int T>
void tile(const float* w, int64_t cols, const float* x, int64_t x_stride, float* y,
          int64_t y_stride) {
    __m256 acc[R][T];
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= cols; k += 8) {
        __m256 xv[T];
        for (int t = 0; t < T; ++t) xv[t] = _mm256_loadu_ps(x + t * x_stride + k);
        for (int r = 0; r < R; ++r) {
            const __m256 wv = _mm256_loadu_ps(w + r * cols + k);
            for (int t = 0; t < T; ++t) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
    if (k < cols) {
        const __m256i mask = lane_mask(cols - k);
        __m256 xv[T];
        for (int t = 0; t < T; ++t) xv[t] = _mm256_maskload_ps(x + t * x_stride + k, mask);
        for (int r = 0; r < R; ++r) {
            const __m256 wv = _mm256_maskload_ps(w + r * cols + k, mask);
            for (int t = 0; t < T; ++t) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) y[t * y_stride + r] = sum_lanes(acc[r][t]);
}

template <int R>
void row_block(const float* w, int64_t n, int64_t cols, const float* x, int64_t x_stride, int64_t m,
               float* y, int64_t y_stride) {
    const float* wn = w + n * cols;
    int64_t i = 0;
    for (; i + 3 <= m; i += 3)
        tile<R, 3>(wn, cols, x + i * x_stride, x_stride, y + i * y_stride + n, y_stride);
    for (; i < m; ++i)
        tile<R, 1>(wn, cols, x + i * x_stride, x_stride, y + i * y_stride + n, y_stride);
}

}  // namespace

void f32_matmul_avx2(const float* w, int64_t rows, int64_t cols, const float* x, int64_t x_stride,
                     int64_t m, float* y, int64_t y_stride) {
    constexpr int64_t kRows = 4;
    const int64_t blocks = rows / kRows;
    // Small products (the delta rule's step-size projection, tiny vocabularies) stay on the
    // calling thread: below ~100k multiply-adds a fork/join costs more than it saves.
    const bool parallel = rows * cols * m >= kParallelMinWork;
    parallel_for(blocks, parallel, [&](int64_t b) {
        row_block<kRows>(w, b * kRows, cols, x, x_stride, m, y, y_stride);
    });
    for (int64_t n = blocks * kRows; n < rows; ++n)
        row_block<1>(w, n, cols, x, x_stride, m, y, y_stride);
}

}  // namespace bitttt::kernels
