// AVX-512 VNNI int8 products (math: int8_matmul.hpp).
//
// vpdpbusd multiplies 64 unsigned bytes by 64 signed bytes and adds each group of four products
// to one int32 lane. The activations are the unsigned operand, shifted by 128 (xq ^ 0x80 as a
// byte is xq + 128 in [1, 255]), so the lanes hold Σ (xq + 128) q = Σ xq q + 128 Σ q, and the
// row's 128 Σ q (row_sum, made at quantization) is subtracted once. The int32 lanes wrap on
// overflow, but the final value fits in int32 (int8_matmul.hpp), so it comes out exact.
//
// A tile is R = 8 weight rows x T tokens (T = 2 for prompts: 16 accumulators): each 64-byte block
// of a row is loaded once for T tokens; 8 rows measured faster than 4 or 16 for decode.
// Rows are zero padded to whole blocks; the activations' last block is a masked load (zeros past
// cols, which become 128 but meet zero weights).
#include <immintrin.h>

#include "core/team.hpp"
#include "kernels/cpu/f32_matmul.hpp"
#include "kernels/cpu/int8_matmul.hpp"

namespace bitttt::kernels {
namespace {

// Sum of the 16 int32 lanes, wrapping (maskz forms: see simd_avx512.hpp).
inline uint32_t sum_lanes(__m512i v) {
    const __m256i h = _mm256_add_epi32(_mm512_maskz_extracti64x4_epi64(0xF, v, 0),
                                       _mm512_maskz_extracti64x4_epi64(0xF, v, 1));
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return static_cast<uint32_t>(_mm_cvtsi128_si32(s));
}

template <int R, int T>
void tile(const Int8Weights& w, int64_t n, const int8_t* xq, int64_t xq_stride,
          const float* act_scale, float* y, int64_t y_stride) {
    const int64_t stride = int8_row_stride(w.cols);
    const int8_t* qn = w.q + n * stride;
    const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
    __m512i acc[R][T];
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_si512();
    for (int64_t k = 0; k < w.cols; k += 64) {
        const int64_t left = w.cols - k;
        const __mmask64 mask = left >= 64 ? ~__mmask64{0} : (__mmask64{1} << left) - 1;
        __m512i xu[T];
        for (int t = 0; t < T; ++t)
            xu[t] = _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, xq + t * xq_stride + k), bias);
        for (int r = 0; r < R; ++r) {
            // The next tile's row at this column: a row is a short stream (2 KiB at D = 2048) for
            // the hardware prefetcher, which restarts at every tile without this (measured at
            // 32000 x 2048, one thread: 1.3x bf16's time per call without, 1.6-1.7x with; a hint
            // past the last row is dropped, never a fault).
            _mm_prefetch(reinterpret_cast<const char*>(qn + (R + r) * stride + k), _MM_HINT_T0);
            const __m512i q = _mm512_load_si512(qn + r * stride + k);
            for (int t = 0; t < T; ++t) acc[r][t] = _mm512_dpbusd_epi32(acc[r][t], xu[t], q);
        }
    }
    for (int r = 0; r < R; ++r) {
        const uint32_t offset = 128u * static_cast<uint32_t>(w.row_sum[n + r]);
        for (int t = 0; t < T; ++t) {
            const auto sum = static_cast<int32_t>(sum_lanes(acc[r][t]) - offset);
            y[t * y_stride + n + r] = static_cast<float>(sum) * (w.scale[n + r] * act_scale[t]);
        }
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

void int8_matmul_avx512(const Int8Weights& w, const int8_t* xq, int64_t xq_stride,
                        const float* act_scale, int64_t m, float* y, int64_t y_stride) {
    constexpr int64_t kRows = 8;
    const int64_t blocks = w.rows / kRows;
    const bool parallel = w.rows * w.cols * m >= kParallelMinWork;
    // Dynamic chunks of 32 blocks, as in bf16_matmul_avx2.cpp: the calling thread starts at once.
    parallel_for_dynamic(blocks, 32, parallel, [&](int64_t b) {
        row_block<kRows>(w, b * kRows, xq, xq_stride, act_scale, m, y, y_stride);
    });
    for (int64_t n = blocks * kRows; n < w.rows; ++n)
        row_block<1>(w, n, xq, xq_stride, act_scale, m, y, y_stride);
}

}  // namespace bitttt::kernels
