// AVX-512 VNNI ternary x int8 products (layout and math: ternary.hpp).
//
// One 64-byte block of packed codes covers 16 rows x 16 columns. Shifting it right by 2s and
// masking with 3 (bytewise) gives, in each 32-bit lane r, the codes c = w + 1 of row r for the 4
// columns 4s..4s+3 of the block; vpdpbusd multiplies them (u8) with the 4 int8 activations of
// those columns broadcast to all 16 lanes ({1to16}) and adds the 4 products to lane r. So one
// block is 4 vpdpbusd per token, and sum_k c_k x_k - sum_k x_k = sum_k w_k x_k is the exact
// ternary dot product (the kernel starts each accumulator at -sum_k x_k).
//
// A tile is R row groups x T tokens of accumulators (R*T <= 24 of the 32 zmm registers): every
// decoded code vector is reused for T tokens, so decoding (2 ops per vector) is amortized and
// the loop is bound by vpdpbusd (1 per cycle on Zen 4) for prompts (m >= 12), and by memory
// bandwidth for decode (m = 1), where each thread streams one contiguous range of row groups.
// GCC 12 reports its own _mm512_undefined_*() helpers (inlined into cvtepi32_ps, reductions) as
// uninitialized; the intrinsics are correct, so that false positive is silenced for this file.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <utility>

#include "kernels/cpu/ternary_isa.hpp"

namespace bitttt::kernels {
namespace {

constexpr int kMaxTileTokens = 12;  // tokens per tile; 2 row groups x 12 tokens = 24 accumulators
constexpr int64_t kPrefetchBytes = 1024;  // software prefetch distance in the packed codes

// sum_k xq[k] over k < k_pad (k_pad a multiple of 16), by vpdpbusd against all-ones bytes.
inline int32_t sum_activations(const int8_t* x, int64_t k_pad) {
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i acc = _mm512_setzero_si512();
    int64_t k = 0;
    for (; k + 64 <= k_pad; k += 64)
        acc = _mm512_dpbusd_epi32(acc, ones, _mm512_loadu_si512(x + k));
    if (k < k_pad) {
        __mmask64 tail = _cvtu64_mask64((~0ull) >> (64 - (k_pad - k)));
        acc = _mm512_dpbusd_epi32(acc, ones, _mm512_maskz_loadu_epi8(tail, x + k));
    }
    return _mm512_reduce_add_epi32(acc);
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

// Rows [16g, 16g + 16R) x tokens [t0, t0 + T). A accumulator sets per (row group, token) split
// the 4 vpdpbusd of a block into independent chains when R*T is too small to hide the latency.
template <int R, int T>
void tile(const MatmulArgs& a, int64_t g, int64_t t0) {
    constexpr int A = R * T >= 6 ? 1 : (R * T >= 3 ? 2 : 4);
    const int64_t k_pad = a.blocks * kColBlock;
    const uint8_t* codes = a.w->codes + g * a.blocks * 64;
    const int64_t group_bytes = a.blocks * 64;
    const int8_t* x[T];
    __m512i acc[A][R][T];
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
        x[t] = a.xq + (t0 + t) * a.xq_stride;
        const __m512i start = _mm512_set1_epi32(-sum_activations(x[t], k_pad));
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
            acc[0][r][t] = start;
#pragma GCC unroll 4
            for (int j = 1; j < A; ++j) acc[j][r][t] = _mm512_setzero_si512();
        }
    }
    const __m512i mask3 = _mm512_set1_epi8(3);
    for (int64_t kb = 0; kb < a.blocks; ++kb) {
        __m512i block[R];
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
            const uint8_t* p = codes + r * group_bytes + kb * 64;
            _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchBytes), _MM_HINT_T0);
            block[r] = _mm512_loadu_si512(p);
        }
#pragma GCC unroll 4
        for (int s = 0; s < 4; ++s) {
            __m512i c[R];
#pragma GCC unroll 4
            for (int r = 0; r < R; ++r)
                c[r] =
                    _mm512_and_si512(s == 0 ? block[r] : _mm512_srli_epi16(block[r], 2 * s), mask3);
#pragma GCC unroll 16
            for (int t = 0; t < T; ++t) {
                const __m512i xb = _mm512_set1_epi32(load_i32(x[t] + kb * 16 + 4 * s));
#pragma GCC unroll 4
                for (int r = 0; r < R; ++r)
                    acc[s % A][r][t] = _mm512_dpbusd_epi32(acc[s % A][r][t], c[r], xb);
            }
        }
    }
    // y = float(acc) * (beta * act_scale): the same two roundings as the scalar reference.
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
        const __m512 scale = _mm512_set1_ps(a.w->scale * a.act_scale[t0 + t]);
        float* yt = a.y + (t0 + t) * a.y_stride;
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
            __m512i sum = acc[0][r][t];
#pragma GCC unroll 4
            for (int j = 1; j < A; ++j) sum = _mm512_add_epi32(sum, acc[j][r][t]);
            const __m512 out = _mm512_mul_ps(_mm512_cvtepi32_ps(sum), scale);
            const int64_t row = (g + r) * kRowGroup;
            const int64_t valid = std::min<int64_t>(kRowGroup, a.w->rows - row);
            if (valid == kRowGroup) {
                _mm512_storeu_ps(yt + row, out);
            } else {
                _mm512_mask_storeu_ps(yt + row, static_cast<__mmask16>((1u << valid) - 1), out);
            }
        }
    }
}

using TileFn = void (*)(const MatmulArgs&, int64_t, int64_t);

template <int R, int... Ts>
constexpr std::array<TileFn, sizeof...(Ts)> make_tiles(std::integer_sequence<int, Ts...>) {
    return {&tile<R, Ts + 1>...};
}
// kTiles[R - 1][T - 1] = tile<R, T>.
constexpr std::array<std::array<TileFn, kMaxTileTokens>, 2> kTiles = {
    make_tiles<1>(std::make_integer_sequence<int, kMaxTileTokens>{}),
    make_tiles<2>(std::make_integer_sequence<int, kMaxTileTokens>{}),
};

}  // namespace

void ternary_matmul_avx512(const TernaryWeights& w, const int8_t* xq, int64_t xq_stride,
                           const float* act_scale, int64_t m, float* y, int64_t y_stride) {
    check_matmul_args(w, xq, xq_stride, act_scale, m, y, y_stride);
    if (m == 0 || w.rows == 0) return;
    const MatmulArgs a{&w, xq, xq_stride, act_scale, y, y_stride, packed_cols(w.cols) / kColBlock};
    const int64_t groups = packed_rows(w.rows) / kRowGroup;
    const int64_t token_blocks = (m + kMaxTileTokens - 1) / kMaxTileTokens;
    // Work items: (chunk of row groups, block of tokens), chunk-major so that a thread's static
    // share is one contiguous range of the packed weights. Chunks of 8 row groups keep a
    // chunk's codes (8 x K/4 bytes) in L2 while the token blocks pass over them.
    const int64_t chunk =
        std::max<int64_t>(2, std::min<int64_t>(8, groups / (4 * omp_get_max_threads())));
    const int64_t chunks = (groups + chunk - 1) / chunk;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
        for (int64_t tb = 0; tb < token_blocks; ++tb) {
            const int64_t t0 = tb * kMaxTileTokens;
            const int64_t tokens = std::min<int64_t>(kMaxTileTokens, m - t0);
            const int64_t g_end = std::min(groups, (c + 1) * chunk);
            for (int64_t g = c * chunk; g < g_end; g += 2) {
                const int r = g + 2 <= g_end ? 2 : 1;
                kTiles[r - 1][tokens - 1](a, g, t0);
            }
        }
    }
}

}  // namespace bitttt::kernels
