// The training ops on the GPU (train_ops.hpp): rows map to warps (RMSNorm, L2 norm, quantization;
// rows of up to 1024 held in registers), the SwiGLU quantization and cross-entropy rows to blocks,
// row-wise elementwise ops to a 2D grid (rows x column runs, 16-byte accesses where aligned), the
// rest to grid-stride loops. Formulas follow src/train/ops.cpp step by step so fp32 results agree
// with the CPU to rounding; the fused kernels give the values of the ops they replace bit for bit.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/train_ops.hpp"

namespace bitttt::cuda {
namespace {

using detail::check_launch;
using detail::raw;

constexpr int kThreads = 256;
constexpr int kRowsPerBlock = kThreads / 32;  // one warp per row

template <typename T>
__device__ T warp_sum(T v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum (or max) over a block of at most 1024 threads, every thread gets the result.
template <typename T, bool kMax>
__device__ T block_reduce(T v) {
    __shared__ T scratch[32];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const T other = __shfl_xor_sync(0xffffffffu, v, o);
        v = kMax ? (v > other ? v : other) : v + other;
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    const int warps = static_cast<int>(blockDim.x >> 5);
    v = lane < warps ? scratch[lane] : (kMax ? scratch[0] : T(0));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const T other = __shfl_xor_sync(0xffffffffu, v, o);
        v = kMax ? (v > other ? v : other) : v + other;
    }
    return v;
}

__device__ float sigmoidf(float x) {
    return 1.0f / (1.0f + expf(-x));
}

__device__ uint16_t bf16_bits(float x) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(x));
}

// A product of codes as float: fp32 (the bf16 products) or, i32, the int32 of an int8 product
// (int8_gemm.hpp), whose conversion is exact (|value| < 2^24) and equals the fp32 one.
__device__ __forceinline__ float raw_at(const float* p, int64_t i, bool i32) {
    return i32 ? __int2float_rn(reinterpret_cast<const int32_t*>(p)[i]) : p[i];
}
// The same for four values at a 16-byte aligned p.
__device__ __forceinline__ float4 raw4(const float* p, bool i32) {
    if (!i32) return *reinterpret_cast<const float4*>(p);
    const int4 v = *reinterpret_cast<const int4*>(p);
    return make_float4(__int2float_rn(v.x), __int2float_rn(v.y), __int2float_rn(v.z),
                       __int2float_rn(v.w));
}

// An activation code (act_bits 8): clamp(rint(y · s), −127, 127) with s = 127/γ.
__device__ __forceinline__ float code_of(float y, float s) {
    return fminf(fmaxf(rintf(__fmul_rn(y, s)), -127.0f), 127.0f);
}
__device__ __forceinline__ uint32_t i8_byte(float code) {
    return static_cast<uint32_t>(static_cast<uint8_t>(static_cast<int8_t>(code)));
}
// Four int8 codes in one word, a at the lowest address.
__device__ __forceinline__ uint32_t pack_i8x4(float a, float b, float c, float d) {
    return i8_byte(a) | (i8_byte(b) << 8) | (i8_byte(c) << 16) | (i8_byte(d) << 24);
}

int64_t row_blocks(int64_t rows) {
    return (rows + kRowsPerBlock - 1) / kRowsPerBlock;
}
int64_t elem_blocks(int64_t n) {
    return std::min<int64_t>((n + kThreads - 1) / kThreads, 65536);
}

#define BITTTT_GRID_STRIDE(i, n)                                                           \
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)

#define BITTTT_WARP_ROW(row, N)                                                                \
    const int64_t row = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + (threadIdx.x >> 5); \
    const int lane = threadIdx.x & 31;                                                         \
    if (row >= (N)) return;

// ---- embedding ----

__global__ void embedding_forward_kernel(float* out, const int32_t* tokens, const float* wte,
                                         int64_t N, int64_t C) {
    BITTTT_GRID_STRIDE(i, N * C) {
        const int64_t n = i / C, c = i % C;
        out[i] = wte[static_cast<int64_t>(tokens[n]) * C + c];
    }
}

__global__ void embedding_backward_kernel(float* dwte, const float* dout, const int32_t* tokens,
                                          int64_t N, int64_t C) {
    BITTTT_GRID_STRIDE(i, N * C) {
        const int64_t n = i / C, c = i % C;
        atomicAdd(dwte + static_cast<int64_t>(tokens[n]) * C + c, dout[i]);
    }
}

// ---- RMSNorm ----

__global__ void rmsnorm_forward_kernel(float* out, float* rstd, const float* inp,
                                       const float* weight, int64_t N, int64_t C, float eps) {
    BITTTT_WARP_ROW(n, N)
    const float* x = inp + n * C;
    double ss = 0.0;
    for (int64_t c = lane; c < C; c += 32) ss += static_cast<double>(x[c]) * x[c];
    ss = warp_sum(ss);
    const float r = 1.0f / sqrtf(static_cast<float>(ss / static_cast<double>(C)) + eps);
    float* y = out + n * C;
    for (int64_t c = lane; c < C; c += 32) y[c] = weight ? x[c] * r * weight[c] : x[c] * r;
    if (lane == 0) rstd[n] = r;
}

__global__ void rmsnorm_quant_kernel(float* rstd, uint16_t* codes, int8_t* codes8, float* scale,
                                     const float* inp, const float* weight, int64_t N, int64_t C,
                                     float eps, int act_bits) {
    BITTTT_WARP_ROW(n, N)
    const float* x = inp + n * C;
    double ss = 0.0;
    for (int64_t c = lane; c < C; c += 32) ss += static_cast<double>(x[c]) * x[c];
    ss = warp_sum(ss);
    const float r = 1.0f / sqrtf(static_cast<float>(ss / static_cast<double>(C)) + eps);
    if (lane == 0) rstd[n] = r;
    if (act_bits == 0) {
        for (int64_t c = lane; c < C; c += 32)
            codes[n * C + c] = bf16_bits(weight ? x[c] * r * weight[c] : x[c] * r);
        if (lane == 0) scale[n] = 1.0f;
        return;
    }
    float absmax = 0.0f;
    for (int64_t c = lane; c < C; c += 32)
        absmax = fmaxf(absmax, fabsf(weight ? x[c] * r * weight[c] : x[c] * r));
    absmax = warp_max(absmax);
    const float gamma = fmaxf(absmax, 1e-5f);
    const float s = __fdiv_rn(127.0f, gamma);
    for (int64_t c = lane; c < C; c += 32) {
        const float y = weight ? x[c] * r * weight[c] : x[c] * r;
        const float code = code_of(y, s);
        if (codes) codes[n * C + c] = bf16_bits(code);
        if (codes8) codes8[n * C + c] = static_cast<int8_t>(code);
    }
    if (lane == 0) scale[n] = __fdiv_rn(gamma, 127.0f);
}

__global__ void rmsnorm_backward_kernel(float* dinp, const float* dout, const float* inp,
                                        const float* weight, const float* rstd, int64_t N,
                                        int64_t C) {
    BITTTT_WARP_ROW(n, N)
    const float* x = inp + n * C;
    const float* dy = dout + n * C;
    const float r = rstd[n];
    double dot = 0.0;
    for (int64_t c = lane; c < C; c += 32)
        dot += static_cast<double>(weight ? weight[c] : 1.0f) * dy[c] * x[c];
    dot = warp_sum(dot);
    const float k = static_cast<float>(dot / static_cast<double>(C)) * r * r;
    float* dx = dinp + n * C;
    for (int64_t c = lane; c < C; c += 32)
        dx[c] += r * ((weight ? weight[c] : 1.0f) * dy[c] - x[c] * k);
}

// ---- RMSNorm, rows held in registers ----
// For rows of C <= 128·kVec with C % 4 == 0 and 16-byte aligned rows (D = 256..1024 here): a warp
// per row, lane l holding the float4 runs j·32 + l, so the row is read from memory once. Every
// kernel of this family sums the squares in the same order, so the fused RMSNorm + quantization
// sees exactly the rstd and normed values of the plain forward.

template <int kVec>
__device__ void load_row(float4 (&x)[kVec], const float* row, int lane, int64_t C) {
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
        const int64_t c = (static_cast<int64_t>(j) * 32 + lane) * 4;
        x[j] = c < C ? *reinterpret_cast<const float4*>(row + c) : make_float4(0, 0, 0, 0);
    }
}

__device__ double sq4(float4 v) {
    return static_cast<double>(v.x) * v.x + static_cast<double>(v.y) * v.y +
           static_cast<double>(v.z) * v.z + static_cast<double>(v.w) * v.w;
}

template <int kVec>
__device__ float row_rstd(const float4 (&x)[kVec], int64_t C, float eps) {
    double ss = 0.0;
#pragma unroll
    for (int j = 0; j < kVec; ++j) ss += sq4(x[j]);
    ss = warp_sum(ss);
    return 1.0f / sqrtf(static_cast<float>(ss / static_cast<double>(C)) + eps);
}

// The normed values of one float4 run: x · r · w (weight nullptr: x · r), as the scalar kernels.
__device__ float4 normed4(float4 x, float r, const float* weight, int64_t c) {
    if (!weight) return make_float4(x.x * r, x.y * r, x.z * r, x.w * r);
    const float4 w = *reinterpret_cast<const float4*>(weight + c);
    return make_float4(x.x * r * w.x, x.y * r * w.y, x.z * r * w.z, x.w * r * w.w);
}

template <int kVec>
__global__ void rmsnorm_forward_vec_kernel(float* out, float* rstd, const float* inp,
                                           const float* weight, int64_t N, int64_t C, float eps) {
    BITTTT_WARP_ROW(n, N)
    float4 x[kVec];
    load_row<kVec>(x, inp + n * C, lane, C);
    const float r = row_rstd<kVec>(x, C, eps);
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
        const int64_t c = (static_cast<int64_t>(j) * 32 + lane) * 4;
        if (c < C) *reinterpret_cast<float4*>(out + n * C + c) = normed4(x[j], r, weight, c);
    }
    if (lane == 0) rstd[n] = r;
}

__device__ void store_bf16x4(uint16_t* p, float4 v) {
    const uint32_t lo = bf16_bits(v.x) | (static_cast<uint32_t>(bf16_bits(v.y)) << 16);
    const uint32_t hi = bf16_bits(v.z) | (static_cast<uint32_t>(bf16_bits(v.w)) << 16);
    *reinterpret_cast<uint2*>(p) = make_uint2(lo, hi);
}

// RMSNorm + quantization of a row x held in registers (the tail of both kernels below).
template <int kVec>
__device__ void norm_quant_row(float4 (&x)[kVec], int64_t n, int lane, int64_t C,
                               const float* weight, float eps, int act_bits, float* rstd,
                               uint16_t* codes, int8_t* codes8, float* scale) {
    const float r = row_rstd<kVec>(x, C, eps);
    if (lane == 0) rstd[n] = r;
    float absmax = 0.0f;
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
        const int64_t c = (static_cast<int64_t>(j) * 32 + lane) * 4;
        if (c >= C) continue;
        x[j] = normed4(x[j], r, weight, c);
        absmax = fmaxf(absmax, fmaxf(fmaxf(fabsf(x[j].x), fabsf(x[j].y)),
                                     fmaxf(fabsf(x[j].z), fabsf(x[j].w))));
    }
    absmax = warp_max(absmax);
    const float gamma = fmaxf(absmax, 1e-5f);
    const float s = __fdiv_rn(127.0f, gamma);
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
        const int64_t c = (static_cast<int64_t>(j) * 32 + lane) * 4;
        if (c >= C) continue;
        if (act_bits == 0) {  // (no int8 codes: the launchers refuse them)
            if (codes) store_bf16x4(codes + n * C + c, x[j]);
            continue;
        }
        const float4 q = make_float4(code_of(x[j].x, s), code_of(x[j].y, s), code_of(x[j].z, s),
                                     code_of(x[j].w, s));
        if (codes) store_bf16x4(codes + n * C + c, q);
        if (codes8)
            *reinterpret_cast<uint32_t*>(codes8 + n * C + c) = pack_i8x4(q.x, q.y, q.z, q.w);
    }
    if (lane == 0) scale[n] = act_bits == 0 ? 1.0f : __fdiv_rn(gamma, 127.0f);
}

template <int kVec>
__global__ void rmsnorm_quant_vec_kernel(float* rstd, uint16_t* codes, int8_t* codes8, float* scale,
                                         const float* inp, const float* weight, int64_t N,
                                         int64_t C, float eps, int act_bits) {
    BITTTT_WARP_ROW(n, N)
    float4 x[kVec];
    load_row<kVec>(x, inp + n * C, lane, C);
    norm_quant_row<kVec>(x, n, lane, C, weight, eps, act_bits, rstd, codes, codes8, scale);
}

// h = a + b · row_scale[n] · scalar[0] (stored, as residual_scaled does), then the RMSNorm +
// quantization of h from the registers: the residual add and the next branch's input in one
// pass (h is not read back).
template <int kVec>
__global__ void residual_norm_quant_vec_kernel(float* h, const float* a, const float* b,
                                               const float* row_scale, const float* scalar,
                                               float* rstd, uint16_t* codes, int8_t* codes8,
                                               float* scale, const float* weight, int64_t N,
                                               int64_t C, float eps, int act_bits, bool b_i32) {
    BITTTT_WARP_ROW(n, N)
    const float s = scalar ? scalar[0] : 1.0f, r = row_scale ? row_scale[n] : 1.0f;
    float4 x[kVec], y[kVec];
    load_row<kVec>(x, a + n * C, lane, C);
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
        const int64_t c = (static_cast<int64_t>(j) * 32 + lane) * 4;
        y[j] = c < C ? raw4(b + n * C + c, b_i32) : make_float4(0, 0, 0, 0);
    }
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
        const int64_t c = (static_cast<int64_t>(j) * 32 + lane) * 4;
        if (c >= C) continue;  // (stays zero: no term in the sum of squares)
        x[j].x = x[j].x + y[j].x * r * s, x[j].y = x[j].y + y[j].y * r * s;
        x[j].z = x[j].z + y[j].z * r * s, x[j].w = x[j].w + y[j].w * r * s;
        *reinterpret_cast<float4*>(h + n * C + c) = x[j];
    }
    norm_quant_row<kVec>(x, n, lane, C, weight, eps, act_bits, rstd, codes, codes8, scale);
}

// The backward of a slice of kNormSliceRows rows per block: dinp as rmsnorm_backward_kernel, and
// dweight's column sums (Σ_n dout · inp · rstd) kept per lane over the slice, summed over the
// block's warps in shared memory and added with one float atomic per column and block: no
// second pass over dout and inp.
constexpr int64_t kNormSliceRows = 64;

// The bf16 forms of the new dinp a BitLinear backward reads next (train_to_bf16_pair), written
// from the registers: plain = bf16(dinp), scaled = bf16(dinp · row_scale[n]); plain nullptr: none.
struct Bf16Pair {
    uint16_t *plain = nullptr, *scaled = nullptr;
    const float* row_scale = nullptr;
};

template <int kVec>
__global__ void __launch_bounds__(kThreads)
    rmsnorm_backward_vec_kernel(float* dinp, float* dweight, const float* dout, const float* inp,
                                const float* weight, const float* rstd, int64_t N, int64_t C,
                                Bf16Pair pair) {
    extern __shared__ float colsum[];  // [warps][C]
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int warps = static_cast<int>(blockDim.x >> 5);
    const int64_t n0 = blockIdx.x * kNormSliceRows, n1 = min(N, n0 + kNormSliceRows);
    float4 w[kVec], acc[kVec];
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
        const int64_t c = (static_cast<int64_t>(j) * 32 + lane) * 4;
        w[j] = weight && c < C ? *reinterpret_cast<const float4*>(weight + c)
                               : make_float4(1.0f, 1.0f, 1.0f, 1.0f);
        acc[j] = make_float4(0, 0, 0, 0);
    }
    for (int64_t n = n0 + warp; n < n1; n += warps) {
        float4 x[kVec], dy[kVec];
        load_row<kVec>(x, inp + n * C, lane, C);
        load_row<kVec>(dy, dout + n * C, lane, C);
        double dot = 0.0;
#pragma unroll
        for (int j = 0; j < kVec; ++j)
            dot += static_cast<double>(w[j].x) * dy[j].x * x[j].x +
                   static_cast<double>(w[j].y) * dy[j].y * x[j].y +
                   static_cast<double>(w[j].z) * dy[j].z * x[j].z +
                   static_cast<double>(w[j].w) * dy[j].w * x[j].w;
        dot = warp_sum(dot);
        const float r = rstd[n];
        const float k = static_cast<float>(dot / static_cast<double>(C)) * r * r;
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
            const int64_t c = (static_cast<int64_t>(j) * 32 + lane) * 4;
            if (c >= C) continue;
            float4* px = reinterpret_cast<float4*>(dinp + n * C + c);
            float4 d = *px;
            d.x += r * (w[j].x * dy[j].x - x[j].x * k);
            d.y += r * (w[j].y * dy[j].y - x[j].y * k);
            d.z += r * (w[j].z * dy[j].z - x[j].z * k);
            d.w += r * (w[j].w * dy[j].w - x[j].w * k);
            *px = d;
            if (pair.plain) {
                const float rs = pair.row_scale[n];
                store_bf16x4(pair.plain + n * C + c, d);
                store_bf16x4(pair.scaled + n * C + c,
                             make_float4(d.x * rs, d.y * rs, d.z * rs, d.w * rs));
            }
            acc[j].x += dy[j].x * x[j].x * r, acc[j].y += dy[j].y * x[j].y * r;
            acc[j].z += dy[j].z * x[j].z * r, acc[j].w += dy[j].w * x[j].w * r;
        }
    }
    if (!dweight) return;  // (the whole block)
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
        const int64_t c = (static_cast<int64_t>(j) * 32 + lane) * 4;
        if (c < C) *reinterpret_cast<float4*>(colsum + warp * C + c) = acc[j];
    }
    __syncthreads();
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float t = 0.0f;
        for (int i = 0; i < warps; ++i) t += colsum[i * C + c];
        atomicAdd(dweight + c, t);
    }
}

// kVec for rows of C (0: the row does not fit the register kernels, or is not float4-aligned).
int row_vec(int64_t C, std::initializer_list<const void*> ptrs) {
    if (C % 4 != 0 || C > 1024) return 0;
    for (const void* p : ptrs)
        if (reinterpret_cast<uintptr_t>(p) & 15u) return 0;
    return C <= 256 ? 2 : C <= 512 ? 4 : 8;
}

// Column sums dst[c] += Σ_n value(n, c): blocks of 32 columns × 8 row lanes over a slice of rows,
// a shared-memory sum over the 8 lanes, one float atomic per column and block.
constexpr int64_t kColumnSliceRows = 256;

template <typename Value>
__global__ void column_sum_kernel(float* dst, Value value, int64_t N, int64_t C) {
    __shared__ float partial[8][33];
    const int64_t c = blockIdx.x * 32 + threadIdx.x;
    const int64_t n0 = blockIdx.y * kColumnSliceRows;
    const int64_t n1 = min(N, n0 + kColumnSliceRows);
    float sum = 0.0f;
    if (c < C)
        for (int64_t n = n0 + threadIdx.y; n < n1; n += 8) sum += value(n, c);
    partial[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float total = 0.0f;
        for (int j = 0; j < 8; ++j) total += partial[j][threadIdx.x];
        atomicAdd(dst + c, total);
    }
}

template <typename Value>
void column_sum(float* dst, Value value, int64_t N, int64_t C, const Stream& stream,
                const char* what) {
    const dim3 grid(static_cast<unsigned>((C + 31) / 32),
                    static_cast<unsigned>((N + kColumnSliceRows - 1) / kColumnSliceRows));
    column_sum_kernel<<<grid, dim3(32, 8), 0, raw(stream)>>>(dst, value, N, C);
    check_launch(what);
}

struct RmsWeightGrad {
    const float *dout, *inp, *rstd;
    int64_t C;
    __device__ float operator()(int64_t n, int64_t c) const {
        return dout[n * C + c] * inp[n * C + c] * rstd[n];
    }
};
struct Plain {
    const float* src;
    int64_t C;
    __device__ float operator()(int64_t n, int64_t c) const { return src[n * C + c]; }
};

// ---- L2 norm ----

__global__ void l2norm_forward_kernel(float* out, float* norm, const float* inp, int64_t N,
                                      int64_t C) {
    BITTTT_WARP_ROW(n, N)
    const float* x = inp + n * C;
    double ss = 0.0;
    for (int64_t c = lane; c < C; c += 32) ss += static_cast<double>(x[c]) * x[c];
    ss = warp_sum(ss);
    const float nrm = static_cast<float>(sqrt(ss));
    const float inv = 1.0f / (nrm + 1e-6f);
    for (int64_t c = lane; c < C; c += 32) out[n * C + c] = x[c] * inv;
    if (lane == 0) norm[n] = nrm;
}

__global__ void l2norm_backward_kernel(float* dinp, const float* dout, const float* inp,
                                       const float* norm, int64_t N, int64_t C) {
    BITTTT_WARP_ROW(n, N)
    const float* x = inp + n * C;
    const float* dy = dout + n * C;
    const float nrm = norm[n], d = nrm + 1e-6f;
    double xdy = 0.0;
    for (int64_t c = lane; c < C; c += 32) xdy += static_cast<double>(x[c]) * dy[c];
    xdy = warp_sum(xdy);
    const float k = nrm > 0.0f ? static_cast<float>(xdy) / (nrm * d * d) : 0.0f;
    for (int64_t c = lane; c < C; c += 32) dinp[n * C + c] += dy[c] / d - x[c] * k;
}

// ---- quantization ----

__global__ void act_quant_kernel(float* out, uint16_t* codes, int8_t* codes8, float* scale,
                                 const float* inp, int64_t N, int64_t C, int act_bits) {
    BITTTT_WARP_ROW(n, N)
    const float* x = inp + n * C;
    if (act_bits == 0) {
        for (int64_t c = lane; c < C; c += 32) {
            if (out) out[n * C + c] = x[c];
            if (codes) codes[n * C + c] = bf16_bits(x[c]);
        }
        if (scale && lane == 0) scale[n] = 1.0f;
        return;
    }
    float absmax = 0.0f;
    for (int64_t c = lane; c < C; c += 32) absmax = fmaxf(absmax, fabsf(x[c]));
    absmax = warp_max(absmax);
    const float gamma = fmaxf(absmax, 1e-5f);
    const float s = __fdiv_rn(127.0f, gamma), back = __fdiv_rn(gamma, 127.0f);
    for (int64_t c = lane; c < C; c += 32) {
        const float code = code_of(x[c], s);
        if (out) out[n * C + c] = __fmul_rn(code, back);
        if (codes) codes[n * C + c] = bf16_bits(code);
        if (codes8) codes8[n * C + c] = static_cast<int8_t>(code);
    }
    if (scale && lane == 0) scale[n] = back;
}

// β = mean|w| per tensor in two deterministic stages (fixed orders, no atomics): block (x, i)
// sums |w| over chunk x of tensor i into partial[i · chunks + x] (zero past the tensor's end),
// then one block per tensor adds its chunks in order. Every SM streams a share of all tensors
// (one block per tensor left most SMs idle behind the largest tensor).
constexpr int64_t kBetaChunk = 65536;

__global__ void weight_abs_partial_kernel(double* partial, const float* w, const int64_t* offsets,
                                          const int64_t* sizes) {
    const int i = blockIdx.y;
    const int64_t start = blockIdx.x * kBetaChunk, n = sizes[i];
    const int64_t end = min(n, start + kBetaChunk);
    const float* p = w + offsets[i];
    double sum = 0.0;
    for (int64_t j = start + threadIdx.x; j < end; j += blockDim.x)
        sum += fabs(static_cast<double>(p[j]));
    sum = block_reduce<double, false>(sum);
    if (threadIdx.x == 0) partial[static_cast<int64_t>(i) * gridDim.x + blockIdx.x] = sum;
}

__global__ void weight_beta_kernel(float* beta, const double* partial, int64_t chunks,
                                   const int64_t* sizes, bool quantize) {
    const int i = blockIdx.x;
    const int64_t n = sizes[i];
    double sum = 0.0;
    for (int64_t x = threadIdx.x; x < chunks; x += blockDim.x) sum += partial[i * chunks + x];
    sum = block_reduce<double, false>(sum);
    if (threadIdx.x == 0)
        beta[i] = !quantize ? 1.0f
                  : n > 0   ? static_cast<float>(sum / static_cast<double>(n))
                            : 0.0f;
}

__global__ void weight_quant_kernel(float* out, uint16_t* codes, int8_t* codes8, const float* beta,
                                    const float* w, const int64_t* offsets, const int64_t* sizes,
                                    int64_t out_base, bool quantize) {
    const int i = blockIdx.y;
    const int64_t off = offsets[i], n = sizes[i], dst = off - out_base;
    const float b = beta[i], denom = b + 1e-8f;
    for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < n;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const float x = w[off + j];
        const float code = quantize ? fminf(fmaxf(rintf(__fdiv_rn(x, denom)), -1.0f), 1.0f) : x;
        if (out) out[dst + j] = quantize ? __fmul_rn(code, b) : x;
        if (codes) codes[dst + j] = bf16_bits(code);
        if (codes8) codes8[dst + j] = static_cast<int8_t>(code);  // (quantize only: ternary)
    }
}

// ---- pointwise ----

__global__ void swiglu_forward_kernel(float* out, const float* gate, const float* up, int64_t n) {
    BITTTT_GRID_STRIDE(i, n) out[i] = gate[i] * sigmoidf(gate[i]) * up[i];
}

__global__ void swiglu_backward_kernel(float* dgate, float* dup, const float* dout,
                                       const float* gate, const float* up, int64_t n) {
    BITTTT_GRID_STRIDE(i, n) {
        const float g = gate[i], s = sigmoidf(g);
        dgate[i] += dout[i] * up[i] * s * (1.0f + g * (1.0f - s));
        dup[i] += dout[i] * g * s;
    }
}

// The MLP's SwiGLU input of column c of row n: the product of codes times its row scale and β
// (row_scale nullptr: the value is already final). Forward and backward both rebuild it so.
__device__ float mlp_input(const float* p, int64_t i, float r, float beta, bool i32) {
    return raw_at(p, i, i32) * r * beta;
}

// One block per row: x = silu(g)·u is computed once into shared memory (the row's absmax needs
// all of it before any code can be written), so gate and up are read from memory once.
// kCached false (rows longer than the shared memory allows): x is recomputed from gate and up.
template <bool kCached>
__global__ void swiglu_quant_kernel(const float* gate, const float* up, const float* row_scale,
                                    const float* beta_gate, const float* beta_up, float* out,
                                    uint16_t* codes, int8_t* codes8, float* scale, int64_t M,
                                    int act_bits, bool raw_i32) {
    extern __shared__ float swi[];
    const int64_t n = blockIdx.x;
    const float* g = gate + n * M;
    const float* u = up + n * M;
    const float r = row_scale ? row_scale[n] : 1.0f;
    const float sg = row_scale ? beta_gate[0] : 1.0f, su = row_scale ? beta_up[0] : 1.0f;
    auto value = [&](int64_t c) {
        const float gv = mlp_input(g, c, r, sg, raw_i32), uv = mlp_input(u, c, r, su, raw_i32);
        return gv * sigmoidf(gv) * uv;
    };
    float absmax = 0.0f;
    for (int64_t c = threadIdx.x; c < M; c += blockDim.x) {
        const float x = value(c);
        if (kCached) swi[c] = x;
        absmax = fmaxf(absmax, fabsf(x));
    }
    if (act_bits == 0) {
        for (int64_t c = threadIdx.x; c < M; c += blockDim.x) {
            const float x = kCached ? swi[c] : value(c);
            if (out) out[n * M + c] = x;
            if (codes) codes[n * M + c] = bf16_bits(x);
        }
        if (scale && threadIdx.x == 0) scale[n] = 1.0f;
        return;
    }
    absmax = block_reduce<float, true>(absmax);  // (its __syncthreads publish swi too)
    const float gamma = fmaxf(absmax, 1e-5f);
    const float s = __fdiv_rn(127.0f, gamma), back = __fdiv_rn(gamma, 127.0f);
    for (int64_t c = threadIdx.x; c < M; c += blockDim.x) {
        const float x = kCached ? swi[c] : value(c);
        const float code = code_of(x, s);
        if (out) out[n * M + c] = __fmul_rn(code, back);
        if (codes) codes[n * M + c] = bf16_bits(code);
        if (codes8) codes8[n * M + c] = static_cast<int8_t>(code);
    }
    if (scale && threadIdx.x == 0) scale[n] = back;
}

// swiglu_quant_kernel<true> for the bf16 products' codes (act_bits > 0, no fp32 output) with
// 16-byte loads and 8-byte code stores (M % 4 == 0, aligned rows): the same values.
__global__ void swiglu_quant_vec_kernel(const float* gate, const float* up, const float* row_scale,
                                        const float* beta_gate, const float* beta_up,
                                        uint16_t* codes, int8_t* codes8, float* scale, int64_t M,
                                        bool raw_i32) {
    extern __shared__ float4 swi4[];
    const int64_t n = blockIdx.x, M4 = M / 4;
    const float* g = gate + n * M;
    const float* u = up + n * M;
    const float r = row_scale ? row_scale[n] : 1.0f;
    const float sg = row_scale ? beta_gate[0] : 1.0f, su = row_scale ? beta_up[0] : 1.0f;
    auto value = [&](float gr, float ur) {
        const float gv = gr * r * sg, uv = ur * r * su;  // mlp_input's product
        return gv * sigmoidf(gv) * uv;
    };
    float absmax = 0.0f;
    for (int64_t c = threadIdx.x; c < M4; c += blockDim.x) {
        const float4 a = raw4(g + 4 * c, raw_i32), b = raw4(u + 4 * c, raw_i32);
        const float4 x =
            make_float4(value(a.x, b.x), value(a.y, b.y), value(a.z, b.z), value(a.w, b.w));
        swi4[c] = x;
        absmax = fmaxf(absmax, fmaxf(fmaxf(fabsf(x.x), fabsf(x.y)), fmaxf(fabsf(x.z), fabsf(x.w))));
    }
    absmax = block_reduce<float, true>(absmax);
    const float gamma = fmaxf(absmax, 1e-5f);
    const float s = __fdiv_rn(127.0f, gamma);
    for (int64_t c = threadIdx.x; c < M4; c += blockDim.x) {
        const float4 x = swi4[c];
        const float4 q =
            make_float4(code_of(x.x, s), code_of(x.y, s), code_of(x.z, s), code_of(x.w, s));
        if (codes) store_bf16x4(codes + n * M + 4 * c, q);
        if (codes8) reinterpret_cast<uint32_t*>(codes8 + n * M)[c] = pack_i8x4(q.x, q.y, q.z, q.w);
    }
    if (scale && threadIdx.x == 0) scale[n] = __fdiv_rn(gamma, 127.0f);
}

// ---- row-wise elementwise ops ----
// A 2D grid: y over rows (strided past 65535), x over the columns of a row in runs of V
// consecutive elements (V = 4: 16-byte loads, taken when C % 4 == 0 and every pointer is
// aligned). No 64-bit division per element: the row index comes from the grid.

template <int V>
__device__ void load_v(const float* p, float (&x)[V]) {
    if constexpr (V == 4) {
        const float4 t = *reinterpret_cast<const float4*>(p);
        x[0] = t.x, x[1] = t.y, x[2] = t.z, x[3] = t.w;
    } else {
#pragma unroll
        for (int j = 0; j < V; ++j) x[j] = p[j];
    }
}
// load_v of a product of codes (raw_at: fp32, or int32 converted).
template <int V>
__device__ void load_raw_v(const float* p, float (&x)[V], bool i32) {
    if constexpr (V == 4) {
        const float4 t = raw4(p, i32);
        x[0] = t.x, x[1] = t.y, x[2] = t.z, x[3] = t.w;
    } else {
#pragma unroll
        for (int j = 0; j < V; ++j) x[j] = raw_at(p, j, i32);
    }
}
// V bf16 values widened to fp32 (V = 4: one 8-byte load).
template <int V>
__device__ void load_bf16_v(const uint16_t* p, float (&x)[V]) {
    auto widen = [](uint32_t b) { return __uint_as_float(b << 16); };
    if constexpr (V == 4) {
        const uint2 t = *reinterpret_cast<const uint2*>(p);
        x[0] = widen(t.x & 0xffffu), x[1] = widen(t.x >> 16);
        x[2] = widen(t.y & 0xffffu), x[3] = widen(t.y >> 16);
    } else {
#pragma unroll
        for (int j = 0; j < V; ++j) x[j] = widen(p[j]);
    }
}
template <int V>
__device__ void store_v(float* p, const float (&x)[V]) {
    if constexpr (V == 4) {
        *reinterpret_cast<float4*>(p) = make_float4(x[0], x[1], x[2], x[3]);
    } else {
#pragma unroll
        for (int j = 0; j < V; ++j) p[j] = x[j];
    }
}
template <int V>
__device__ void store_bf16_v(uint16_t* p, const float (&x)[V]) {
    if constexpr (V == 4) {
        const uint32_t lo = bf16_bits(x[0]) | (static_cast<uint32_t>(bf16_bits(x[1])) << 16);
        const uint32_t hi = bf16_bits(x[2]) | (static_cast<uint32_t>(bf16_bits(x[3])) << 16);
        *reinterpret_cast<uint2*>(p) = make_uint2(lo, hi);
    } else {
#pragma unroll
        for (int j = 0; j < V; ++j) p[j] = bf16_bits(x[j]);
    }
}

template <int V, typename Op>
__global__ void rows_kernel(Op op, int64_t N, int64_t C) {
    const int64_t c = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V;
    if (c >= C) return;
    for (int64_t n = blockIdx.y; n < N; n += gridDim.y) op.template apply<V>(n, n * C + c);
}

// out = a + b · row_scale[n] · scalar[0] (b_i32: b holds int32, an int8 product)
struct ResidualScaledOp {
    float* out;
    const float *a, *b, *row_scale, *scalar;
    bool b_i32;
    template <int V>
    __device__ void apply(int64_t n, int64_t i) const {
        const float s = scalar ? scalar[0] : 1.0f, r = row_scale ? row_scale[n] : 1.0f;
        float x[V], y[V];
        load_v<V>(a + i, x), load_raw_v<V>(b + i, y, b_i32);
#pragma unroll
        for (int j = 0; j < V; ++j) x[j] = x[j] + y[j] * r * s;
        store_v<V>(out + i, x);
    }
};

// x *= row_scale[n] · scalar[0] (i32: x holds int32 on entry, an int8 product, and floats after)
struct ScaleRowsOp {
    float* x;
    const float *row_scale, *scalar;
    bool i32;
    template <int V>
    __device__ void apply(int64_t n, int64_t i) const {
        const float s = scalar ? scalar[0] : 1.0f, r = row_scale ? row_scale[n] : 1.0f;
        float v[V];
        load_raw_v<V>(x + i, v, i32);
#pragma unroll
        for (int j = 0; j < V; ++j) v[j] = v[j] * r * s;
        store_v<V>(x + i, v);
    }
};

// out += bias[c]
struct AddBiasOp {
    float* out;
    const float* bias;
    int64_t C;
    template <int V>
    __device__ void apply(int64_t n, int64_t i) const {
        float v[V], b[V];
        load_v<V>(out + i, v), load_v<V>(bias + (i - n * C), b);
#pragma unroll
        for (int j = 0; j < V; ++j) v[j] += b[j];
        store_v<V>(out + i, v);
    }
};

// plain = bf16(x), scaled = bf16(x · row_scale[n]) (either may be nullptr; row_scale nullptr: 1)
struct ToBf16Op {
    uint16_t *plain, *scaled;
    const float *in, *row_scale;
    template <int V>
    __device__ void apply(int64_t n, int64_t i) const {
        float x[V];
        load_v<V>(in + i, x);
        if (plain) store_bf16_v<V>(plain + i, x);
        if (scaled) {
            const float r = row_scale ? row_scale[n] : 1.0f;
#pragma unroll
            for (int j = 0; j < V; ++j) x[j] = x[j] * r;
            store_bf16_v<V>(scaled + i, x);
        }
    }
};

// The SwiGLU backward in bf16, plain and times the row scale r (the γ/127 of the products'
// input), from the raw products of codes when beta_gate is given (gate = raw · r · β_gate, as
// swiglu_quant_kernel rebuilds it), else from the final gate and up.
struct SwigluBackwardBf16Op {
    uint16_t *dgate, *dgate_scaled, *dup, *dup_scaled;
    const float *row_scale, *beta_gate, *beta_up, *dout, *gate, *up;
    bool raw_i32;            // gate and up hold int32 (int8 products)
    const uint16_t* dout16;  // dout in bf16 instead (non-null)
    template <int V>
    __device__ void apply(int64_t n, int64_t i) const {
        const float r = row_scale[n];
        const float pr = beta_gate ? r : 1.0f, sg = beta_gate ? beta_gate[0] : 1.0f,
                    su = beta_gate ? beta_up[0] : 1.0f;
        float d[V], g[V], u[V], dg[V], du[V];
        if (dout16)
            load_bf16_v<V>(dout16 + i, d);
        else
            load_v<V>(dout + i, d);
        load_raw_v<V>(gate + i, g, raw_i32);
        load_raw_v<V>(up + i, u, raw_i32);
#pragma unroll
        for (int j = 0; j < V; ++j) {
            const float gv = g[j] * pr * sg, uv = u[j] * pr * su, s = sigmoidf(gv);
            dg[j] = d[j] * uv * s * (1.0f + gv * (1.0f - s));
            du[j] = d[j] * gv * s;
        }
        store_bf16_v<V>(dgate + i, dg), store_bf16_v<V>(dup + i, du);
#pragma unroll
        for (int j = 0; j < V; ++j) dg[j] *= r, du[j] *= r;
        store_bf16_v<V>(dgate_scaled + i, dg), store_bf16_v<V>(dup_scaled + i, du);
    }
};

// The delta rule's ttt.lr projection (H outputs of a D-wide row; H is the head count, 1..16):
// a warp per row, per head a dot product of the row with W[h, :] (fp32 per lane, then the warp
// sum), plus the bias; then η = scale · σ(logit).
__global__ void lr_gate_forward_kernel(float* logit, float* eta, const float* x, const float* w,
                                       const float* bias, int64_t N, int64_t D, int64_t H,
                                       float scale) {
    BITTTT_WARP_ROW(n, N)
    const float* row = x + n * D;
    for (int64_t h = 0; h < H; ++h) {
        const float* wr = w + h * D;
        float acc = 0.0f;
        for (int64_t c = lane; c < D; c += 32) acc = fmaf(row[c], wr[c], acc);
        acc = warp_sum(acc);
        if (lane == 0) {
            const float z = acc + bias[h];
            logit[n * H + h] = z;
            eta[n * H + h] = scale * sigmoidf(z);
        }
    }
}

// dx[n, c] = Σ_h dlogit[n, h] · W[h, c] (written, not accumulated)
struct LrGateDxOp {
    float* dx;
    const float *dlogit, *w;
    int64_t D, H;
    template <int V>
    __device__ void apply(int64_t n, int64_t i) const {
        const int64_t c = i - n * D;
        float acc[V] = {};
        for (int64_t h = 0; h < H; ++h) {
            const float g = dlogit[n * H + h];
            float wv[V];
            load_v<V>(w + h * D + c, wv);
#pragma unroll
            for (int j = 0; j < V; ++j) acc[j] = fmaf(g, wv[j], acc[j]);
        }
        store_v<V>(dx + i, acc);
    }
};

bool aligned16(const void* p) {
    return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// Launches rows_kernel over N rows of C; vectorized when C % 4 == 0 and all of `ptrs` (every
// array the op touches, nullptr allowed) are 16-byte aligned.
template <typename Op>
void launch_rows(const Op& op, int64_t N, int64_t C, std::initializer_list<const void*> ptrs,
                 const Stream& stream, const char* what) {
    if (N == 0 || C == 0) return;
    bool vec = C % 4 == 0;
    for (const void* p : ptrs) vec = vec && aligned16(p);
    const int v = vec ? 4 : 1;
    const int64_t units = (C + v - 1) / v;  // runs of v per row
    const int threads = static_cast<int>(std::min<int64_t>(256, (units + 31) / 32 * 32));
    const dim3 grid(static_cast<unsigned>((units + threads - 1) / threads),
                    static_cast<unsigned>(std::min<int64_t>(N, 65535)));
    if (vec)
        rows_kernel<4><<<grid, threads, 0, raw(stream)>>>(op, N, C);
    else
        rows_kernel<1><<<grid, threads, 0, raw(stream)>>>(op, N, C);
    check_launch(what);
}

__global__ void sigmoid_scale_forward_kernel(float* out, const float* inp, int64_t n, float scale) {
    BITTTT_GRID_STRIDE(i, n) out[i] = scale * sigmoidf(inp[i]);
}

__global__ void sigmoid_scale_backward_kernel(float* dinp, const float* dout, const float* inp,
                                              int64_t n, float scale) {
    BITTTT_GRID_STRIDE(i, n) {
        const float s = sigmoidf(inp[i]);
        dinp[i] += dout[i] * scale * s * (1.0f - s);
    }
}

__global__ void residual_kernel(float* out, const float* a, const float* b, int64_t n) {
    BITTTT_GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}

// ---- cross-entropy ----

constexpr int kCeThreads = 512;

__global__ void crossentropy_kernel(float* losses, float* dlogits_f32, uint16_t* dlogits_bf16,
                                    const float* logits, const int32_t* targets, int64_t V,
                                    float dloss) {
    const int64_t n = blockIdx.x;
    const float* z = logits + n * V;
    // One pass for the max and the sum (online softmax): each thread keeps its own max and the
    // sum of exp(z − its max), rescaled whenever the max grows and once more to the row's max.
    float local_max = -INFINITY;
    double local_sum = 0.0;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
        const float zv = z[v];
        if (zv > local_max) {
            local_sum = local_sum * exp(static_cast<double>(local_max) - zv) + 1.0;
            local_max = zv;
        } else {
            local_sum += expf(zv - local_max);
        }
    }
    const float mx = block_reduce<float, true>(local_max);
    const double sum = block_reduce<double, false>(
        local_max == -INFINITY ? 0.0 : local_sum * exp(static_cast<double>(local_max) - mx));
    const int64_t t = targets[n];
    const float target_shifted = z[t] - mx;  // read before dlogits may overwrite it
    const float inv = static_cast<float>(1.0 / sum);
    __syncthreads();
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
        const float g = expf(z[v] - mx) * inv * dloss - (v == t ? dloss : 0.0f);
        if (dlogits_f32) dlogits_f32[n * V + v] = g;
        if (dlogits_bf16) dlogits_bf16[n * V + v] = bf16_bits(g);
    }
    if (threadIdx.x == 0) losses[n] = static_cast<float>(log(sum)) - target_shifted;
}

// The same for rows of V <= kCeThreads · kPer (vocabularies up to 16384): the row is read once
// into registers, max and Σ exp(z − max) (double) from there, then the gradient. The loss and
// gradient formulas are crossentropy_kernel's; the sum of exponentials is taken at the row's max
// directly (no running rescale).
constexpr int kCePer = 32;

__global__ void __launch_bounds__(kCeThreads, 1)
    crossentropy_reg_kernel(float* losses, float* dlogits_f32, uint16_t* dlogits_bf16,
                            const float* logits, const int32_t* targets, int64_t V, float dloss) {
    const int64_t n = blockIdx.x;
    const float* z = logits + n * V;
    float x[kCePer];
    float local_max = -INFINITY;
#pragma unroll
    for (int k = 0; k < kCePer; ++k) {
        const int64_t v = threadIdx.x + static_cast<int64_t>(k) * kCeThreads;
        x[k] = v < V ? z[v] : -INFINITY;
        local_max = fmaxf(local_max, x[k]);
    }
    const float mx = block_reduce<float, true>(local_max);
    double local_sum = 0.0;
#pragma unroll
    for (int k = 0; k < kCePer; ++k)
        if (threadIdx.x + static_cast<int64_t>(k) * kCeThreads < V) local_sum += expf(x[k] - mx);
    const double sum = block_reduce<double, false>(local_sum);
    const int64_t t = targets[n];
    const float target_shifted = z[t] - mx;  // read before dlogits may overwrite it
    const float inv = static_cast<float>(1.0 / sum);
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kCePer; ++k) {
        const int64_t v = threadIdx.x + static_cast<int64_t>(k) * kCeThreads;
        if (v >= V) break;
        const float g = expf(x[k] - mx) * inv * dloss - (v == t ? dloss : 0.0f);
        if (dlogits_f32) dlogits_f32[n * V + v] = g;
        if (dlogits_bf16) dlogits_bf16[n * V + v] = bf16_bits(g);
    }
    if (threadIdx.x == 0) losses[n] = static_cast<float>(log(sum)) - target_shifted;
}

__global__ void mean_kernel(double* out, const float* x, int64_t n) {
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += x[i];
    s = block_reduce<double, false>(s);
    if (threadIdx.x == 0) out[0] = s / static_cast<double>(n);
}

// ---- gradient norm and AdamW ----

constexpr int64_t kNormChunk = 8192;  // elements per partial sum

// A gradient element: fp32, or bf16 bits (--gpu-grad-precision bf16).
__device__ float load_grad(const float* g, int64_t i) {
    return g[i];
}
__device__ float load_grad(const uint16_t* g, int64_t i) {
    return __uint_as_float(static_cast<uint32_t>(g[i]) << 16);
}

template <typename Grad>
__global__ void norm_partial_kernel(double* partial, const Grad* g, int64_t n) {
    const int64_t start = blockIdx.x * kNormChunk, end = min(n, start + kNormChunk);
    double s = 0.0;
    for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) {
        const double x = load_grad(g, i);
        s += x * x;
    }
    s = block_reduce<double, false>(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void norm_final_kernel(double* out, const double* partial, int64_t count) {
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
    s = block_reduce<double, false>(s);
    if (threadIdx.x == 0) out[0] = sqrt(s);
}

// Stochastic rounding of x to bf16 (bits: 16 random bits): adds them below the bf16 mantissa and
// truncates, so x rounds up with probability (x − lower) / ulp and E[result] = x. A moment updated
// in small steps (v's (1 − β2) g²) then keeps its expected value, where round-to-nearest would
// drop every step below half an ulp. Inf and NaN round to nearest.
__device__ uint16_t bf16_stochastic(float x, uint32_t bits) {
    const uint32_t u = __float_as_uint(x);
    if ((u & 0x7f800000u) == 0x7f800000u) return bf16_bits(x);
    return static_cast<uint16_t>((u + (bits & 0xffffu)) >> 16);
}

// A counter-based hash (splitmix64's finalizer): independent bits per (element, step).
__device__ uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

__device__ float load_moment(const float* p, int64_t i) {
    return p[i];
}
__device__ float load_moment(const uint16_t* p, int64_t i) {
    return __uint_as_float(static_cast<uint32_t>(p[i]) << 16);
}
__device__ void store_moments(float* m, float* v, int64_t i, float mi, float vi, uint64_t) {
    m[i] = mi;
    v[i] = vi;
}
__device__ void store_moments(uint16_t* m, uint16_t* v, int64_t i, float mi, float vi,
                              uint64_t seed) {
    const uint64_t r = mix64(seed + static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ull);
    m[i] = bf16_stochastic(mi, static_cast<uint32_t>(r));
    v[i] = bf16_stochastic(vi, static_cast<uint32_t>(r >> 32));
}

// Moment is float or uint16_t (bf16 bits): the arithmetic is fp32 either way, and the parameter
// update uses the fp32 moments of this step, before they are rounded for storage.
// Grad is float or uint16_t (bf16 bits). Element i decays when bit j = i >> decay_shift of
// decay_bits is set (decay_shift 4: one bit per 16 elements, the padding of ParamLayout).
template <typename Moment, typename Grad>
__global__ void adamw_kernel(float* params, const Grad* grads, Moment* m, Moment* v,
                             const uint32_t* decay_bits, int64_t n, float lr, float beta1,
                             float beta2, float eps, float weight_decay, float bc1, float bc2,
                             const double* norm, const double* loss, float grad_clip, uint64_t seed,
                             int decay_shift) {
    const double nrm = *norm;
    if (!isfinite(nrm) || (loss && !isfinite(*loss))) return;
    const float scale = nrm > grad_clip ? static_cast<float>(grad_clip / nrm) : 1.0f;
    BITTTT_GRID_STRIDE(i, n) {
        const float g = load_grad(grads, i) * scale;
        const float mi = beta1 * load_moment(m, i) + (1.0f - beta1) * g;
        const float vi = beta2 * load_moment(v, i) + (1.0f - beta2) * g * g;
        store_moments(m, v, i, mi, vi, seed);
        const float mhat = mi / bc1, vhat = vi / bc2;
        const int64_t j = i >> decay_shift;
        const float wd = (decay_bits[j >> 5] >> (j & 31)) & 1u ? weight_decay : 0.0f;
        params[i] -= lr * (mhat / (sqrtf(vhat) + eps) + wd * params[i]);
    }
}

}  // namespace

// ---- launchers ----

void train_embedding_forward(float* out, const int32_t* tokens, const float* wte, int64_t N,
                             int64_t C, const Stream& stream) {
    embedding_forward_kernel<<<elem_blocks(N * C), kThreads, 0, raw(stream)>>>(out, tokens, wte, N,
                                                                               C);
    check_launch("train_embedding_forward");
}

void train_embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int64_t N,
                              int64_t C, const Stream& stream) {
    embedding_backward_kernel<<<elem_blocks(N * C), kThreads, 0, raw(stream)>>>(dwte, dout, tokens,
                                                                                N, C);
    check_launch("train_embedding_backward");
}

void train_rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight,
                           int64_t N, int64_t C, float eps, const Stream& stream) {
    const dim3 g(static_cast<unsigned>(row_blocks(N))), t(kThreads);
    switch (row_vec(C, {out, inp, weight})) {
        case 2:
            rmsnorm_forward_vec_kernel<2>
                <<<g, t, 0, raw(stream)>>>(out, rstd, inp, weight, N, C, eps);
            break;
        case 4:
            rmsnorm_forward_vec_kernel<4>
                <<<g, t, 0, raw(stream)>>>(out, rstd, inp, weight, N, C, eps);
            break;
        case 8:
            rmsnorm_forward_vec_kernel<8>
                <<<g, t, 0, raw(stream)>>>(out, rstd, inp, weight, N, C, eps);
            break;
        default:
            rmsnorm_forward_kernel<<<g, t, 0, raw(stream)>>>(out, rstd, inp, weight, N, C, eps);
    }
    check_launch("train_rmsnorm_forward");
}

namespace {
void check_codes8(const int8_t* codes8, int act_bits, const char* what) {
    check(!codes8 || act_bits != 0, ErrorKind::kInvalidArgument,
          "CUDA: {}: int8 codes need quantized activations (act_bits 8)", what);
}
}  // namespace

void train_rmsnorm_quant_forward(float* rstd, uint16_t* codes, float* scale, const float* inp,
                                 const float* weight, int64_t N, int64_t C, float eps, int act_bits,
                                 const Stream& stream, int8_t* codes8) {
    check_codes8(codes8, act_bits, "train_rmsnorm_quant_forward");
    const dim3 g(static_cast<unsigned>(row_blocks(N))), t(kThreads);
    switch (row_vec(C, {codes, codes8, inp, weight})) {
        case 2:
            rmsnorm_quant_vec_kernel<2><<<g, t, 0, raw(stream)>>>(rstd, codes, codes8, scale, inp,
                                                                  weight, N, C, eps, act_bits);
            break;
        case 4:
            rmsnorm_quant_vec_kernel<4><<<g, t, 0, raw(stream)>>>(rstd, codes, codes8, scale, inp,
                                                                  weight, N, C, eps, act_bits);
            break;
        case 8:
            rmsnorm_quant_vec_kernel<8><<<g, t, 0, raw(stream)>>>(rstd, codes, codes8, scale, inp,
                                                                  weight, N, C, eps, act_bits);
            break;
        default:
            rmsnorm_quant_kernel<<<g, t, 0, raw(stream)>>>(rstd, codes, codes8, scale, inp, weight,
                                                           N, C, eps, act_bits);
    }
    check_launch("train_rmsnorm_quant_forward");
}

void train_residual_norm_quant(float* h, const float* a, const float* b, const float* row_scale,
                               const float* scalar, float* rstd, uint16_t* codes, float* scale,
                               const float* weight, int64_t N, int64_t C, float eps, int act_bits,
                               const Stream& stream, int8_t* codes8, bool b_i32) {
    check_codes8(codes8, act_bits, "train_residual_norm_quant");
    const dim3 g(static_cast<unsigned>(row_blocks(N))), t(kThreads);
    switch (row_vec(C, {h, a, b, codes, codes8, weight})) {
        case 2:
            residual_norm_quant_vec_kernel<2>
                <<<g, t, 0, raw(stream)>>>(h, a, b, row_scale, scalar, rstd, codes, codes8, scale,
                                           weight, N, C, eps, act_bits, b_i32);
            break;
        case 4:
            residual_norm_quant_vec_kernel<4>
                <<<g, t, 0, raw(stream)>>>(h, a, b, row_scale, scalar, rstd, codes, codes8, scale,
                                           weight, N, C, eps, act_bits, b_i32);
            break;
        case 8:
            residual_norm_quant_vec_kernel<8>
                <<<g, t, 0, raw(stream)>>>(h, a, b, row_scale, scalar, rstd, codes, codes8, scale,
                                           weight, N, C, eps, act_bits, b_i32);
            break;
        default:  // rows that do not fit the registers: the two ops
            train_residual_scaled_forward(h, a, b, row_scale, scalar, N, C, stream, b_i32);
            train_rmsnorm_quant_forward(rstd, codes, scale, h, weight, N, C, eps, act_bits, stream,
                                        codes8);
            return;
    }
    check_launch("train_residual_norm_quant");
}

namespace {
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int64_t N, int64_t C, Bf16Pair pair,
                      const Stream& stream) {
    const int vec = row_vec(C, {dinp, dout, inp, weight, pair.plain, pair.scaled});
    if (vec > 0 && N > 0) {
        const dim3 g(static_cast<unsigned>((N + kNormSliceRows - 1) / kNormSliceRows)), t(kThreads);
        const size_t smem = static_cast<size_t>(kThreads / 32 * C) * sizeof(float);  // <= 32 KiB
        if (vec == 2)
            rmsnorm_backward_vec_kernel<2>
                <<<g, t, smem, raw(stream)>>>(dinp, dweight, dout, inp, weight, rstd, N, C, pair);
        else if (vec == 4)
            rmsnorm_backward_vec_kernel<4>
                <<<g, t, smem, raw(stream)>>>(dinp, dweight, dout, inp, weight, rstd, N, C, pair);
        else
            rmsnorm_backward_vec_kernel<8>
                <<<g, t, smem, raw(stream)>>>(dinp, dweight, dout, inp, weight, rstd, N, C, pair);
        check_launch("train_rmsnorm_backward");
        return;
    }
    rmsnorm_backward_kernel<<<row_blocks(N), kThreads, 0, raw(stream)>>>(dinp, dout, inp, weight,
                                                                         rstd, N, C);
    check_launch("train_rmsnorm_backward");
    if (dweight)
        column_sum(dweight, RmsWeightGrad{dout, inp, rstd, C}, N, C, stream,
                   "train_rmsnorm_backward (dweight)");
    if (pair.plain) train_to_bf16_pair(pair.plain, pair.scaled, dinp, pair.row_scale, N, C, stream);
}
}  // namespace

void train_rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                            const float* weight, const float* rstd, int64_t N, int64_t C,
                            const Stream& stream) {
    rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, N, C, Bf16Pair{}, stream);
}

void train_rmsnorm_backward_pair(float* dinp, float* dweight, uint16_t* dinp_bf16,
                                 uint16_t* dinp_scaled_bf16, const float* row_scale,
                                 const float* dout, const float* inp, const float* weight,
                                 const float* rstd, int64_t N, int64_t C, const Stream& stream) {
    rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, N, C,
                     Bf16Pair{dinp_bf16, dinp_scaled_bf16, row_scale}, stream);
}

void train_l2norm_forward(float* out, float* norm, const float* inp, int64_t N, int64_t C,
                          const Stream& stream) {
    l2norm_forward_kernel<<<row_blocks(N), kThreads, 0, raw(stream)>>>(out, norm, inp, N, C);
    check_launch("train_l2norm_forward");
}

void train_l2norm_backward(float* dinp, const float* dout, const float* inp, const float* norm,
                           int64_t N, int64_t C, const Stream& stream) {
    l2norm_backward_kernel<<<row_blocks(N), kThreads, 0, raw(stream)>>>(dinp, dout, inp, norm, N,
                                                                        C);
    check_launch("train_l2norm_backward");
}

void train_act_quant_forward(float* out, uint16_t* codes, float* scale, const float* inp, int64_t N,
                             int64_t C, int act_bits, const Stream& stream, int8_t* codes8) {
    check_codes8(codes8, act_bits, "train_act_quant_forward");
    act_quant_kernel<<<row_blocks(N), kThreads, 0, raw(stream)>>>(out, codes, codes8, scale, inp, N,
                                                                  C, act_bits);
    check_launch("train_act_quant_forward");
}

int64_t train_weight_beta_partials(int count, int64_t max_size) {
    return std::max<int64_t>(1, count * ((max_size + kBetaChunk - 1) / kBetaChunk));
}

void train_weight_beta(float* beta, double* partial, const float* w, const int64_t* offsets,
                       const int64_t* sizes, int count, int64_t max_size, bool quantize,
                       const Stream& stream) {
    if (count == 0) return;
    const int64_t chunks = std::max<int64_t>(1, (max_size + kBetaChunk - 1) / kBetaChunk);
    weight_abs_partial_kernel<<<dim3(static_cast<unsigned>(chunks), static_cast<unsigned>(count)),
                                256, 0, raw(stream)>>>(partial, w, offsets, sizes);
    check_launch("train_weight_beta (partials)");
    weight_beta_kernel<<<count, 256, 0, raw(stream)>>>(beta, partial, chunks, sizes, quantize);
    check_launch("train_weight_beta");
}

void train_weight_quant_apply(float* out, uint16_t* codes, const float* beta, const float* w,
                              const int64_t* offsets, const int64_t* sizes, int count,
                              int64_t max_size, int64_t out_base, bool quantize,
                              const Stream& stream, int8_t* codes8) {
    check(!codes8 || quantize, ErrorKind::kInvalidArgument,
          "CUDA: train_weight_quant_apply: int8 codes need quantized (ternary) weights");
    if (count == 0) return;
    const dim3 grid(static_cast<unsigned>(std::min<int64_t>((max_size + 1023) / 1024, 1024)),
                    static_cast<unsigned>(count));
    weight_quant_kernel<<<grid, 1024, 0, raw(stream)>>>(out, codes, codes8, beta, w, offsets, sizes,
                                                        out_base, quantize);
    check_launch("train_weight_quant_apply");
}

void train_weight_quant_forward(float* out, uint16_t* codes, float* beta, double* partial,
                                const float* w, const int64_t* offsets, const int64_t* sizes,
                                int count, int64_t max_size, bool quantize, const Stream& stream) {
    train_weight_beta(beta, partial, w, offsets, sizes, count, max_size, quantize, stream);
    train_weight_quant_apply(out, codes, beta, w, offsets, sizes, count, max_size, 0, quantize,
                             stream);
}

void train_swiglu_forward(float* out, const float* gate, const float* up, int64_t n,
                          const Stream& stream) {
    swiglu_forward_kernel<<<elem_blocks(n), kThreads, 0, raw(stream)>>>(out, gate, up, n);
    check_launch("train_swiglu_forward");
}

void train_swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                           const float* up, int64_t n, const Stream& stream) {
    swiglu_backward_kernel<<<elem_blocks(n), kThreads, 0, raw(stream)>>>(dgate, dup, dout, gate, up,
                                                                         n);
    check_launch("train_swiglu_backward");
}

void train_swiglu_quant_forward(const float* gate, const float* up, const float* row_scale,
                                const float* beta_gate, const float* beta_up, float* out,
                                uint16_t* codes, float* scale, int64_t N, int64_t M, int act_bits,
                                const Stream& stream, int8_t* codes8, bool raw_i32) {
    check_codes8(codes8, act_bits, "train_swiglu_quant_forward");
    if (N == 0) return;
    // Rows of up to 12288 values keep x in shared memory (48 KiB, no opt-in needed).
    const size_t smem = static_cast<size_t>(M) * sizeof(float);
    const auto aligned_to = [](const void* p, uintptr_t bytes) {
        return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0;
    };
    const bool vec = M % 4 == 0 && (codes || codes8) && !out && act_bits != 0 && aligned16(gate) &&
                     aligned16(up) && aligned_to(codes, 8) && aligned_to(codes8, 4);
    if (vec && smem <= 48 * 1024)
        swiglu_quant_vec_kernel<<<static_cast<unsigned>(N), kThreads, smem, raw(stream)>>>(
            gate, up, row_scale, beta_gate, beta_up, codes, codes8, scale, M, raw_i32);
    else if (smem <= 48 * 1024)
        swiglu_quant_kernel<true><<<static_cast<unsigned>(N), kThreads, smem, raw(stream)>>>(
            gate, up, row_scale, beta_gate, beta_up, out, codes, codes8, scale, M, act_bits,
            raw_i32);
    else
        swiglu_quant_kernel<false><<<static_cast<unsigned>(N), kThreads, 0, raw(stream)>>>(
            gate, up, row_scale, beta_gate, beta_up, out, codes, codes8, scale, M, act_bits,
            raw_i32);
    check_launch("train_swiglu_quant_forward");
}

void train_swiglu_backward_bf16(uint16_t* dgate, uint16_t* dgate_scaled, uint16_t* dup,
                                uint16_t* dup_scaled, const float* row_scale,
                                const float* beta_gate, const float* beta_up, const float* dout,
                                const float* gate, const float* up, int64_t N, int64_t M,
                                const Stream& stream, bool raw_i32, const uint16_t* dout16) {
    // (dout16's 8-byte loads: aligned16 of the pointer is stricter than needed, and M % 4.)
    launch_rows(SwigluBackwardBf16Op{dgate, dgate_scaled, dup, dup_scaled, row_scale, beta_gate,
                                     beta_up, dout, gate, up, raw_i32, dout16},
                N, M,
                {dgate, dgate_scaled, dup, dup_scaled,
                 dout16 ? static_cast<const void*>(dout16) : dout, gate, up},
                stream, "train_swiglu_backward_bf16");
}

void train_sigmoid_scale_forward(float* out, const float* inp, int64_t n, float scale,
                                 const Stream& stream) {
    sigmoid_scale_forward_kernel<<<elem_blocks(n), kThreads, 0, raw(stream)>>>(out, inp, n, scale);
    check_launch("train_sigmoid_scale_forward");
}

void train_sigmoid_scale_backward(float* dinp, const float* dout, const float* inp, int64_t n,
                                  float scale, const Stream& stream) {
    sigmoid_scale_backward_kernel<<<elem_blocks(n), kThreads, 0, raw(stream)>>>(dinp, dout, inp, n,
                                                                                scale);
    check_launch("train_sigmoid_scale_backward");
}

void train_residual_forward(float* out, const float* a, const float* b, int64_t n,
                            const Stream& stream) {
    residual_kernel<<<elem_blocks(n), kThreads, 0, raw(stream)>>>(out, a, b, n);
    check_launch("train_residual_forward");
}

void train_residual_scaled_forward(float* out, const float* a, const float* b,
                                   const float* row_scale, const float* scalar, int64_t N,
                                   int64_t C, const Stream& stream, bool b_i32) {
    launch_rows(ResidualScaledOp{out, a, b, row_scale, scalar, b_i32}, N, C, {out, a, b}, stream,
                "train_residual_scaled_forward");
}

void train_scale_rows(float* x, const float* row_scale, const float* scalar, int64_t N, int64_t C,
                      const Stream& stream, bool i32) {
    launch_rows(ScaleRowsOp{x, row_scale, scalar, i32}, N, C, {x}, stream, "train_scale_rows");
}

void train_add_bias(float* out, const float* bias, int64_t N, int64_t C, const Stream& stream) {
    launch_rows(AddBiasOp{out, bias, C}, N, C, {out, bias}, stream, "train_add_bias");
}

void train_column_sum_accumulate(float* dst, const float* src, int64_t N, int64_t C,
                                 const Stream& stream) {
    column_sum(dst, Plain{src, C}, N, C, stream, "train_column_sum_accumulate");
}

void train_lr_gate_forward(float* logit, float* eta, const float* x, const float* w,
                           const float* bias, int64_t N, int64_t D, int64_t H, float scale,
                           const Stream& stream) {
    if (N == 0 || H == 0) return;
    lr_gate_forward_kernel<<<row_blocks(N), kThreads, 0, raw(stream)>>>(logit, eta, x, w, bias, N,
                                                                        D, H, scale);
    check_launch("train_lr_gate_forward");
}

void train_lr_gate_dx(float* dx, const float* dlogit, const float* w, int64_t N, int64_t D,
                      int64_t H, const Stream& stream) {
    launch_rows(LrGateDxOp{dx, dlogit, w, D, H}, N, D, {dx, w}, stream, "train_lr_gate_dx");
}

void train_to_bf16(uint16_t* out, const float* in, int64_t n, const Stream& stream) {
    launch_rows(ToBf16Op{out, nullptr, in, nullptr}, 1, n, {out, in}, stream, "train_to_bf16");
}

void train_to_bf16_rows(uint16_t* out, const float* in, const float* row_scale, int64_t N,
                        int64_t C, const Stream& stream) {
    launch_rows(ToBf16Op{nullptr, out, in, row_scale}, N, C, {out, in}, stream,
                "train_to_bf16_rows");
}

void train_to_bf16_pair(uint16_t* plain, uint16_t* scaled, const float* in, const float* row_scale,
                        int64_t N, int64_t C, const Stream& stream) {
    launch_rows(ToBf16Op{plain, scaled, in, row_scale}, N, C, {plain, scaled, in}, stream,
                "train_to_bf16_pair");
}

void train_crossentropy_fused(float* losses, float* dlogits_f32, uint16_t* dlogits_bf16,
                              const float* logits, const int32_t* targets, int64_t N, int64_t V,
                              float dloss, const Stream& stream) {
    if (N == 0) return;
    if (V <= static_cast<int64_t>(kCeThreads) * kCePer)
        crossentropy_reg_kernel<<<static_cast<unsigned>(N), kCeThreads, 0, raw(stream)>>>(
            losses, dlogits_f32, dlogits_bf16, logits, targets, V, dloss);
    else
        crossentropy_kernel<<<static_cast<unsigned>(N), kCeThreads, 0, raw(stream)>>>(
            losses, dlogits_f32, dlogits_bf16, logits, targets, V, dloss);
    check_launch("train_crossentropy_fused");
}

void train_mean(double* out, const float* x, int64_t n, const Stream& stream) {
    mean_kernel<<<1, 1024, 0, raw(stream)>>>(out, x, n);
    check_launch("train_mean");
}

int64_t train_norm_partials(int64_t n) {
    return std::max<int64_t>(1, (n + kNormChunk - 1) / kNormChunk);
}

namespace {
template <typename Grad>
void global_norm(double* out, double* partial, const Grad* g, int64_t n, const Stream& stream) {
    const int64_t blocks = train_norm_partials(n);
    norm_partial_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, raw(stream)>>>(partial, g, n);
    check_launch("train_global_norm (partials)");
    norm_final_kernel<<<1, 1024, 0, raw(stream)>>>(out, partial, blocks);
    check_launch("train_global_norm");
}

template <typename Moment, typename Grad>
void adamw(float* params, const Grad* grads, Moment* m, Moment* v, const uint32_t* decay_bits,
           int64_t n, float lr, float beta1, float beta2, float eps, float weight_decay, float bc1,
           float bc2, const double* norm, const double* loss, float grad_clip, uint64_t seed,
           const Stream& stream, int decay_shift, const char* what) {
    adamw_kernel<Moment, Grad><<<elem_blocks(n), kThreads, 0, raw(stream)>>>(
        params, grads, m, v, decay_bits, n, lr, beta1, beta2, eps, weight_decay, bc1, bc2, norm,
        loss, grad_clip, seed, decay_shift);
    check_launch(what);
}
}  // namespace

void train_global_norm(double* out, double* partial, const float* g, int64_t n,
                       const Stream& stream) {
    global_norm(out, partial, g, n, stream);
}
void train_global_norm(double* out, double* partial, const uint16_t* g, int64_t n,
                       const Stream& stream) {
    global_norm(out, partial, g, n, stream);
}

void train_adamw(float* params, const float* grads, float* m, float* v, const uint32_t* decay_bits,
                 int64_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                 float bc1, float bc2, const double* norm, const double* loss, float grad_clip,
                 const Stream& stream, int decay_shift) {
    adamw(params, grads, m, v, decay_bits, n, lr, beta1, beta2, eps, weight_decay, bc1, bc2, norm,
          loss, grad_clip, 0, stream, decay_shift, "train_adamw");
}
void train_adamw(float* params, const uint16_t* grads, float* m, float* v,
                 const uint32_t* decay_bits, int64_t n, float lr, float beta1, float beta2,
                 float eps, float weight_decay, float bc1, float bc2, const double* norm,
                 const double* loss, float grad_clip, const Stream& stream, int decay_shift) {
    adamw(params, grads, m, v, decay_bits, n, lr, beta1, beta2, eps, weight_decay, bc1, bc2, norm,
          loss, grad_clip, 0, stream, decay_shift, "train_adamw");
}

void train_adamw_bf16_moments(float* params, const float* grads, uint16_t* m, uint16_t* v,
                              const uint32_t* decay_bits, int64_t n, float lr, float beta1,
                              float beta2, float eps, float weight_decay, float bc1, float bc2,
                              const double* norm, const double* loss, float grad_clip,
                              uint64_t seed, const Stream& stream, int decay_shift) {
    adamw(params, grads, m, v, decay_bits, n, lr, beta1, beta2, eps, weight_decay, bc1, bc2, norm,
          loss, grad_clip, seed, stream, decay_shift, "train_adamw_bf16_moments");
}
void train_adamw_bf16_moments(float* params, const uint16_t* grads, uint16_t* m, uint16_t* v,
                              const uint32_t* decay_bits, int64_t n, float lr, float beta1,
                              float beta2, float eps, float weight_decay, float bc1, float bc2,
                              const double* norm, const double* loss, float grad_clip,
                              uint64_t seed, const Stream& stream, int decay_shift) {
    adamw(params, grads, m, v, decay_bits, n, lr, beta1, beta2, eps, weight_decay, bc1, bc2, norm,
          loss, grad_clip, seed, stream, decay_shift, "train_adamw_bf16_moments");
}

}  // namespace bitttt::cuda
