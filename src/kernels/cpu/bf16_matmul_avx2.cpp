// AVX2 + FMA bf16-weight products (math: bf16_matmul.hpp; tiling as in f32_matmul_avx2.cpp).
// Eight bf16 weights widen to fp32 with a zero-extension to 32 bits and a 16-bit shift; the
// column tail is copied into a zero-padded block (AVX2 has no 16-bit masked load).
#include <immintrin.h>

#include <cstring>

#include "core/team.hpp"
#include "kernels/cpu/bf16_matmul.hpp"
#include "kernels/cpu/f32_matmul.hpp"
#include "kernels/cpu/simd_avx2.hpp"

namespace bitttt::kernels {
namespace {

using simd::lane_mask;
using simd::sum_lanes;

// fp32 values of 8 bf16 weights.
inline __m256 widen(const uint16_t* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

template <int R, int T>
void tile(const uint16_t* w, int64_t cols, const float* x, int64_t x_stride, float* y,
          int64_t y_stride) {
    __m256 acc[R][T];
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= cols; k += 8) {
        __m256 xv[T];
        for (int t = 0; t < T; ++t) xv[t] = _mm256_loadu_ps(x + t * x_stride + k);
        for (int r = 0; r < R; ++r) {
            const __m256 wv = widen(w + r * cols + k);
            for (int t = 0; t < T; ++t) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
    if (k < cols) {
        const int64_t left = cols - k;
        const __m256i mask = lane_mask(left);
        __m256 xv[T];
        for (int t = 0; t < T; ++t) xv[t] = _mm256_maskload_ps(x + t * x_stride + k, mask);
        for (int r = 0; r < R; ++r) {
            uint16_t block[8] = {};
            std::memcpy(block, w + r * cols + k, static_cast<size_t>(left) * sizeof(uint16_t));
            const __m256 wv = widen(block);
            for (int t = 0; t < T; ++t) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) y[t * y_stride + r] = sum_lanes(acc[r][t]);
}

template <int R>
void row_block(const uint16_t* w, int64_t n, int64_t cols, const float* x, int64_t x_stride,
               int64_t m, float* y, int64_t y_stride) {
    const uint16_t* wn = w + n * cols;
    int64_t i = 0;
    for (; i + 3 <= m; i += 3)
        tile<R, 3>(wn, cols, x + i * x_stride, x_stride, y + i * y_stride + n, y_stride);
    for (; i < m; ++i)
        tile<R, 1>(wn, cols, x + i * x_stride, x_stride, y + i * y_stride + n, y_stride);
}

}  // namespace

void bf16_matmul_avx2(const uint16_t* w, int64_t rows, int64_t cols, const float* x,
                      int64_t x_stride, int64_t m, float* y, int64_t y_stride) {
    constexpr int64_t kRows = 4;
    const int64_t blocks = rows / kRows;
    const bool parallel = rows * cols * m >= kParallelMinWork;
    // Dynamic chunks of 32 blocks (128 rows): the calling thread starts at once and takes more
    // chunks while the others wake up (or wait for a core on a busy machine) instead of waiting
    // for their static share. A row's result does not depend on which thread computes it.
    parallel_for_dynamic(blocks, 32, parallel, [&](int64_t b) {
        row_block<kRows>(w, b * kRows, cols, x, x_stride, m, y, y_stride);
    });
    for (int64_t n = blocks * kRows; n < rows; ++n)
        row_block<1>(w, n, cols, x, x_stride, m, y, y_stride);
}

}  // namespace bitttt::kernels
