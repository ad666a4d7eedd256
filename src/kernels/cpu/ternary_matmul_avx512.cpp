// AVX-512 VNNI ternary x int8 products (layout and math: ternary.hpp).
//
// One 64-byte block of packed codes covers 16 rows x 16 columns. Shifting it right by 2s and
// masking with 3 (bytewise) gives, in each 32-bit lane r, the codes c = w + 1 of row r for the 4
// columns 4s..4s+3 of the block; vpdpbusd multiplies them (u8) with the 4 int8 activations of
// those columns broadcast to all 16 lanes and adds the 4 products to lane r. So one block is 4
// vpdpbusd per token, and sum_k c_k x_k - sum_k x_k = sum_k w_k x_k is the exact ternary dot
// product (each accumulator starts at -sum_k x_k).
//
// Decode (m = 1) is bound by memory bandwidth: each thread streams one contiguous range of row
// groups with four independent accumulators, so the loop runs well ahead of memory.
//
// Prompts (m > 1) are bound by vpdpbusd (one zmm per cycle on Zen 4): a tile of 2 row groups x
// 12 tokens keeps 24 accumulators in registers, and every decoded code vector (2 ops) feeds 12
// tokens. The activations of the 12 tokens are first copied, a panel of kPanelCols columns at a
// time, into an interleaved stack buffer (the 4 bytes of every token for each column quad side
// by side): the tile then reads them from one pointer at fixed offsets, and the panel (12 KiB)
// stays in L1. Reading 12 token rows in place instead would put 12 streams whose stride is a
// multiple of 4 KiB into the same L1 sets, which costs over half the throughput at K = 8192.
//
// GCC 12 reports its own _mm512_undefined_*() helpers (inlined into cvtepi32_ps, reductions) as
// uninitialized; the intrinsics are correct, so that false positive is silenced for this file.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <utility>

#include "core/team.hpp"
#include "kernels/cpu/ternary_isa.hpp"

namespace bitttt::kernels {
namespace {

constexpr int kTileTokens = 12;           // 2 row groups x 12 tokens = 24 accumulators
constexpr int64_t kPanelCols = 1024;      // activation columns per panel (12 KiB for 12 tokens)
constexpr int64_t kChunkGroups = 8;       // row groups per work item (their codes stay in L2)
constexpr int64_t kPrefetchBytes = 1024;  // software prefetch distance in the packed codes
// Decode streams from DRAM: 64 lines (~4 KiB) ahead cover ~250 ns of latency at 16 GB/s/core.
constexpr int64_t kGemvPrefetchBytes = 4096;

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

inline int32_t load_i32(const void* p) {
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

// Stores one accumulator (16 rows of one token) as y = float(acc) * (beta * act_scale): the same
// two roundings as the scalar reference. Rows past w.rows (the padding) are not written.
inline void store_rows(const MatmulArgs& a, __m512i acc, int64_t group, int64_t token) {
    const __m512 scale = _mm512_set1_ps(a.w->scale * a.act_scale[token]);
    const __m512 out = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), scale);
    float* dst = a.y + token * a.y_stride + group * kRowGroup;
    const int64_t valid = std::min<int64_t>(kRowGroup, a.w->rows - group * kRowGroup);
    if (valid == kRowGroup) {
        _mm512_storeu_ps(dst, out);
    } else {
        _mm512_mask_storeu_ps(dst, static_cast<__mmask16>((1u << valid) - 1), out);
    }
}

// ---- decode (m = 1) ----

// Four accumulators (one per shift s) keep the 4 vpdpbusd of a block independent.
void gemv_rows(const MatmulArgs& a, int64_t g_begin, int64_t g_end, int32_t minus_sum_x) {
    const __m512i mask3 = _mm512_set1_epi8(3);
    for (int64_t g = g_begin; g < g_end; ++g) {
        const uint8_t* codes = a.w->codes + g * a.blocks * 64;
        __m512i acc0 = _mm512_set1_epi32(minus_sum_x), acc1 = _mm512_setzero_si512();
        __m512i acc2 = _mm512_setzero_si512(), acc3 = _mm512_setzero_si512();
        for (int64_t kb = 0; kb < a.blocks; ++kb) {
            const uint8_t* p = codes + kb * 64;
            _mm_prefetch(reinterpret_cast<const char*>(p + kGemvPrefetchBytes), _MM_HINT_T0);
            const __m512i block = _mm512_loadu_si512(p);
            const int8_t* xk = a.xq + kb * 16;
            acc0 = _mm512_dpbusd_epi32(acc0, _mm512_and_si512(block, mask3),
                                       _mm512_set1_epi32(load_i32(xk)));
            acc1 = _mm512_dpbusd_epi32(acc1, _mm512_and_si512(_mm512_srli_epi16(block, 2), mask3),
                                       _mm512_set1_epi32(load_i32(xk + 4)));
            acc2 = _mm512_dpbusd_epi32(acc2, _mm512_and_si512(_mm512_srli_epi16(block, 4), mask3),
                                       _mm512_set1_epi32(load_i32(xk + 8)));
            acc3 = _mm512_dpbusd_epi32(acc3, _mm512_and_si512(_mm512_srli_epi16(block, 6), mask3),
                                       _mm512_set1_epi32(load_i32(xk + 12)));
        }
        store_rows(a, _mm512_add_epi32(_mm512_add_epi32(acc0, acc1), _mm512_add_epi32(acc2, acc3)),
                   g, 0);
    }
}

// ---- prompts (m > 1) ----

// Per-thread state of one work item (<= kChunkGroups row groups x <= 12 tokens), on the stack.
struct TileScratch {
    // panel[(j * kTileTokens + t)] = the 4 activations of token t for columns 4j..4j+3 of the
    // current panel.
    alignas(64) int32_t panel[kPanelCols / 4 * kTileTokens];
    // Accumulators between panels: acc[group in chunk][token][row in group].
    alignas(64) int32_t acc[kChunkGroups][kTileTokens][kRowGroup];
};

// Calls X(t) for t = 0..11 (the token slots of a tile). The accumulators are named variables
// rather than an array: GCC keeps a 24-vector array in memory, named ones stay in registers.
#define BITTTT_TOKENS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
static_assert(kTileTokens == 12, "BITTTT_TOKENS lists 12 token slots");

// R row groups (R in {1, 2}; codes0 and codes1 point at the panel's first block of each) x T
// tokens (T <= 12) over `blocks` column blocks; acc0/acc1 are the groups' rows of scratch.acc.
template <int R, int T>
void tile(const uint8_t* codes0, const uint8_t* codes1, int64_t blocks, const int32_t* panel,
          int32_t (*acc0)[kRowGroup], int32_t (*acc1)[kRowGroup]) {
#define BITTTT_LOAD(t)                                                        \
    __m512i a0_##t = _mm512_setzero_si512(), a1_##t = _mm512_setzero_si512(); \
    if constexpr (t < T) {                                                    \
        a0_##t = _mm512_load_si512(acc0[t]);                                  \
        if constexpr (R == 2) a1_##t = _mm512_load_si512(acc1[t]);            \
    }
    BITTTT_TOKENS(BITTTT_LOAD)
#undef BITTTT_LOAD
    const __m512i mask3 = _mm512_set1_epi8(3);
    for (int64_t kb = 0; kb < blocks; ++kb) {
        const int64_t off = kb * 64;
        _mm_prefetch(reinterpret_cast<const char*>(codes0 + off + kPrefetchBytes), _MM_HINT_T0);
        const __m512i block0 = _mm512_loadu_si512(codes0 + off);
        __m512i block1 = block0;
        if constexpr (R == 2) {
            _mm_prefetch(reinterpret_cast<const char*>(codes1 + off + kPrefetchBytes), _MM_HINT_T0);
            block1 = _mm512_loadu_si512(codes1 + off);
        }
        const int32_t* xk = panel + kb * 4 * kTileTokens;
#pragma GCC unroll 4
        for (int s = 0; s < 4; ++s) {
            const __m512i c0 = _mm512_and_si512(_mm512_srli_epi16(block0, 2 * s), mask3);
            const __m512i c1 = _mm512_and_si512(_mm512_srli_epi16(block1, 2 * s), mask3);
#define BITTTT_STEP(t)                                                      \
    if constexpr (t < T) {                                                  \
        const __m512i xb = _mm512_set1_epi32(xk[s * kTileTokens + t]);      \
        a0_##t = _mm512_dpbusd_epi32(a0_##t, c0, xb);                       \
        if constexpr (R == 2) a1_##t = _mm512_dpbusd_epi32(a1_##t, c1, xb); \
    }
            BITTTT_TOKENS(BITTTT_STEP)
#undef BITTTT_STEP
        }
    }
#define BITTTT_SAVE(t)                                             \
    if constexpr (t < T) {                                         \
        _mm512_store_si512(acc0[t], a0_##t);                       \
        if constexpr (R == 2) _mm512_store_si512(acc1[t], a1_##t); \
    }
    BITTTT_TOKENS(BITTTT_SAVE)
#undef BITTTT_SAVE
}
#undef BITTTT_TOKENS

using TileFn = void (*)(const uint8_t*, const uint8_t*, int64_t, const int32_t*,
                        int32_t (*)[kRowGroup], int32_t (*)[kRowGroup]);

template <int R, int... Ts>
constexpr std::array<TileFn, sizeof...(Ts)> make_tiles(std::integer_sequence<int, Ts...>) {
    return {&tile<R, Ts + 1>...};
}
// kTiles[R - 1][T - 1] = tile<R, T>.
constexpr std::array<std::array<TileFn, kTileTokens>, 2> kTiles = {
    make_tiles<1>(std::make_integer_sequence<int, kTileTokens>{}),
    make_tiles<2>(std::make_integer_sequence<int, kTileTokens>{}),
};

// Row groups [g_begin, g_end) (at most kChunkGroups) x tokens [t0, t0 + tokens).
void gemm_item(const MatmulArgs& a, int64_t g_begin, int64_t g_end, int64_t t0, int tokens,
               TileScratch& scratch) {
    const int64_t k_pad = a.blocks * kColBlock;
    const int8_t* x[kTileTokens];
    for (int t = 0; t < tokens; ++t) {
        x[t] = a.xq + (t0 + t) * a.xq_stride;
        const int32_t start = -sum_activations(x[t], k_pad);
        for (int64_t g = 0; g < g_end - g_begin; ++g)
            _mm512_store_si512(scratch.acc[g][t], _mm512_set1_epi32(start));
    }
    for (int64_t k0 = 0; k0 < k_pad; k0 += kPanelCols) {
        const int64_t quads = std::min(kPanelCols, k_pad - k0) / 4;
        for (int t = 0; t < tokens; ++t)
            for (int64_t j = 0; j < quads; ++j)
                scratch.panel[j * kTileTokens + t] = load_i32(x[t] + k0 + 4 * j);
        const int64_t first_block = k0 / kColBlock, blocks = quads / 4;
        for (int64_t g = g_begin; g < g_end; g += 2) {
            const int r = g + 2 <= g_end ? 2 : 1;
            const uint8_t* codes0 = a.w->codes + (g * a.blocks + first_block) * 64;
            kTiles[r - 1][tokens - 1](codes0, codes0 + a.blocks * 64 * (r - 1), blocks,
                                      scratch.panel, scratch.acc[g - g_begin],
                                      scratch.acc[g - g_begin + r - 1]);
        }
    }
    for (int64_t g = g_begin; g < g_end; ++g)
        for (int t = 0; t < tokens; ++t)
            store_rows(a, _mm512_load_si512(scratch.acc[g - g_begin][t]), g, t0 + t);
}

}  // namespace

void ternary_matmul_avx512(const TernaryWeights& w, const int8_t* xq, int64_t xq_stride,
                           const float* act_scale, int64_t m, float* y, int64_t y_stride) {
    check_matmul_args(w, xq, xq_stride, act_scale, m, y, y_stride);
    if (m == 0 || w.rows == 0) return;
    const MatmulArgs a{&w, xq, xq_stride, act_scale, y, y_stride, packed_cols(w.cols) / kColBlock};
    const int64_t groups = packed_rows(w.rows) / kRowGroup;
    if (m == 1) {
        const int32_t minus_sum_x = -sum_activations(xq, a.blocks * kColBlock);
        if (!kernels_fork_threads()) return gemv_rows(a, 0, groups, minus_sum_x);
#pragma omp parallel
        {
            // Contiguous, equal shares of the row groups: one sequential stream per thread.
            const int64_t threads = omp_get_num_threads(), id = omp_get_thread_num();
            gemv_rows(a, groups * id / threads, groups * (id + 1) / threads, minus_sum_x);
        }
        return;
    }
    // Work items: (chunk of row groups, block of tokens), chunk-major so that a thread's static
    // share is one contiguous range of the packed weights.
    const int64_t token_blocks = (m + kTileTokens - 1) / kTileTokens;
    const int64_t chunks = (groups + kChunkGroups - 1) / kChunkGroups;
    auto item = [&](int64_t c, int64_t tb, TileScratch& scratch) {
        const int64_t t0 = tb * kTileTokens;
        const int tokens = static_cast<int>(std::min<int64_t>(kTileTokens, m - t0));
        gemm_item(a, c * kChunkGroups, std::min(groups, (c + 1) * kChunkGroups), t0, tokens,
                  scratch);
    };
    if (!kernels_fork_threads()) {
        TileScratch scratch;
        for (int64_t c = 0; c < chunks; ++c)
            for (int64_t tb = 0; tb < token_blocks; ++tb) item(c, tb, scratch);
        return;
    }
#pragma omp parallel
    {
        TileScratch scratch;
#pragma omp for collapse(2) schedule(static)
        for (int64_t c = 0; c < chunks; ++c)
            for (int64_t tb = 0; tb < token_blocks; ++tb) item(c, tb, scratch);
    }
}

}  // namespace bitttt::kernels
