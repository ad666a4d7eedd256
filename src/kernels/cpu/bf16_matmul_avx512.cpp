// AVX-512 bf16-weight products (math: bf16_matmul.hpp; tiling as in f32_matmul_avx512.cpp).
//
// One 64-byte load holds 32 bf16 weights; read as 16 32-bit lanes, lane j is the pair
// (w[2j] in the low half, w[2j+1] in the high half). Shifting each lane left by 16 gives the fp32
// value of w[2j]; masking off the low half gives that of w[2j+1]. So a block of 32 weights costs a
// load, a shift, an and and two FMAs, against x split once per block into its even and odd
// elements (two permutes, shared by every row of the tile). Accumulation is fp32; a row's sums
// do not depend on how many rows and tokens share its tile (decode and prompts agree exactly).
#include <immintrin.h>

#include "core/team.hpp"
#include "kernels/cpu/bf16_matmul.hpp"
#include "kernels/cpu/f32_matmul.hpp"
#include "kernels/cpu/simd_avx512.hpp"

namespace bitttt::kernels {
namespace {

using simd::sum_lanes;

// acc += w_even · x_even + w_odd · x_odd for one block of 32 weights `v` (maskz forms: see
// simd_avx512.hpp).
inline __m512 fma_pairs(__m512i v, __m512 x_even, __m512 x_odd, __m512 acc) {
    const __m512 w_even = _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xFFFF, v, 16));
    const __m512 w_odd =
        _mm512_castsi512_ps(_mm512_maskz_and_epi32(0xFFFF, v, _mm512_set1_epi32(-65536)));
    acc = _mm512_fmadd_ps(w_even, x_even, acc);
    return _mm512_fmadd_ps(w_odd, x_odd, acc);
}

template <int R, int T>
void tile(const uint16_t* w, int64_t cols, const float* x, int64_t x_stride, float* y,
          int64_t y_stride) {
    const __m512i even =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    __m512 acc[R][T];
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= cols; k += 32) {
        __m512 xe[T], xo[T];
        for (int t = 0; t < T; ++t) {
            const __m512 lo = _mm512_loadu_ps(x + t * x_stride + k);
            const __m512 hi = _mm512_loadu_ps(x + t * x_stride + k + 16);
            xe[t] = _mm512_permutex2var_ps(lo, even, hi);
            xo[t] = _mm512_permutex2var_ps(lo, odd, hi);
        }
        for (int r = 0; r < R; ++r) {
            const __m512i v = _mm512_loadu_si512(w + r * cols + k);
            for (int t = 0; t < T; ++t) acc[r][t] = fma_pairs(v, xe[t], xo[t], acc[r][t]);
        }
    }
    if (k < cols) {  // 1..31 columns left: masked loads read zeros past the row's end
        const int64_t left = cols - k;
        const __mmask32 wmask = static_cast<__mmask32>((uint64_t{1} << left) - 1);
        const __mmask16 lo_mask = static_cast<__mmask16>(wmask & 0xFFFF);
        const __mmask16 hi_mask = static_cast<__mmask16>(wmask >> 16);
        __m512 xe[T], xo[T];
        for (int t = 0; t < T; ++t) {
            const __m512 lo = _mm512_maskz_loadu_ps(lo_mask, x + t * x_stride + k);
            const __m512 hi = _mm512_maskz_loadu_ps(hi_mask, x + t * x_stride + k + 16);
            xe[t] = _mm512_permutex2var_ps(lo, even, hi);
            xo[t] = _mm512_permutex2var_ps(lo, odd, hi);
        }
        for (int r = 0; r < R; ++r) {
            const __m512i v = _mm512_maskz_loadu_epi16(wmask, w + r * cols + k);
            for (int t = 0; t < T; ++t) acc[r][t] = fma_pairs(v, xe[t], xo[t], acc[r][t]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) y[t * y_stride + r] = sum_lanes(acc[r][t]);
}

// All m tokens against rows [n, n + R).
template <int R>
void row_block(const uint16_t* w, int64_t n, int64_t cols, const float* x, int64_t x_stride,
               int64_t m, float* y, int64_t y_stride) {
    const uint16_t* wn = w + n * cols;
    int64_t i = 0;
    for (; i + 4 <= m; i += 4)
        tile<R, 4>(wn, cols, x + i * x_stride, x_stride, y + i * y_stride + n, y_stride);
    for (; i < m; ++i)
        tile<R, 1>(wn, cols, x + i * x_stride, x_stride, y + i * y_stride + n, y_stride);
}

}  // namespace

void bf16_matmul_avx512(const uint16_t* w, int64_t rows, int64_t cols, const float* x,
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
