// AVX2 ternary x int8 products (layout and math: ternary.hpp).
//
// A 64-byte block of packed codes is two 32-byte halves: rows 0-7 and rows 8-15 of the row
// group. Shifting a half right by 2s and masking with 3 gives, in each 32-bit lane r, the codes
// c = w + 1 of row r for the block's columns 4s..4s+3. maddubs multiplies them (u8) with the 4
// activations of those columns broadcast to every lane (s8) and adds adjacent pairs into int16:
// |c0 x0 + c1 x1| <= 2 * 2 * 128 = 512, so no saturation. The 4 steps of a block are added in
// int16 (|sum| <= 2048) and madd with ones widens each pair of int16 into one int32 per row.
// Each accumulator starts at -sum_k x_k, which removes the +1 of the codes exactly.
//
// A tile is H half groups (8 rows each) x T tokens of int32 accumulators, at most 8 of the 16
// ymm registers; every decoded code vector is reused for T tokens.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <utility>

#include "core/team.hpp"
#include "kernels/cpu/ternary_isa.hpp"

namespace bitttt::kernels {
namespace {

constexpr int kMaxTileTokens = 4;  // 2 halves x 4 tokens = 8 accumulators
constexpr int64_t kPrefetchBytes = 1024;

// sum_k xq[k] over k < k_pad (a multiple of 16): maddubs against ones, then madd to int32.
inline int32_t sum_activations(const int8_t* x, int64_t k_pad) {
    const __m256i ones8 = _mm256_set1_epi8(1);
    const __m256i ones16 = _mm256_set1_epi16(1);
    __m256i acc = _mm256_setzero_si256();
    int64_t k = 0;
    for (; k + 32 <= k_pad; k += 32) {
        __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + k));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, v), ones16));
    }
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    if (k < k_pad) {  // 16 bytes left
        __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + k));
        s = _mm_add_epi32(
            s, _mm_madd_epi16(_mm_maddubs_epi16(_mm_set1_epi8(1), v), _mm_set1_epi16(1)));
    }
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

inline int32_t load_i32(const int8_t* p) {
    int32_t v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

struct MatmulArgs {
    const TernaryWeights* w;
    const int8_t* xq;
    int64_t xq_stride;
    const float* act_scale;
    float* y;
    int64_t y_stride;
    int64_t blocks;  // column blocks of 16 per row group (K_pad / 16)
};

// One row group (both halves) x tokens [t0, t0 + T).
template <int T>
void tile(const MatmulArgs& a, int64_t g, int64_t t0) {
    const int64_t k_pad = a.blocks * kColBlock;
    const uint8_t* codes = a.w->codes + g * a.blocks * 64;
    const int8_t* x[T];
    __m256i acc[2][T];
    for (int t = 0; t < T; ++t) {
        x[t] = a.xq + (t0 + t) * a.xq_stride;
        acc[0][t] = acc[1][t] = _mm256_set1_epi32(-sum_activations(x[t], k_pad));
    }
    const __m256i mask3 = _mm256_set1_epi8(3);
    const __m256i ones16 = _mm256_set1_epi16(1);
    for (int64_t kb = 0; kb < a.blocks; ++kb) {
        const uint8_t* p = codes + kb * 64;
        _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchBytes), _MM_HINT_T0);
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
            const __m256i block = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * h));
            __m256i c[4];
            c[0] = _mm256_and_si256(block, mask3);
            c[1] = _mm256_and_si256(_mm256_srli_epi16(block, 2), mask3);
            c[2] = _mm256_and_si256(_mm256_srli_epi16(block, 4), mask3);
            c[3] = _mm256_and_si256(_mm256_srli_epi16(block, 6), mask3);
#pragma GCC unroll 4
            for (int t = 0; t < T; ++t) {
                const int8_t* xt = x[t] + kb * 16;
                __m256i sum16 = _mm256_maddubs_epi16(c[0], _mm256_set1_epi32(load_i32(xt)));
#pragma GCC unroll 3
                for (int s = 1; s < 4; ++s)
                    sum16 = _mm256_add_epi16(
                        sum16, _mm256_maddubs_epi16(c[s], _mm256_set1_epi32(load_i32(xt + 4 * s))));
                acc[h][t] = _mm256_add_epi32(acc[h][t], _mm256_madd_epi16(sum16, ones16));
            }
        }
    }
    // y = float(acc) * (beta * act_scale): the same two roundings as the scalar reference.
    for (int t = 0; t < T; ++t) {
        const __m256 scale = _mm256_set1_ps(a.w->scale * a.act_scale[t0 + t]);
        float* yt = a.y + (t0 + t) * a.y_stride;
        for (int h = 0; h < 2; ++h) {
            const int64_t row = g * kRowGroup + 8 * h;
            const int64_t valid = std::min<int64_t>(8, a.w->rows - row);
            if (valid <= 0) break;
            const __m256 out = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[h][t]), scale);
            if (valid == 8) {
                _mm256_storeu_ps(yt + row, out);
            } else {
                alignas(32) float tmp[8];
                _mm256_store_ps(tmp, out);
                std::copy(tmp, tmp + valid, yt + row);
            }
        }
    }
}

using TileFn = void (*)(const MatmulArgs&, int64_t, int64_t);

template <int... Ts>
constexpr std::array<TileFn, sizeof...(Ts)> make_tiles(std::integer_sequence<int, Ts...>) {
    return {&tile<Ts + 1>...};
}
constexpr std::array<TileFn, kMaxTileTokens> kTiles =
    make_tiles(std::make_integer_sequence<int, kMaxTileTokens>{});

}  // namespace

void ternary_matmul_avx2(const TernaryWeights& w, const int8_t* xq, int64_t xq_stride,
                         const float* act_scale, int64_t m, float* y, int64_t y_stride) {
    check_matmul_args(w, xq, xq_stride, act_scale, m, y, y_stride);
    if (m == 0 || w.rows == 0) return;
    const MatmulArgs a{&w, xq, xq_stride, act_scale, y, y_stride, packed_cols(w.cols) / kColBlock};
    const int64_t groups = packed_rows(w.rows) / kRowGroup;
    const int64_t token_blocks = (m + kMaxTileTokens - 1) / kMaxTileTokens;
    // Same work split as the AVX-512 kernel: (chunk of row groups, token block), chunk-major.
    const int64_t chunk =
        std::max<int64_t>(1, std::min<int64_t>(8, groups / (4 * omp_get_max_threads())));
    const int64_t chunks = (groups + chunk - 1) / chunk;
    auto item = [&](int64_t c, int64_t tb) {
        const int64_t t0 = tb * kMaxTileTokens;
        const int64_t tokens = std::min<int64_t>(kMaxTileTokens, m - t0);
        const int64_t g_end = std::min(groups, (c + 1) * chunk);
        for (int64_t g = c * chunk; g < g_end; ++g) kTiles[tokens - 1](a, g, t0);
    };
    if (!kernels_fork_threads()) {
        for (int64_t c = 0; c < chunks; ++c)
            for (int64_t tb = 0; tb < token_blocks; ++tb) item(c, tb);
        return;
    }
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t c = 0; c < chunks; ++c)
        for (int64_t tb = 0; tb < token_blocks; ++tb) item(c, tb);
}

}  // namespace bitttt::kernels
