// AVX2 int8 products (math: int8_matmul.hpp).
//
// AVX2 has no signed x signed byte product; maddubs multiplies unsigned by signed bytes and adds
// neighbouring pairs into saturating int16. So the weights enter as |q| (unsigned) and the
// activations carry q's sign (_mm256_sign_epi8: xq, −xq or 0 where q = 0): |q| · sign(q) xq =
// q xq, and a pair sums to at most 2 · 127² = 32258 < 2¹⁵, so nothing saturates. madd with ones
// widens the pairs to int32 lanes (exact; the lanes wrap like the AVX-512 ones, and the final sum
// fits in int32).
//
// A tile is R weight rows x T tokens over 32-byte blocks. Rows are zero padded to whole 64-byte
// blocks; the activations' last partial block is copied into a zero-padded one.
#include <immintrin.h>

#include <cstring>

#include "core/team.hpp"
#include "kernels/cpu/f32_matmul.hpp"
#include "kernels/cpu/int8_matmul.hpp"

namespace bitttt::kernels {
namespace {

// Sum of the 8 int32 lanes, wrapping.
inline uint32_t sum_lanes(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return static_cast<uint32_t>(_mm_cvtsi128_si32(s));
}

template <int R, int T>
void tile(const Int8Weights& w, int64_t n, const int8_t* xq, int64_t xq_stride,
          const float* act_scale, float* y, int64_t y_stride) {
    const int64_t stride = int8_row_stride(w.cols);
    const int8_t* qn = w.q + n * stride;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc[R][T];
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_si256();
    for (int64_t k = 0; k < w.cols; k += 32) {
        __m256i x[T];
        if (k + 32 <= w.cols) {
            for (int t = 0; t < T; ++t)
                x[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + t * xq_stride + k));
        } else {
            for (int t = 0; t < T; ++t) {
                alignas(32) int8_t block[32] = {};
                std::memcpy(block, xq + t * xq_stride + k, static_cast<size_t>(w.cols - k));
                x[t] = _mm256_load_si256(reinterpret_cast<const __m256i*>(block));
            }
        }
        for (int r = 0; r < R; ++r) {
            const __m256i q =
                _mm256_load_si256(reinterpret_cast<const __m256i*>(qn + r * stride + k));
            const __m256i mag = _mm256_sign_epi8(q, q);  // |q|
            for (int t = 0; t < T; ++t) {
                const __m256i pairs = _mm256_maddubs_epi16(mag, _mm256_sign_epi8(x[t], q));
                acc[r][t] = _mm256_add_epi32(acc[r][t], _mm256_madd_epi16(pairs, ones));
            }
        }
    }
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) {
            const auto sum = static_cast<int32_t>(sum_lanes(acc[r][t]));
            y[t * y_stride + n + r] = static_cast<float>(sum) * (w.scale[n + r] * act_scale[t]);
        }
}

template <int R>
void row_block(const Int8Weights& w, int64_t n, const int8_t* xq, int64_t xq_stride,
               const float* act_scale, int64_t m, float* y, int64_t y_stride) {
    int64_t i = 0;
    for (; i + 2 <= m; i += 2)
        tile<R, 2>(w, n, xq + i * xq_stride, xq_stride, act_scale + i, y + i * y_stride, y_stride);
    for (; i < m; ++i)
        tile<R, 1>(w, n, xq + i * xq_stride, xq_stride, act_scale + i, y + i * y_stride, y_stride);
}

}  // namespace

void int8_matmul_avx2(const Int8Weights& w, const int8_t* xq, int64_t xq_stride,
                      const float* act_scale, int64_t m, float* y, int64_t y_stride) {
    constexpr int64_t kRows = 4;
    const int64_t blocks = w.rows / kRows;
    const bool parallel = w.rows * w.cols * m >= kParallelMinWork;
    parallel_for_dynamic(blocks, 32, parallel, [&](int64_t b) {
        row_block<kRows>(w, b * kRows, xq, xq_stride, act_scale, m, y, y_stride);
    });
    for (int64_t n = blocks * kRows; n < w.rows; ++n)
        row_block<1>(w, n, xq, xq_stride, act_scale, m, y, y_stride);
}

}  // namespace bitttt::kernels
