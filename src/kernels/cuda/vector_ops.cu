// The per-token vector ops around the ternary products: activation quantization, RMSNorm, the
// SiLU-gated product (each optionally fused with the quantization that follows it) and the TTT
// `reconstruct` state step.
//
// The quantization follows quantize_activations_scalar step by step with the roundings spelled
// out (IEEE division, __fmul_rn, rintf = round half to even), so int8 values and scales are
// bit-identical to the CPU's for the same float inputs.
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cpu/ttt_scan.hpp"
#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/gemv_core.cuh"
#include "kernels/cuda/gemv_float.hpp"
#include "kernels/cuda/kernels.hpp"
#include "kernels/cuda/pdl.cuh"

namespace bitttt::cuda {
namespace {

using detail::aligned;
using detail::check_launch;
using detail::raw;

struct MaxOp {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct SumOp {
    template <typename T>
    __device__ T operator()(T a, T b) const {
        return a + b;
    }
};

// Reduces v over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the
// result. The order is fixed by the block shape, so equal inputs give equal results.
template <typename T, typename Op>
__device__ T block_reduce(T v, Op op, T identity) {
    __shared__ T scratch[32];
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
        v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();  // scratch may still be read by a previous reduction
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < static_cast<int>(blockDim.x >> 5) ? scratch[lane] : identity;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
        v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// Quantizes one row whose values come from src(j), j < k (recomputed in the second pass instead
// of stored), as quantize_activations_scalar does:
//   gamma = max(max|v|, 1e-5); q = clamp(rint(v * (127 / gamma)), -127, 127); scale = gamma / 127.
template <typename Source>
__device__ void quantize_row(const Source& src, int64_t k, int64_t k_pad, int8_t* q,
                             float* scale_out, int32_t* sum_out) {
    float absmax = 0.0f;  // fmaxf ignores NaN, as std::max(absmax, NaN) does on the CPU
    for (int64_t j = threadIdx.x; j < k; j += blockDim.x) absmax = fmaxf(absmax, fabsf(src(j)));
    absmax = block_reduce(absmax, MaxOp{}, 0.0f);
    const float gamma = fmaxf(absmax, 1e-5f);
    const float s = __fdiv_rn(127.0f, gamma);
    int sum = 0;
    for (int64_t j = threadIdx.x; j < k_pad; j += blockDim.x) {
        int value = 0;
        if (j < k) {
            float r = rintf(__fmul_rn(src(j), s));
            if (!(r == r)) r = 0.0f;
            value = static_cast<int>(fminf(fmaxf(r, -127.0f), 127.0f));
        }
        q[j] = static_cast<int8_t>(value);
        sum += value;
    }
    sum = block_reduce(sum, SumOp{}, 0);
    if (threadIdx.x == 0) {
        *scale_out = __fdiv_rn(gamma, 127.0f);
        *sum_out = sum;
    }
}

// 1 / sqrt(mean(x²) + eps) as rmsnorm_scalar computes it (squares summed exactly in double).
__device__ float inv_rms(const float* x, int64_t d, float eps) {
    double ss = 0.0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
        const double v = x[j];
        ss += v * v;
    }
    ss = block_reduce(ss, SumOp{}, 0.0);
    const float mean = __double2float_rn(__ddiv_rn(ss, static_cast<double>(d)));
    return __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(mean, eps)));
}

using detail::silu_times;  // silu(g) * u as silu_mul_scalar writes it (gemv_core.cuh)

__global__ void quantize_kernel(const float* x, int64_t k, int64_t x_stride, int8_t* q,
                                int64_t q_stride, float* scale, int32_t* sum, int64_t k_pad) {
    const int64_t i = blockIdx.x;
    const float* xi = x + i * x_stride;
    quantize_row([xi](int64_t j) { return xi[j]; }, k, k_pad, q + i * q_stride, scale + i, sum + i);
}

__global__ void rmsnorm_kernel(const float* x, int64_t d, int64_t x_stride, const float* weight,
                               float eps, float* y, int64_t y_stride) {
    detail::wait_for_previous_kernel();
    detail::allow_next_kernel();
    const int64_t i = blockIdx.x;
    const float* xi = x + i * x_stride;
    float* yi = y + i * y_stride;
    const float inv = inv_rms(xi, d, eps);
    __syncthreads();  // y may alias x: every thread has read x before any writes
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x)
        yi[j] = __fmul_rn(__fmul_rn(xi[j], inv), weight[j]);
}

__global__ void rmsnorm_quantize_kernel(const float* x, int64_t d, int64_t x_stride,
                                        const float* weight, float eps, int8_t* q, int64_t q_stride,
                                        float* scale, int32_t* sum, int64_t k_pad) {
    const int64_t i = blockIdx.x;
    const float* xi = x + i * x_stride;
    const float inv = inv_rms(xi, d, eps);
    quantize_row([=](int64_t j) { return __fmul_rn(__fmul_rn(xi[j], inv), weight[j]); }, d, k_pad,
                 q + i * q_stride, scale + i, sum + i);
}

__global__ void silu_mul_kernel(const float* gate, const float* up, int64_t n, float* out) {
    for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < n;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x)
        out[j] = silu_times(gate[j], up[j]);
}

__global__ void silu_mul_quantize_kernel(const float* gate, const float* up, int64_t n,
                                         int64_t stride, int8_t* q, int64_t q_stride, float* scale,
                                         int32_t* sum, int64_t k_pad) {
    const int64_t i = blockIdx.x;
    const float* g = gate + i * stride;
    const float* u = up + i * stride;
    quantize_row([=](int64_t j) { return silu_times(g[j], u[j]); }, n, k_pad, q + i * q_stride,
                 scale + i, sum + i);
}

// ---- decode-sized rows held in registers ----
// For rows of up to 32 values per thread (32768 with 1024 threads) the row is read from memory
// once into registers, reduced, quantized and written: one memory round trip instead of three,
// which matters for the single-token decode step where these kernels are latency-bound.
// kMode: 0 quantize a; 1 rmsnorm(a; weight b) then quantize; 2 silu(a) * b then quantize.
constexpr int kRowRegThreads = 1024;

template <int kPerThread, int kMode>
__global__ void __launch_bounds__(kRowRegThreads)
    row_quantize_regs_kernel(const float* a, const float* b, int64_t k, int64_t stride, float eps,
                             int8_t* q, int64_t q_stride, float* scale, int32_t* sum,
                             int64_t k_pad) {
    // RMSNorm's weights are constant: fetched before waiting for the kernel that writes a (PDL).
    constexpr bool kPrefetchWeight = kMode == 1 && kPerThread <= 8;
    float weight[kPrefetchWeight ? kPerThread : 1];
    if constexpr (kPrefetchWeight) {
#pragma unroll
        for (int i = 0; i < kPerThread; ++i) {
            const int64_t j = threadIdx.x + static_cast<int64_t>(i) * kRowRegThreads;
            weight[i] = j < k ? b[j] : 0.0f;
        }
    }
    detail::wait_for_previous_kernel();
    detail::allow_next_kernel();
    const int64_t row = blockIdx.x;
    const float* ai = a + row * stride;
    float v[kPerThread];
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
        const int64_t j = threadIdx.x + static_cast<int64_t>(i) * kRowRegThreads;
        v[i] = 0.0f;
        if (j < k) {
            if constexpr (kMode == 2)
                v[i] = silu_times(ai[j], b[row * stride + j]);
            else
                v[i] = ai[j];
        }
    }
    if constexpr (kMode == 1) {
        double ss = 0.0;
#pragma unroll
        for (int i = 0; i < kPerThread; ++i) ss += static_cast<double>(v[i]) * v[i];
        ss = block_reduce(ss, SumOp{}, 0.0);
        const float mean = __double2float_rn(__ddiv_rn(ss, static_cast<double>(k)));
        const float inv = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(mean, eps)));
#pragma unroll
        for (int i = 0; i < kPerThread; ++i) {
            const int64_t j = threadIdx.x + static_cast<int64_t>(i) * kRowRegThreads;
            if (j >= k) continue;
            float wj;
            if constexpr (kPrefetchWeight)
                wj = weight[i];
            else
                wj = b[j];
            v[i] = __fmul_rn(__fmul_rn(v[i], inv), wj);
        }
    }
    float absmax = 0.0f;
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) absmax = fmaxf(absmax, fabsf(v[i]));
    absmax = block_reduce(absmax, MaxOp{}, 0.0f);
    const float gamma = fmaxf(absmax, 1e-5f);
    const float s = __fdiv_rn(127.0f, gamma);
    int8_t* qi = q + row * q_stride;
    int total = 0;
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
        const int64_t j = threadIdx.x + static_cast<int64_t>(i) * kRowRegThreads;
        if (j < k_pad) {
            int value = 0;
            if (j < k) {
                float r = rintf(__fmul_rn(v[i], s));
                if (!(r == r)) r = 0.0f;
                value = static_cast<int>(fminf(fmaxf(r, -127.0f), 127.0f));
            }
            qi[j] = static_cast<int8_t>(value);
            total += value;
        }
    }
    // k_pad - k < 16 <= kRowRegThreads: the padding beyond kPerThread * 1024 (if any) is here.
    const int64_t tail = static_cast<int64_t>(kPerThread) * kRowRegThreads + threadIdx.x;
    if (tail < k_pad) qi[tail] = 0;
    total = block_reduce(total, SumOp{}, 0);
    if (threadIdx.x == 0) {
        scale[row] = __fdiv_rn(gamma, 127.0f);
        sum[row] = total;
    }
}

// Launches the register version when the row fits (returns false otherwise).
template <int kMode>
bool launch_row_quantize_regs(const float* a, const float* b, int64_t m, int64_t k, int64_t stride,
                              float eps, const QuantizedActivations& out, cudaStream_t stream) {
    const int64_t per_thread = (k + kRowRegThreads - 1) / kRowRegThreads;
    const auto blocks = static_cast<unsigned>(m);
    const int64_t k_pad = kernels::packed_cols(k);
    if (per_thread <= 2)
        detail::launch_pdl("row_quantize_regs_kernel", row_quantize_regs_kernel<2, kMode>,
                           dim3(blocks), dim3(kRowRegThreads), 0, stream, a, b, k, stride, eps,
                           out.q, out.stride, out.scale, out.sum, k_pad);
    else if (per_thread <= 8)
        detail::launch_pdl("row_quantize_regs_kernel", row_quantize_regs_kernel<8, kMode>,
                           dim3(blocks), dim3(kRowRegThreads), 0, stream, a, b, k, stride, eps,
                           out.q, out.stride, out.scale, out.sum, k_pad);
    else if (per_thread <= 32)
        detail::launch_pdl("row_quantize_regs_kernel", row_quantize_regs_kernel<32, kMode>,
                           dim3(blocks), dim3(kRowRegThreads), 0, stream, a, b, k, stride, eps,
                           out.q, out.stride, out.scale, out.sum, k_pad);
    else
        return false;
    return true;
}

// ---- TTT step ----
// One warp per row of W (8 rows per block). Every block first computes f̂ into shared memory (the
// same sum in the same order in every block, so all rows see the same f̂); then each warp reads its
// row once, reduces z_i = W_i · f̂, and writes back W_i + (−η f̂_j)(z_i − f̂_i). Rows of up to 2048
// floats (dt % 4 == 0) stay in registers between the two halves (kRegisterRows); others re-read.
constexpr int kTttThreads = 256;
constexpr int kTttRowsPerBlock = kTttThreads / 32;
constexpr int kTttVectorsPerLane = 16;  // float4 registers per lane: rows up to 2048 floats
constexpr int64_t kTttMaxDim = 12288;   // f̂ in 48 KB of shared memory

// f̂ = f / (‖f‖₂ + 1e-6) into shared memory, the same sum in the same order in every block (and in
// both step kernels: the deferred step gives the same bits as the plain one). `batched`
// (DecodeVariant::prologue > 0) loads a thread's values of f in batches of kBatch and keeps the
// first batch for f̂: one L2 round trip instead of one per few values; same sums in the same order
// (fmaf spelled out: a predicated `s += v * v` may round the product apart).
__device__ __forceinline__ void ttt_normalize_key(const float* f, int dt, float* fh, bool batched) {
    constexpr int kBatch = 8;
    const int n = static_cast<int>(blockDim.x);
    float sum_sq = 0.0f;
    float first[kBatch] = {};
    if (batched) {
        for (int j0 = threadIdx.x; j0 < dt; j0 += kBatch * n) {
            float v[kBatch];
#pragma unroll
            for (int e = 0; e < kBatch; ++e) v[e] = j0 + e * n < dt ? f[j0 + e * n] : 0.0f;
#pragma unroll
            for (int e = 0; e < kBatch; ++e)
                if (j0 + e * n < dt) sum_sq = fmaf(v[e], v[e], sum_sq);
            if (j0 == static_cast<int>(threadIdx.x))
#pragma unroll
                for (int e = 0; e < kBatch; ++e) first[e] = v[e];
        }
    } else {
        for (int j = threadIdx.x; j < dt; j += n) sum_sq = fmaf(f[j], f[j], sum_sq);
    }
    sum_sq = block_reduce(sum_sq, SumOp{}, 0.0f);
    const float inv_norm = __fdiv_rn(1.0f, __fadd_rn(sqrtf(sum_sq), kernels::kTttNormEps));
    int j = threadIdx.x;
    if (batched)
#pragma unroll
        for (int e = 0; e < kBatch; ++e, j += n)
            if (j < dt) fh[j] = __fmul_rn(first[e], inv_norm);
    for (; j < dt; j += n) fh[j] = __fmul_rn(f[j], inv_norm);
    __syncthreads();
}

// acc + a · b as four fmaf in the order x, y, z, w.
__device__ __forceinline__ float fma4(const float4& a, const float4& b, float acc) {
    acc = fmaf(a.x, b.x, acc);
    acc = fmaf(a.y, b.y, acc);
    acc = fmaf(a.z, b.z, acc);
    return fmaf(a.w, b.w, acc);
}

// A lane's part of z_i = W_i · f̂ (both step kernels sum in these orders): from a row held in
// registers (lane l holds the float4s l, l + 32, ...) or read one float at a time.
__device__ __forceinline__ float ttt_lane_dot(const float4 (&v)[kTttVectorsPerLane],
                                              const float4* fh4, int dt, int lane) {
    float dot = 0.0f;
#pragma unroll
    for (int i = 0; i < kTttVectorsPerLane; ++i)
        if ((i * 32 + lane) * 4 < dt) dot = fma4(v[i], fh4[i * 32 + lane], dot);
    return dot;
}
__device__ __forceinline__ float ttt_lane_dot(const float* wr, const float* fh, int dt, int lane) {
    float dot = 0.0f;
    for (int j = lane; j < dt; j += 32) dot = fmaf(wr[j], fh[j], dot);
    return dot;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// One value of the rank-1 update, W_ij + (−η f̂_j) e_i with e_i = z_i − f̂_i, rounded as written.
__device__ __forceinline__ float ttt_update(float w, float eta, float fh_j, float e_i) {
    return __fadd_rn(w, __fmul_rn(__fmul_rn(-eta, fh_j), e_i));
}

// max |z| of the block's rows for the GEMV that quantizes z on the fly (gemv_float.hpp): one
// atomic per block.
__device__ __forceinline__ void ttt_publish_key(unsigned long long* z_key, float dot, int row,
                                                int dt) {
    __shared__ unsigned long long keys[kTttRowsPerBlock];
    const int lane = threadIdx.x & 31;
    if (lane == 0) keys[threadIdx.x >> 5] = row < dt ? detail::absmax_key(dot, row) : 0ull;
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned long long best = 0;
        for (int i = 0; i < kTttRowsPerBlock; ++i) best = keys[i] > best ? keys[i] : best;
        if (best != 0) atomicMax(z_key, best);
    }
}

template <bool kRegisterRows>
__global__ void __launch_bounds__(kTttThreads)
    ttt_step_kernel(float* w, int dt, float eta, const float* f, float* z,
                    unsigned long long* z_key, bool prefetch_state, int prologue) {
    extern __shared__ float4 fh4[];
    float* fh = reinterpret_cast<float*>(fh4);
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * kTttRowsPerBlock + (threadIdx.x >> 5);
    float* wr = w + static_cast<int64_t>(row < dt ? row : 0) * dt;
    float4 v[kRegisterRows ? kTttVectorsPerLane : 1];
    auto load_row = [&] {
        if constexpr (kRegisterRows) {
#pragma unroll
            for (int i = 0; i < kTttVectorsPerLane; ++i) {
                const int j = (i * 32 + lane) * 4;
                if (row < dt && j < dt) v[i] = *reinterpret_cast<const float4*>(wr + j);
            }
        }
    };
    // W may have been written by the previous kernel (the step of the previous token), so its
    // loads wait for it (PDL) unless the caller says it was not (prefetch_state: then they overlap
    // the previous kernel's tail). Either way they go out before f̂ is computed.
    if (prefetch_state) load_row();
    detail::wait_for_previous_kernel();
    detail::allow_next_kernel();
    if (!prefetch_state) load_row();
    ttt_normalize_key(f, dt, fh, prologue > 0);

    float dot = 0.0f;
    if (row >= dt) {
        // no row: only the block-wide steps below
    } else if constexpr (kRegisterRows) {
        dot = warp_sum(ttt_lane_dot(v, fh4, dt, lane));
        const float e = dot - fh[row];
#pragma unroll
        for (int i = 0; i < kTttVectorsPerLane; ++i) {
            const int j = (i * 32 + lane) * 4;
            if (j < dt) {
                const float4 h = fh4[j / 4];
                float4 out;
                out.x = ttt_update(v[i].x, eta, h.x, e);
                out.y = ttt_update(v[i].y, eta, h.y, e);
                out.z = ttt_update(v[i].z, eta, h.z, e);
                out.w = ttt_update(v[i].w, eta, h.w, e);
                *reinterpret_cast<float4*>(wr + j) = out;
            }
        }
    } else {
        dot = warp_sum(ttt_lane_dot(wr, fh, dt, lane));
        const float e = dot - fh[row];
        for (int j = lane; j < dt; j += 32) wr[j] = ttt_update(wr[j], eta, fh[j], e);
    }
    if (lane == 0 && row < dt) z[row] = dot;
    if (z_key != nullptr) ttt_publish_key(z_key, dot, row, dt);
}

// ---- the deferred TTT step (kernels.hpp) ----
// The pending update of the previous token, one buffer per layer (floats, 16-byte aligned):
//   [0, 4)                     header: generation, blocks done, valid (0/1), η (bits)
//   [4, 4 + P)                 e = z − f̂ of the last step (P = dt rounded up to 4)
//   [4 + P, 4 + 2P), [.., 3P)  f̂ of the last step, in the buffer of the generation's parity
// A step reads f̂ from one buffer before its PDL wait and writes the new f̂ into the other (blocks
// of the same launch may still be reading the first); the last block to finish flips the
// generation, so the next step reads what this one wrote.
struct TttPendingView {
    unsigned* header;
    float* e;
    const float* fh_prev;
    float* fh_next;
    unsigned gen;
    bool valid;
    float eta;
};

__device__ __forceinline__ TttPendingView ttt_pending_view(float* pending, int dt) {
    TttPendingView p;
    p.header = reinterpret_cast<unsigned*>(pending);
    const int padded = (dt + 3) & ~3;
    p.gen = p.header[0];
    p.valid = p.header[2] != 0u;
    p.eta = __uint_as_float(p.header[3]);
    p.e = pending + 4;
    p.fh_prev = pending + 4 + padded + static_cast<int>(p.gen & 1u) * padded;
    p.fh_next = pending + 4 + padded + static_cast<int>((p.gen + 1u) & 1u) * padded;
    return p;
}

// kMode: 0 scalar loads (any dt), 1 rows held in registers across the PDL wait (dt % 4 == 0,
// dt <= 2048; ~120 registers), 2 streamed in float4s (dt % 4 == 0): W_t is written before the
// wait and read again (mostly from L2) for the product after it, so the kernel needs few
// registers and all its blocks fit on the SMs beside the down projection.
constexpr int kTttStreamUnroll = 4;  // float4 loads in flight per lane in mode 2

template <int kMode>
__global__ void __launch_bounds__(kTttThreads)
    ttt_step_deferred_kernel(float* w, int dt, float eta, const float* f, float* z,
                             unsigned long long* z_key, float* pending, bool early, int prologue) {
    extern __shared__ float4 fh4[];
    float* fh = reinterpret_cast<float*>(fh4);
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * kTttRowsPerBlock + (threadIdx.x >> 5);
    float* wr = w + static_cast<int64_t>(row < dt ? row : 0) * dt;
    float4 v[kMode == 1 ? kTttVectorsPerLane : 1];
    TttPendingView p{};
    // W_t = W_{t-1} − η e f̂ᵀ of the previous token, written back: it needs nothing of this token,
    // so with `early` it runs while the previous kernel (the TTT down projection) still streams
    // its weights. Rows of mode 1 stay in v for the product below.
    auto apply_pending = [&] {
        p = ttt_pending_view(pending, dt);
        if constexpr (kMode == 1) {
#pragma unroll
            for (int i = 0; i < kTttVectorsPerLane; ++i) {
                const int j = (i * 32 + lane) * 4;
                if (row < dt && j < dt) v[i] = *reinterpret_cast<const float4*>(wr + j);
            }
            if (!p.valid || row >= dt) return;
            const float e = p.e[row];
#pragma unroll
            for (int i = 0; i < kTttVectorsPerLane; ++i) {
                const int j = (i * 32 + lane) * 4;
                if (j < dt) {
                    const float4 h = *reinterpret_cast<const float4*>(p.fh_prev + j);
                    v[i].x = ttt_update(v[i].x, p.eta, h.x, e);
                    v[i].y = ttt_update(v[i].y, p.eta, h.y, e);
                    v[i].z = ttt_update(v[i].z, p.eta, h.z, e);
                    v[i].w = ttt_update(v[i].w, p.eta, h.w, e);
                    *reinterpret_cast<float4*>(wr + j) = v[i];
                }
            }
        } else if constexpr (kMode == 2) {
            if (!p.valid || row >= dt) return;
            const float e = p.e[row];
            const int n4 = dt / 4;
            float4* w4 = reinterpret_cast<float4*>(wr);
            const float4* h4 = reinterpret_cast<const float4*>(p.fh_prev);
            for (int c = lane; c < n4; c += 32 * kTttStreamUnroll) {
                float4 x[kTttStreamUnroll];
#pragma unroll
                for (int i = 0; i < kTttStreamUnroll; ++i)
                    if (c + 32 * i < n4) x[i] = w4[c + 32 * i];
#pragma unroll
                for (int i = 0; i < kTttStreamUnroll; ++i) {
                    if (c + 32 * i >= n4) continue;
                    const float4 h = h4[c + 32 * i];
                    x[i].x = ttt_update(x[i].x, p.eta, h.x, e);
                    x[i].y = ttt_update(x[i].y, p.eta, h.y, e);
                    x[i].z = ttt_update(x[i].z, p.eta, h.z, e);
                    x[i].w = ttt_update(x[i].w, p.eta, h.w, e);
                    w4[c + 32 * i] = x[i];
                }
            }
        } else {
            if (!p.valid || row >= dt) return;
            const float e = p.e[row];
            for (int j = lane; j < dt; j += 32) wr[j] = ttt_update(wr[j], p.eta, p.fh_prev[j], e);
        }
    };
    if (early) apply_pending();
    detail::wait_for_previous_kernel();
    detail::allow_next_kernel();
    if (!early) apply_pending();
    ttt_normalize_key(f, dt, fh, prologue > 0);

    // z = W_t f̂ (the state before this token's update, as the plain step computes it), summed in
    // the plain step's order in every mode: lane l takes the float4s l, l + 32, ... in turn.
    float dot = 0.0f;
    if (row < dt) {
        if constexpr (kMode == 1) {
            dot = ttt_lane_dot(v, fh4, dt, lane);
        } else if constexpr (kMode == 2) {
            const int n4 = dt / 4;
            const float4* w4 = reinterpret_cast<const float4*>(wr);
            for (int c = lane; c < n4; c += 32 * kTttStreamUnroll) {
                float4 x[kTttStreamUnroll];
#pragma unroll
                for (int i = 0; i < kTttStreamUnroll; ++i)
                    if (c + 32 * i < n4) x[i] = w4[c + 32 * i];
#pragma unroll
                for (int i = 0; i < kTttStreamUnroll; ++i)
                    if (c + 32 * i < n4) dot = fma4(x[i], fh4[c + 32 * i], dot);
            }
        } else {
            dot = ttt_lane_dot(wr, fh, dt, lane);
        }
        dot = warp_sum(dot);
        if (lane == 0) {
            z[row] = dot;
            p.e[row] = dot - fh[row];  // the update of this token, applied by the next step
            p.fh_next[row] = fh[row];  // each block writes f̂ of its own rows
        }
    }
    if (z_key != nullptr) ttt_publish_key(z_key, dot, row, dt);
    // The last block to finish publishes the new pending update (every block has read the header
    // by now: it did so before counting itself done).
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        if (atomicAdd(&p.header[1], 1u) == gridDim.x - 1) {
            p.header[1] = 0u;
            p.header[3] = __float_as_uint(eta);
            p.header[2] = 1u;
            p.header[0] = p.gen + 1u;
        }
    }
}

// Applies a layer's pending update to W and marks it applied (one warp per row).
__global__ void __launch_bounds__(kTttThreads)
    ttt_apply_pending_kernel(float* w, int dt, float* pending) {
    detail::wait_for_previous_kernel();
    detail::allow_next_kernel();
    const TttPendingView p = ttt_pending_view(pending, dt);
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * kTttRowsPerBlock + (threadIdx.x >> 5);
    if (!p.valid || row >= dt) return;
    float* wr = w + static_cast<int64_t>(row) * dt;
    const float e = p.e[row];
    for (int j = lane; j < dt; j += 32) wr[j] = ttt_update(wr[j], p.eta, p.fh_prev[j], e);
}

// ---- argument checks and launch shapes ----

int row_threads(int64_t k) {
    return k >= 4096 ? 1024 : 256;
}

void check_rows(const char* what, const float* x, int64_t m, int64_t k, int64_t x_stride) {
    check(m >= 0 && m <= detail::kMaxDim && k >= 0 && k <= detail::kMaxDim,
          ErrorKind::kInvalidArgument, "CUDA: {}: shape [{}, {}] is out of range", what, m, k);
    if (m == 0) return;
    check(x != nullptr, ErrorKind::kInvalidArgument, "CUDA: {}: null input", what);
    check(m == 1 || (x_stride >= k && x_stride <= detail::kMaxDim), ErrorKind::kDimensionMismatch,
          "CUDA: {}: input stride {} is not in [{}, 2^31]", what, x_stride, k);
}

void check_output(const char* what, const QuantizedActivations& out, int64_t m, int64_t k) {
    check(out.q != nullptr && out.scale != nullptr && out.sum != nullptr,
          ErrorKind::kInvalidArgument, "CUDA: {}: null output buffer", what);
    check(m == 1 || (out.stride >= kernels::packed_cols(k) && out.stride <= detail::kMaxDim),
          ErrorKind::kDimensionMismatch, "CUDA: {}: output stride {} is not in [{}, 2^31]", what,
          out.stride, kernels::packed_cols(k));
}

}  // namespace

void quantize_activations(const float* x, int64_t m, int64_t k, int64_t x_stride,
                          const QuantizedActivations& out, const Stream& stream) {
    check_rows("quantize_activations", x, m, k, x_stride);
    if (m == 0) return;
    check_output("quantize_activations", out, m, k);
    if (k > 0 && launch_row_quantize_regs<0>(x, nullptr, m, k, x_stride, 0.0f, out, raw(stream)))
        return;
    quantize_kernel<<<static_cast<unsigned>(m), row_threads(k), 0, raw(stream)>>>(
        x, k, x_stride, out.q, out.stride, out.scale, out.sum, kernels::packed_cols(k));
    check_launch("quantize_kernel");
}

void rmsnorm(const float* x, int64_t m, int64_t d, int64_t x_stride, const float* weight, float eps,
             float* y, int64_t y_stride, const Stream& stream) {
    check_rows("rmsnorm", x, m, d, x_stride);
    if (m == 0) return;
    check(d > 0 && weight != nullptr && y != nullptr, ErrorKind::kInvalidArgument,
          "CUDA: rmsnorm: empty rows or null weight/output");
    check(m == 1 || (y_stride >= d && y_stride <= detail::kMaxDim), ErrorKind::kDimensionMismatch,
          "CUDA: rmsnorm: output stride {} is not in [{}, 2^31]", y_stride, d);
    detail::launch_pdl("rmsnorm_kernel", rmsnorm_kernel, dim3(static_cast<unsigned>(m)),
                       dim3(row_threads(d)), 0, raw(stream), x, d, x_stride, weight, eps, y,
                       y_stride);
}

void rmsnorm_quantize(const float* x, int64_t m, int64_t d, int64_t x_stride, const float* weight,
                      float eps, const QuantizedActivations& out, const Stream& stream) {
    check_rows("rmsnorm_quantize", x, m, d, x_stride);
    if (m == 0) return;
    check(d > 0 && weight != nullptr, ErrorKind::kInvalidArgument,
          "CUDA: rmsnorm_quantize: empty rows or null weight");
    check_output("rmsnorm_quantize", out, m, d);
    if (launch_row_quantize_regs<1>(x, weight, m, d, x_stride, eps, out, raw(stream))) return;
    rmsnorm_quantize_kernel<<<static_cast<unsigned>(m), row_threads(d), 0, raw(stream)>>>(
        x, d, x_stride, weight, eps, out.q, out.stride, out.scale, out.sum,
        kernels::packed_cols(d));
    check_launch("rmsnorm_quantize_kernel");
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out, const Stream& stream) {
    check(n >= 0 && n <= detail::kMaxDim * 64, ErrorKind::kInvalidArgument,
          "CUDA: silu_mul: length {} is out of range", n);
    if (n == 0) return;
    check(gate != nullptr && up != nullptr && out != nullptr, ErrorKind::kInvalidArgument,
          "CUDA: silu_mul: null buffer");
    const int64_t blocks = std::min<int64_t>((n + 255) / 256, 65536);
    silu_mul_kernel<<<static_cast<unsigned>(blocks), 256, 0, raw(stream)>>>(gate, up, n, out);
    check_launch("silu_mul_kernel");
}

void silu_mul_quantize(const float* gate, const float* up, int64_t m, int64_t n, int64_t stride,
                       const QuantizedActivations& out, const Stream& stream) {
    check_rows("silu_mul_quantize", gate, m, n, stride);
    if (m == 0) return;
    check(up != nullptr, ErrorKind::kInvalidArgument, "CUDA: silu_mul_quantize: null input");
    check_output("silu_mul_quantize", out, m, n);
    if (n > 0 && launch_row_quantize_regs<2>(gate, up, m, n, stride, 0.0f, out, raw(stream)))
        return;
    silu_mul_quantize_kernel<<<static_cast<unsigned>(m), row_threads(n), 0, raw(stream)>>>(
        gate, up, n, stride, out.q, out.stride, out.scale, out.sum, kernels::packed_cols(n));
    check_launch("silu_mul_quantize_kernel");
}

void ttt_reconstruct_step(float* w, int64_t dt, float eta, const float* f, float* z,
                          const Stream& stream, unsigned long long* z_absmax_key,
                          bool prefetch_state) {
    check(dt > 0 && dt <= kTttMaxDim, ErrorKind::kInvalidArgument,
          "CUDA: ttt_reconstruct_step: state width {} is not in [1, {}]", dt, kTttMaxDim);
    check(w != nullptr && f != nullptr && z != nullptr && z != f, ErrorKind::kInvalidArgument,
          "CUDA: ttt_reconstruct_step: null or aliased buffers");
    const unsigned blocks = static_cast<unsigned>((dt + kTttRowsPerBlock - 1) / kTttRowsPerBlock);
    const size_t smem = static_cast<size_t>(dt) * sizeof(float);
    const bool in_registers = dt % 4 == 0 && dt <= 32 * 4 * kTttVectorsPerLane && aligned(w, 16);
    detail::launch_pdl("ttt_step_kernel",
                       in_registers ? ttt_step_kernel<true> : ttt_step_kernel<false>, dim3(blocks),
                       dim3(kTttThreads), smem, raw(stream), w, static_cast<int>(dt), eta, f, z,
                       z_absmax_key, prefetch_state, decode_variant().prologue);
}

int64_t ttt_pending_floats(int64_t dt) {
    return 4 + 3 * ((dt + 3) / 4 * 4);
}

void ttt_reconstruct_step_deferred(float* w, int64_t dt, float eta, const float* f, float* z,
                                   float* pending, const Stream& stream,
                                   unsigned long long* z_absmax_key, bool early, bool hold_rows) {
    check(dt > 0 && dt <= kTttMaxDim, ErrorKind::kInvalidArgument,
          "CUDA: ttt_reconstruct_step_deferred: state width {} is not in [1, {}]", dt, kTttMaxDim);
    check(w != nullptr && f != nullptr && z != nullptr && z != f && pending != nullptr &&
              aligned(pending, 16),
          ErrorKind::kInvalidArgument,
          "CUDA: ttt_reconstruct_step_deferred: null, aliased or misaligned buffers");
    const unsigned blocks = static_cast<unsigned>((dt + kTttRowsPerBlock - 1) / kTttRowsPerBlock);
    const size_t smem = static_cast<size_t>(dt) * sizeof(float);
    const bool vectors = dt % 4 == 0 && aligned(w, 16);
    const bool in_registers = vectors && dt <= 32 * 4 * kTttVectorsPerLane && hold_rows;
    auto kernel = in_registers ? ttt_step_deferred_kernel<1>
                  : vectors    ? ttt_step_deferred_kernel<2>
                               : ttt_step_deferred_kernel<0>;
    detail::launch_pdl("ttt_step_deferred_kernel", kernel, dim3(blocks), dim3(kTttThreads), smem,
                       raw(stream), w, static_cast<int>(dt), eta, f, z, z_absmax_key, pending,
                       early, decode_variant().prologue);
}

void ttt_apply_pending(float* w, int64_t dt, float* pending, const Stream& stream) {
    check(dt > 0 && dt <= kTttMaxDim && w != nullptr && pending != nullptr && aligned(pending, 16),
          ErrorKind::kInvalidArgument,
          "CUDA: ttt_apply_pending: state width {} (1..{}) or null/misaligned buffers", dt,
          kTttMaxDim);
    const unsigned blocks = static_cast<unsigned>((dt + kTttRowsPerBlock - 1) / kTttRowsPerBlock);
    detail::launch_pdl("ttt_apply_pending_kernel", ttt_apply_pending_kernel, dim3(blocks),
                       dim3(kTttThreads), 0, raw(stream), w, static_cast<int>(dt), pending);
    // The update is in W now: clear the valid flag (stream-ordered after the kernel).
    detail::check_cuda(cudaMemsetAsync(pending + 2, 0, sizeof(unsigned), raw(stream)),
                       "cudaMemsetAsync");
}

}  // namespace bitttt::cuda
