// Dense bf16 products (lm_head, embeddings), random device data for benchmarks, and the streaming
// read probe that measures the memory bandwidth the bandwidth-bound kernels are compared to.
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/gemv_core.cuh"
#include "kernels/cuda/kernels.hpp"
#include "kernels/cuda/pdl.cuh"

namespace bitttt::cuda {
namespace {

using detail::aligned;
using detail::check_launch;
using detail::load_once;
using detail::raw;

// A 32-bit word holds two bf16 values: the low half is the element at the lower address.
__device__ __forceinline__ float bf16_low(uint32_t word) {
    return __uint_as_float(word << 16);
}
__device__ __forceinline__ float bf16_high(uint32_t word) {
    return __uint_as_float(word & 0xffff0000u);
}

__device__ __forceinline__ float dot8(const uint4& w, const float4& a, const float4& b, float acc) {
    acc = fmaf(bf16_low(w.x), a.x, acc);
    acc = fmaf(bf16_high(w.x), a.y, acc);
    acc = fmaf(bf16_low(w.y), a.z, acc);
    acc = fmaf(bf16_high(w.y), a.w, acc);
    acc = fmaf(bf16_low(w.z), b.x, acc);
    acc = fmaf(bf16_high(w.z), b.y, acc);
    acc = fmaf(bf16_low(w.w), b.z, acc);
    acc = fmaf(bf16_high(w.w), b.w, acc);
    return acc;
}

// One warp per row; each lane reads 16 bytes (8 weights) per step, 4 steps in flight.
constexpr int kBf16Threads = 256;
constexpr int kBf16RowsPerBlock = kBf16Threads / 32;
constexpr int kBf16Unroll = 4;

__global__ void __launch_bounds__(kBf16Threads)
    bf16_gemv_kernel(const uint4* __restrict__ w, int64_t rows, int cols8,
                     const float4* __restrict__ x, float* __restrict__ y) {
    detail::wait_for_previous_kernel();  // x comes from the previous kernel
    detail::allow_next_kernel();
    const int64_t row = static_cast<int64_t>(blockIdx.x) * kBf16RowsPerBlock + (threadIdx.x >> 5);
    if (row >= rows) return;
    const int lane = threadIdx.x & 31;
    const uint4* wr = w + row * cols8;
    float acc = 0.0f;
    int c = lane;
    for (; c + 32 * (kBf16Unroll - 1) < cols8; c += 32 * kBf16Unroll) {
        uint4 wv[kBf16Unroll];
#pragma unroll
        for (int i = 0; i < kBf16Unroll; ++i) wv[i] = load_once(wr + c + 32 * i);
#pragma unroll
        for (int i = 0; i < kBf16Unroll; ++i) {
            const int k8 = c + 32 * i;
            acc = dot8(wv[i], __ldg(x + 2 * k8), __ldg(x + 2 * k8 + 1), acc);
        }
    }
    for (; c < cols8; c += 32)
        acc = dot8(load_once(wr + c), __ldg(x + 2 * c), __ldg(x + 2 * c + 1), acc);
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
        acc += __shfl_xor_sync(0xffffffffu, acc, offset);
    if (lane == 0) y[row] = acc;
}

__global__ void bf16_to_float_kernel(const uint16_t* row, int64_t n, float* out) {
    for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < n;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x)
        out[j] = __uint_as_float(static_cast<uint32_t>(row[j]) << 16);
}

// SplitMix64's finalizer: a well-mixed 64-bit word from (seed, index).
__device__ __forceinline__ uint64_t mix64(uint64_t seed, uint64_t index) {
    uint64_t z = seed + (index + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

__device__ __forceinline__ float uniform01(uint64_t h) {
    return static_cast<float>(h >> 40) * 0x1.0p-24f;
}

// Byte b of the packed layout: block b/64 = (group, column block), row 16*group + (b%64)/4, and
// in bits 2s the column 16*kb + 4s + b%4 (kernels/cpu/ternary.hpp).
__global__ void fill_ternary_kernel(uint8_t* codes, int64_t bytes, int64_t rows, int64_t cols,
                                    int64_t blocks_per_group, uint64_t seed) {
    for (int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; b < bytes;
         b += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t block = b >> 6;
        const int within = static_cast<int>(b & 63);
        const int64_t row = (block / blocks_per_group) * 16 + (within >> 2);
        const int64_t col0 = (block % blocks_per_group) * 16 + (within & 3);
        const uint64_t h = mix64(seed, static_cast<uint64_t>(b));
        uint32_t byte = 0;
#pragma unroll
        for (int s = 0; s < 4; ++s) {
            const int64_t col = col0 + 4 * s;
            const uint32_t code = (row < rows && col < cols)
                                      ? static_cast<uint32_t>((h >> (16 * s)) & 0xffff) % 3
                                      : 1;
            byte |= code << (2 * s);
        }
        codes[b] = static_cast<uint8_t>(byte);
    }
}

__global__ void fill_uniform_kernel(float* x, int64_t n, float lo, float hi, uint64_t seed) {
    for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < n;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x)
        x[j] = lo + (hi - lo) * uniform01(mix64(seed, static_cast<uint64_t>(j)));
}

__global__ void fill_bf16_kernel(uint16_t* x, int64_t n, float amplitude, uint64_t seed) {
    for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < n;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const float v =
            amplitude * (2.0f * uniform01(mix64(seed, static_cast<uint64_t>(j))) - 1.0f);
        uint32_t bits = __float_as_uint(v);
        bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest even (v is finite)
        x[j] = static_cast<uint16_t>(bits >> 16);
    }
}

// Streams n 16-byte words, 4 loads in flight per thread; the xor of everything read decides a
// store the compiler cannot prove dead, so no load is dropped.
constexpr int kProbeThreads = 256;
__global__ void __launch_bounds__(kProbeThreads)
    read_probe_kernel(const uint4* __restrict__ p, int64_t n, uint32_t* sink) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    uint32_t acc = 0;
    for (; i + 3 * stride < n; i += 4 * stride) {
        const uint4 a = load_once(p + i), b = load_once(p + i + stride),
                    c = load_once(p + i + 2 * stride), d = load_once(p + i + 3 * stride);
        acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^
               d.z ^ d.w;
    }
    for (; i < n; i += stride) {
        const uint4 a = load_once(p + i);
        acc ^= a.x ^ a.y ^ a.z ^ a.w;
    }
    if (acc == 0x9e3779b9u) sink[blockIdx.x] = acc;
}

unsigned grid_for(int64_t n, int threads) {
    return static_cast<unsigned>(std::clamp<int64_t>((n + threads - 1) / threads, 1, 65536));
}

}  // namespace

void bf16_gemv(const uint16_t* w, int64_t rows, int64_t cols, const float* x, float* y,
               const Stream& stream) {
    check(rows >= 0 && rows <= detail::kMaxDim && cols >= 0 && cols <= detail::kMaxDim,
          ErrorKind::kInvalidArgument, "CUDA: bf16_gemv: shape [{}, {}] is out of range", rows,
          cols);
    if (rows == 0) return;
    check(cols % 8 == 0, ErrorKind::kInvalidArgument,
          "CUDA: bf16_gemv: column count {} is not a multiple of 8", cols);
    check(w != nullptr && x != nullptr && y != nullptr && aligned(w, 16) && aligned(x, 16),
          ErrorKind::kInvalidArgument, "CUDA: bf16_gemv: null or not 16-byte aligned buffers");
    const unsigned blocks =
        static_cast<unsigned>((rows + kBf16RowsPerBlock - 1) / kBf16RowsPerBlock);
    detail::launch_pdl("bf16_gemv_kernel", bf16_gemv_kernel, dim3(blocks), dim3(kBf16Threads), 0,
                       raw(stream), reinterpret_cast<const uint4*>(w), rows,
                       static_cast<int>(cols / 8), reinterpret_cast<const float4*>(x), y);
}

void bf16_to_float(const uint16_t* row, int64_t n, float* out, const Stream& stream) {
    check(n >= 0 && n <= detail::kMaxDim, ErrorKind::kInvalidArgument,
          "CUDA: bf16_to_float: length {} is out of range", n);
    if (n == 0) return;
    check(row != nullptr && out != nullptr, ErrorKind::kInvalidArgument,
          "CUDA: bf16_to_float: null buffer");
    bf16_to_float_kernel<<<grid_for(n, 256), 256, 0, raw(stream)>>>(row, n, out);
    check_launch("bf16_to_float_kernel");
}

void fill_random_ternary(uint8_t* codes, int64_t rows, int64_t cols, uint64_t seed,
                         const Stream& stream) {
    check(rows >= 0 && cols >= 0 && rows <= (int64_t{1} << 30) && cols <= (int64_t{1} << 30),
          ErrorKind::kInvalidArgument, "CUDA: fill_random_ternary: shape [{}, {}] is out of range",
          rows, cols);
    const int64_t bytes = kernels::packed_bytes(rows, cols);
    if (bytes == 0) return;
    check(codes != nullptr, ErrorKind::kInvalidArgument, "CUDA: fill_random_ternary: null codes");
    fill_ternary_kernel<<<grid_for(bytes, 256), 256, 0, raw(stream)>>>(
        codes, bytes, rows, cols, kernels::packed_cols(cols) / kernels::kColBlock, seed);
    check_launch("fill_ternary_kernel");
}

void fill_random_uniform(float* x, int64_t n, float lo, float hi, uint64_t seed,
                         const Stream& stream) {
    check(n >= 0, ErrorKind::kInvalidArgument, "CUDA: fill_random_uniform: negative length {}", n);
    if (n == 0) return;
    check(x != nullptr, ErrorKind::kInvalidArgument, "CUDA: fill_random_uniform: null buffer");
    fill_uniform_kernel<<<grid_for(n, 256), 256, 0, raw(stream)>>>(x, n, lo, hi, seed);
    check_launch("fill_uniform_kernel");
}

void fill_random_bf16(uint16_t* x, int64_t n, float amplitude, uint64_t seed,
                      const Stream& stream) {
    check(n >= 0, ErrorKind::kInvalidArgument, "CUDA: fill_random_bf16: negative length {}", n);
    if (n == 0) return;
    check(x != nullptr, ErrorKind::kInvalidArgument, "CUDA: fill_random_bf16: null buffer");
    fill_bf16_kernel<<<grid_for(n, 256), 256, 0, raw(stream)>>>(x, n, amplitude, seed);
    check_launch("fill_bf16_kernel");
}

void read_probe(const void* data, int64_t bytes, uint32_t* sink, const Stream& stream) {
    check(bytes >= 0 && bytes % 16 == 0, ErrorKind::kInvalidArgument,
          "CUDA: read_probe: byte count {} is not a non-negative multiple of 16", bytes);
    if (bytes == 0) return;
    check(data != nullptr && sink != nullptr && aligned(data, 16), ErrorKind::kInvalidArgument,
          "CUDA: read_probe: null or misaligned buffer");
    int sms = 0;
    detail::check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0),
                       "cudaDeviceGetAttribute");
    const int blocks = std::clamp(sms * 8, 1, kReadProbeMaxBlocks);
    read_probe_kernel<<<blocks, kProbeThreads, 0, raw(stream)>>>(static_cast<const uint4*>(data),
                                                                 bytes / 16, sink);
    check_launch("read_probe_kernel");
}

}  // namespace bitttt::cuda
