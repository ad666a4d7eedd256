// AVX-512 fp32 products (math: f32_matmul.hpp).
//
// A tile is R rows of W x T tokens with one 16-lane accumulator each (R·T <= 16 registers): every
// vector of W loaded is used for T tokens and every vector of x for R rows. For decode (T = 1) the
// R = 4 rows give 4 independent FMA chains and 4 concurrent streams, enough to keep the loads
// ahead of the FMA latency; the loop is then bound by the bandwidth W streams at. Threads take
// contiguous ranges of row blocks, so each streams one contiguous part of W.
#include <immintrin.h>

#include "core/team.hpp"
#include "kernels/cpu/f32_matmul.hpp"
#include "kernels/cpu/simd_avx512.hpp"

namespace bitttt::kernels {
namespace {

using simd::sum_lanes;

template <int R, int T>
void tile(const float* w, int64_t cols, const float* x, int64_t x_stride, float* y,
          int64_t y_stride) {
    __m512 acc[R][T];
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= cols; k += 16) {
        __m512 xv[T];
        for (int t = 0; t < T; ++t) xv[t] = _mm512_loadu_ps(x + t * x_stride + k);
        for (int r = 0; r < R; ++r) {
            const __m512 wv = _mm512_loadu_ps(w + r * cols + k);
            for (int t = 0; t < T; ++t) acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
    if (k < cols) {
        const __mmask16 mask = static_cast<__mmask16>((1u << (cols - k)) - 1);
        __m512 xv[T];
        for (int t = 0; t < T; ++t) xv[t] = _mm512_maskz_loadu_ps(mask, x + t * x_stride + k);
        for (int r = 0; r < R; ++r) {
            const __m512 wv = _mm512_maskz_loadu_ps(mask, w + r * cols + k);
            for (int t = 0; t < T; ++t) acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) y[t * y_stride + r] = sum_lanes(acc[r][t]);
}

// All m tokens against rows [n, n + R).
template <int R>
void row_block(const float* w, int64_t n, int64_t cols, const float* x, int64_t x_stride, int64_t m,
               float* y, int64_t y_stride) {
    const float* wn = w + n * cols;
    int64_t i = 0;
    for (; i + 4 <= m; i += 4)
        tile<R, 4>(wn, cols, x + i * x_stride, x_stride, y + i * y_stride + n, y_stride);
    for (; i < m; ++i)
        tile<R, 1>(wn, cols, x + i * x_stride, x_stride, y + i * y_stride + n, y_stride);
}

}  // namespace

void f32_matmul_avx512(const float* w, int64_t rows, int64_t cols, const float* x, int64_t x_stride,
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
