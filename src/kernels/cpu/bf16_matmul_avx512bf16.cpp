// AVX512_BF16 bf16-weight products (math: bf16_matmul.hpp; tiling as in bf16_matmul_avx512.cpp).
//
// vdpbf16ps multiplies 16 pairs of bf16 values and adds both products of a pair to one fp32
// lane: 32 multiply-adds in one instruction, where the plain AVX-512 version needs a shift, an
// and and two FMAs (on Zen 4, in cache, one core: ~33 against ~22 G weights/s). Both of its
// inputs are bf16, so x is carried as two bf16 halves, x = hi + lo with hi = bf16(x) and
// lo = bf16(x − hi) (16 significant bits: |x − hi − lo| ≤ 2⁻¹⁶ |x|), and every block of weights
// takes two vdpbf16ps, w·hi then w·lo. A product of two bf16 values is exact in fp32 and the
// sums round to nearest; the instruction flushes denormal inputs and results to zero (values
// below 1e-38, far from any logit's terms).
//
// The halves of every token's x are made once per call, by the calling thread, into a buffer it
// keeps for later calls (it grows to the largest m · cols seen, the size of the input itself;
// decode allocates only on its first token). A row's sums do not depend on how many rows and
// tokens share its tile, so decode and batched prompts agree exactly.
#include <immintrin.h>

#include "core/aligned_buffer.hpp"
#include "core/team.hpp"
#include "kernels/cpu/bf16_matmul.hpp"
#include "kernels/cpu/f32_matmul.hpp"
#include "kernels/cpu/simd_avx512.hpp"

namespace bitttt::kernels {
namespace {

using simd::sum_lanes;

// fp32 values of 32 bf16 values (natural order) as two vectors (maskz forms: see simd_avx512.hpp).
inline void widen(__m512i h, __m512& first, __m512& second) {
    const __m512i a =
        _mm512_maskz_cvtepu16_epi32(0xFFFF, _mm512_maskz_extracti64x4_epi64(0xF, h, 0));
    const __m512i b =
        _mm512_maskz_cvtepu16_epi32(0xFFFF, _mm512_maskz_extracti64x4_epi64(0xF, h, 1));
    first = _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xFFFF, a, 16));
    second = _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xFFFF, b, 16));
}

// x (cols floats) → hi, lo (padded cols, each block of 32: 32 hi values then 32 lo values;
// zeros past cols).
void split_row(const float* x, int64_t cols, uint16_t* out) {
    for (int64_t k = 0; k < cols; k += 32) {
        const int64_t left = cols - k < 32 ? cols - k : 32;
        const __mmask32 mask = static_cast<__mmask32>((uint64_t{1} << left) - 1);
        const __m512 x0 = _mm512_maskz_loadu_ps(static_cast<__mmask16>(mask & 0xFFFF), x + k);
        const __m512 x1 = _mm512_maskz_loadu_ps(static_cast<__mmask16>(mask >> 16), x + k + 16);
        const __m512bh hi = _mm512_cvtne2ps_pbh(x1, x0);
        __m512 h0, h1;
        widen(reinterpret_cast<__m512i>(hi), h0, h1);
        const __m512bh lo = _mm512_cvtne2ps_pbh(_mm512_sub_ps(x1, h1), _mm512_sub_ps(x0, h0));
        _mm512_store_si512(out + 2 * k, reinterpret_cast<__m512i>(hi));
        _mm512_store_si512(out + 2 * k + 32, reinterpret_cast<__m512i>(lo));
    }
}

template <int R, int T>
void tile(const uint16_t* w, int64_t cols, const uint16_t* xs, int64_t xs_stride, float* y,
          int64_t y_stride) {
    __m512 acc[R][T];
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k < cols; k += 32) {
        __m512bh hi[T], lo[T];
        for (int t = 0; t < T; ++t) {
            hi[t] = reinterpret_cast<__m512bh>(_mm512_load_si512(xs + t * xs_stride + 2 * k));
            lo[t] = reinterpret_cast<__m512bh>(_mm512_load_si512(xs + t * xs_stride + 2 * k + 32));
        }
        // 1..31 columns left in the last block: masked loads read zeros past the row's end.
        const int64_t left = cols - k < 32 ? cols - k : 32;
        const __mmask32 wmask = static_cast<__mmask32>((uint64_t{1} << left) - 1);
        for (int r = 0; r < R; ++r) {
            const __m512bh v =
                reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi16(wmask, w + r * cols + k));
            for (int t = 0; t < T; ++t) {
                acc[r][t] = _mm512_dpbf16_ps(acc[r][t], v, hi[t]);
                acc[r][t] = _mm512_dpbf16_ps(acc[r][t], v, lo[t]);
            }
        }
    }
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) y[t * y_stride + r] = sum_lanes(acc[r][t]);
}

template <int R>
void row_block(const uint16_t* w, int64_t n, int64_t cols, const uint16_t* xs, int64_t xs_stride,
               int64_t m, float* y, int64_t y_stride) {
    const uint16_t* wn = w + n * cols;
    int64_t i = 0;
    for (; i + 4 <= m; i += 4)
        tile<R, 4>(wn, cols, xs + i * xs_stride, xs_stride, y + i * y_stride + n, y_stride);
    for (; i < m; ++i)
        tile<R, 1>(wn, cols, xs + i * xs_stride, xs_stride, y + i * y_stride + n, y_stride);
}

}  // namespace

void bf16_matmul_avx512bf16(const uint16_t* w, int64_t rows, int64_t cols, const float* x,
                            int64_t x_stride, int64_t m, float* y, int64_t y_stride) {
    const int64_t xs_stride = 2 * ((cols + 31) / 32 * 32);  // hi + lo halves of one token
    thread_local AlignedBuffer<uint16_t> split;
    if (split.size() < static_cast<size_t>(m * xs_stride))
        split.resize(static_cast<size_t>(m * xs_stride));
    for (int64_t i = 0; i < m; ++i) split_row(x + i * x_stride, cols, split.data() + i * xs_stride);
    const uint16_t* xs = split.data();

    constexpr int64_t kRows = 4;
    const int64_t blocks = rows / kRows;
    const bool parallel = rows * cols * m >= kParallelMinWork;
    // Dynamic chunks of 32 blocks, as in bf16_matmul_avx512.cpp.
    parallel_for_dynamic(blocks, 32, parallel, [&](int64_t b) {
        row_block<kRows>(w, b * kRows, cols, xs, xs_stride, m, y, y_stride);
    });
    for (int64_t n = blocks * kRows; n < rows; ++n)
        row_block<1>(w, n, cols, xs, xs_stride, m, y, y_stride);
}

}  // namespace bitttt::kernels
