// The decode GEMV's inner loop and the per-value math around it, shared by every ternary GEMV:
// ternary_matmul.cu (int8 activations read from memory), gemv_fused.cu (activations quantized
// into shared memory by every block) and gemv_float.cu (activations quantized on the fly from a
// float row and statistics written by the previous kernel).
//
// Packed layout (kernels/cpu/ternary.hpp): in a 64-byte block (16 rows of a row group x 16
// columns), 32-bit word r holds row r's 16 codes; (word >> 2s) & 0x03030303 are the codes of
// columns 4s..4s+3, one dp4a operand against word s of the 16 activation bytes of those columns.
// A 16-byte chunk u of a row group (chunk u % 4 of column block u / 4) holds rows 4(u%4)..+3.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

namespace bitttt::cuda::detail {

__device__ __forceinline__ int dot16(uint32_t codes, const uint4& x, int acc) {
    acc = __dp4a(static_cast<int>(codes & 0x03030303u), static_cast<int>(x.x), acc);
    acc = __dp4a(static_cast<int>((codes >> 2) & 0x03030303u), static_cast<int>(x.y), acc);
    acc = __dp4a(static_cast<int>((codes >> 4) & 0x03030303u), static_cast<int>(x.z), acc);
    acc = __dp4a(static_cast<int>((codes >> 6) & 0x03030303u), static_cast<int>(x.w), acc);
    return acc;
}

// Weights are read exactly once: a non-coherent load that does not allocate in L1 keeps the
// (re-used) activations there.
__device__ __forceinline__ uint4 load_once(const uint4* p) {
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}

// The float epilogue of every product: float(acc - xsum) * (beta * act_scale), roundings spelled
// out (no FMA contraction) so that results are bit-identical to ternary_matmul_scalar.
__device__ __forceinline__ float rescale(int acc, int xsum, float beta, float act_scale) {
    return __fmul_rn(__int2float_rn(acc - xsum), __fmul_rn(beta, act_scale));
}

// One int8 activation as quantize_activations_scalar computes it: clamp(rint(v * (127/gamma)))
// with s127 = 127/gamma; NaN gives 0. One conversion: cvt.rni.s32.f32 rounds half to even like
// rint, saturates out-of-range values and turns NaN into 0 (PTX ISA), so clamping the integer
// gives the same value.
__device__ __forceinline__ int quantize_int8(float v, float s127) {
    return min(max(__float2int_rn(__fmul_rn(v, s127)), -127), 127);
}

// silu(g) * u as silu_mul_scalar writes it: g / (1 + exp(-g)) * u.
__device__ __forceinline__ float silu_times(float g, float u) {
    return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
}

// The key by which producers publish a row's largest magnitude (see gemv_float.hpp): the bits of
// |v| above the index, so that an unsigned max picks the largest |v| (non-negative floats order
// like their bit patterns). NaN is skipped, as the CPU's absmax skips it.
__device__ __forceinline__ unsigned long long absmax_key(float v, int index) {
    const float m = fabsf(v);
    if (!(m == m)) return 0ull;
    return (static_cast<unsigned long long>(__float_as_uint(m)) << 32) |
           static_cast<unsigned int>(index);
}

constexpr int kGemvUnroll = 4;  // 16-byte weight loads in flight per thread and matrix

// A team of `step` threads (whole warps, consecutive) streams one row group of kMats matrices
// with the same columns (kMats = 2: the same row group of gate and up). Thread t reads the chunks
// u = t, t + step, ... < total of every matrix and keeps acc[m][i] = Σ codes of row 4(t%4) + i
// times the activations; a shuffle over the lanes with the same t % 4 (and a sum over the team's
// warps) then gives the 16 row totals.
//
// Activations come from act(u, valid) -> uint4 (the 16 bytes of column block u / 4), which every
// lane of a warp calls in the same iteration (loop control is warp-uniform, so act may shuffle
// across lanes); invalid lanes (past the end) must get zeros. The first weight loads are issued
// by start(), before the kernel waits for its predecessor (PDL): weights are constant. A source
// may also provide step(u, stride, x): all kGemvUnroll chunks of an unrolled step at once.
template <typename Act>
__host__ __device__ constexpr auto has_step(int)
    -> decltype(std::declval<Act&>().step(0, 0, std::declval<uint4 (&)[4]>()), bool()) {
    return true;
}
template <typename Act>
__host__ __device__ constexpr bool has_step(long) {
    return false;
}

// kPrefetch: each step issues the loads of the next step before it computes (two steps of weights
// in flight per thread instead of one, 16·kGemvUnroll·kMats more bytes of registers): for kernels
// with too few warps per SM to cover the memory latency with one step each (the SwiGLU GEMV runs
// ~14 one-warp teams per SM of an H100). Same sums in the same order.
template <int kMats, bool kPrefetch = false>
struct RowGroupStream {
    const uint4* codes[kMats];
    int total = 0;  // 16-byte chunks per row group and matrix
    int step = 32;  // threads per team
    int u = 0;      // this thread's next chunk
    int lane = 0;
    bool full = false;  // warp-uniform: every lane has kGemvUnroll chunks left
    uint4 w[kMats][kGemvUnroll];
    int acc[kMats][4];

    __device__ __forceinline__ bool warp_full() const {
        return u - lane + 31 + (kGemvUnroll - 1) * step < total;
    }
    __device__ __forceinline__ void load_unrolled() {
#pragma unroll
        for (int i = 0; i < kGemvUnroll; ++i)
#pragma unroll
            for (int m = 0; m < kMats; ++m) w[m][i] = load_once(codes[m] + u + i * step);
    }
    __device__ __forceinline__ void accumulate(const uint4 (&wv)[kMats], const uint4& x) {
#pragma unroll
        for (int m = 0; m < kMats; ++m) {
            acc[m][0] = dot16(wv[m].x, x, acc[m][0]);
            acc[m][1] = dot16(wv[m].y, x, acc[m][1]);
            acc[m][2] = dot16(wv[m].z, x, acc[m][2]);
            acc[m][3] = dot16(wv[m].w, x, acc[m][3]);
        }
    }

    // first[m]: the row group's first chunk in matrix m; total_chunks 0 for an idle team.
    __device__ __forceinline__ void start(const uint4* const (&first)[kMats], int total_chunks,
                                          int team_threads, int t) {
#pragma unroll
        for (int m = 0; m < kMats; ++m) {
            codes[m] = first[m];
#pragma unroll
            for (int i = 0; i < 4; ++i) acc[m][i] = 0;
        }
        total = total_chunks;
        step = team_threads;
        u = t;
        lane = static_cast<int>(threadIdx.x & 31);
        full = warp_full();
        if (full) load_unrolled();
    }

    template <typename Act>
    __device__ __forceinline__ void run(Act& act) {
        while (full) {
            uint4 cur[kGemvUnroll][kMats];  // this step's weights (w is free for the next step's)
#pragma unroll
            for (int i = 0; i < kGemvUnroll; ++i)
#pragma unroll
                for (int m = 0; m < kMats; ++m) cur[i][m] = w[m][i];
            const int at = u;
            u += kGemvUnroll * step;
            full = warp_full();
            if (kPrefetch && full) load_unrolled();  // the next step's weights, before the math
            uint4 x[kGemvUnroll];
            if constexpr (has_step<Act>(0)) {
                act.step(at, step, x);
            } else {
#pragma unroll
                for (int i = 0; i < kGemvUnroll; ++i) x[i] = act(at + i * step, true);
            }
#pragma unroll
            for (int i = 0; i < kGemvUnroll; ++i) accumulate(cur[i], x[i]);
            if (!kPrefetch && full) load_unrolled();  // after the math: one step in flight
        }
        // The tail, one chunk per lane per iteration; the warp iterates while any lane has one.
        const uint4 zero = make_uint4(0, 0, 0, 0);
        for (; u - lane < total; u += step) {
            const bool valid = u < total;
            uint4 wv[kMats];
#pragma unroll
            for (int m = 0; m < kMats; ++m) wv[m] = valid ? load_once(codes[m] + u) : zero;
            accumulate(wv, act(u, valid));
        }
    }

    // Sums acc over the lanes with the same lane % 4: lane l < 4 then holds rows 4l..4l+3.
    __device__ __forceinline__ void reduce_lanes() {
#pragma unroll
        for (int offset = 4; offset < 32; offset <<= 1)
#pragma unroll
            for (int m = 0; m < kMats; ++m)
#pragma unroll
                for (int i = 0; i < 4; ++i)
                    acc[m][i] += __shfl_xor_sync(0xffffffffu, acc[m][i], offset);
    }
};

// Team size W (warps per row group) for a launch: the largest power of two <= max_warps that
// keeps every team resident at once (one wave: no tail of half-empty SMs) while giving each thread
// >= 2 loads: W = 1 for the MLP's thousands of row groups, up to 8 for the few row groups of the
// TTT projections.
inline int gemv_team_warps(int64_t groups, int64_t loads_per_group, int64_t resident_warps,
                           int max_warps) {
    int w = 1;
    while (w < max_warps && groups * (2 * w) <= resident_warps &&
           loads_per_group >= int64_t{2 * w} * 32 * 2)
        w *= 2;
    return w;
}

}  // namespace bitttt::cuda::detail
