// The memory-lean training state on the GPU (train_lean_ops.hpp): one block of
// moment_code::kMomentBlock threads per block of moments (its absmax is a block reduction), and the
// bf16 gradient helpers.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/moment_code.hpp"
#include "kernels/cuda/train_lean_ops.hpp"

namespace bitttt::cuda {
namespace {

using detail::check_launch;
using detail::raw;
namespace mc = moment_code;

constexpr int kBlock = mc::kMomentBlock;  // threads per CUDA block = elements per moment block
static_assert(kBlock % 32 == 0 && kBlock <= 1024);

int64_t grid_for(int64_t blocks) {
    return std::max<int64_t>(1, std::min<int64_t>(blocks, 65535));
}

// Max over the block (every thread gets it); the first barrier keeps a previous call's readers
// ahead of this call's writers.
__device__ float block_max(float v) {
    __shared__ float scratch[kBlock / 32];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
    __syncthreads();
    v = scratch[0];
#pragma unroll
    for (int w = 1; w < kBlock / 32; ++w) v = fmaxf(v, scratch[w]);
    return v;
}

// Codes element i (valid: inside the buffer) of moment block `blk` with the block's absmax; every
// thread of the block must call it. x is m, or v when kV.
template <bool kV>
__device__ void store_moment(uint8_t* codes, float* scales, int64_t blk, int64_t i, bool valid,
                             float x, float u) {
    const float mag = valid ? (kV ? sqrtf(fmaxf(x, 0.0f)) : fabsf(x)) : 0.0f;
    const float absmax = block_max(mag);
    const float s = kV ? mc::scale_v(absmax) : mc::scale_m(absmax);
    if (valid) codes[i] = kV ? mc::encode_v(x, s, u) : mc::encode_m(x, s, u);
    if (threadIdx.x == 0) scales[blk] = s;
}

__device__ float load_grad(const float* g, int64_t i) {
    return g[i];
}
__device__ float load_grad(const uint16_t* g, int64_t i) {
    return __uint_as_float(static_cast<uint32_t>(g[i]) << 16);
}

template <typename Grad>
__global__ void adamw_int8_kernel(float* params, const Grad* grads, uint8_t* mq, uint8_t* vq,
                                  float* m_scale, float* v_scale, const uint32_t* decay_bits,
                                  int64_t n, float lr, float beta1, float beta2, float eps,
                                  float weight_decay, float bc1, float bc2, const double* norm,
                                  const double* loss, float grad_clip, uint64_t seed,
                                  int decay_shift) {
    const double nrm = *norm;
    if (!isfinite(nrm) || (loss && !isfinite(*loss))) return;
    const float scale = nrm > grad_clip ? static_cast<float>(grad_clip / nrm) : 1.0f;
    const int64_t blocks = (n + kBlock - 1) / kBlock;
    for (int64_t blk = blockIdx.x; blk < blocks; blk += gridDim.x) {
        const int64_t i = blk * kBlock + threadIdx.x;
        const bool valid = i < n;
        float mi = 0.0f, vi = 0.0f;
        if (valid) {
            const float g = load_grad(grads, i) * scale;
            mi = beta1 * mc::decode_m(mq[i], m_scale[blk]) + (1.0f - beta1) * g;
            vi = beta2 * mc::decode_v(vq[i], v_scale[blk]) + (1.0f - beta2) * g * g;
            const float mhat = mi / bc1, vhat = vi / bc2;
            const int64_t j = i >> decay_shift;
            const float wd = (decay_bits[j >> 5] >> (j & 31)) & 1u ? weight_decay : 0.0f;
            params[i] -= lr * (mhat / (sqrtf(vhat) + eps) + wd * params[i]);
        }
        // (block_max's barriers order every thread's reads of the old scales before the writes.)
        store_moment<false>(mq, m_scale, blk, i, valid, mi, mc::random_u(seed, i, 0));
        store_moment<true>(vq, v_scale, blk, i, valid, vi, mc::random_u(seed, i, 1));
    }
}

__global__ void moment_quantize_kernel(uint8_t* codes, float* scales, const float* x, int64_t n,
                                       bool v_code, uint64_t seed) {
    const int64_t blocks = (n + kBlock - 1) / kBlock;
    for (int64_t blk = blockIdx.x; blk < blocks; blk += gridDim.x) {
        const int64_t i = blk * kBlock + threadIdx.x;
        const bool valid = i < n;
        const float xi = valid ? x[i] : 0.0f;
        if (v_code)
            store_moment<true>(codes, scales, blk, i, valid, xi, mc::random_u(seed, i, 1));
        else
            store_moment<false>(codes, scales, blk, i, valid, xi, mc::random_u(seed, i, 0));
    }
}

__global__ void moment_dequantize_kernel(float* x, const uint8_t* codes, const float* scales,
                                         int64_t n, bool v_code) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const float s = scales[i / kBlock];
        x[i] = v_code ? mc::decode_v(codes[i], s) : mc::decode_m(codes[i], s);
    }
}

__device__ float bf16_to_float(uint16_t b) {
    return __uint_as_float(static_cast<uint32_t>(b) << 16);
}
__device__ uint16_t bf16_rn(float x) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(x));
}

__global__ void accumulate_bf16_kernel(uint16_t* dst, const float* src, int64_t n) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        dst[i] = bf16_rn(bf16_to_float(dst[i]) + src[i]);
}

__global__ void embedding_backward_bf16_kernel(uint16_t* dwte, const float* dout,
                                               const int32_t* order, const int32_t* starts,
                                               const int32_t* unique, int64_t U, int64_t C) {
    for (int64_t u = blockIdx.x; u < U; u += gridDim.x) {
        const int64_t row = unique[u];
        const int32_t k0 = starts[u], k1 = starts[u + 1];
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
            float sum = 0.0f;
            for (int32_t k = k0; k < k1; ++k) sum += dout[static_cast<int64_t>(order[k]) * C + c];
            uint16_t* p = dwte + row * C + c;
            *p = bf16_rn(bf16_to_float(*p) + sum);
        }
    }
}

template <typename Grad>
void adamw_int8(float* params, const Grad* grads, uint8_t* m, uint8_t* v, float* m_scale,
                float* v_scale, const uint32_t* decay_bits, int64_t n, float lr, float beta1,
                float beta2, float eps, float weight_decay, float bc1, float bc2,
                const double* norm, const double* loss, float grad_clip, uint64_t seed,
                const Stream& stream, int decay_shift) {
    adamw_int8_kernel<Grad><<<grid_for(train_moment_blocks(n)), kBlock, 0, raw(stream)>>>(
        params, grads, m, v, m_scale, v_scale, decay_bits, n, lr, beta1, beta2, eps, weight_decay,
        bc1, bc2, norm, loss, grad_clip, seed, decay_shift);
    check_launch("train_adamw_int8_moments");
}

}  // namespace

int64_t train_moment_blocks(int64_t n) {
    return (n + kBlock - 1) / kBlock;
}

void train_adamw_int8_moments(float* params, const float* grads, uint8_t* m, uint8_t* v,
                              float* m_scale, float* v_scale, const uint32_t* decay_bits, int64_t n,
                              float lr, float beta1, float beta2, float eps, float weight_decay,
                              float bc1, float bc2, const double* norm, const double* loss,
                              float grad_clip, uint64_t seed, const Stream& stream,
                              int decay_shift) {
    adamw_int8(params, grads, m, v, m_scale, v_scale, decay_bits, n, lr, beta1, beta2, eps,
               weight_decay, bc1, bc2, norm, loss, grad_clip, seed, stream, decay_shift);
}
void train_adamw_int8_moments(float* params, const uint16_t* grads, uint8_t* m, uint8_t* v,
                              float* m_scale, float* v_scale, const uint32_t* decay_bits, int64_t n,
                              float lr, float beta1, float beta2, float eps, float weight_decay,
                              float bc1, float bc2, const double* norm, const double* loss,
                              float grad_clip, uint64_t seed, const Stream& stream,
                              int decay_shift) {
    adamw_int8(params, grads, m, v, m_scale, v_scale, decay_bits, n, lr, beta1, beta2, eps,
               weight_decay, bc1, bc2, norm, loss, grad_clip, seed, stream, decay_shift);
}

void train_moment_quantize(uint8_t* codes, float* scales, const float* x, int64_t n, bool v_code,
                           uint64_t seed, const Stream& stream) {
    if (n <= 0) return;
    moment_quantize_kernel<<<grid_for(train_moment_blocks(n)), kBlock, 0, raw(stream)>>>(
        codes, scales, x, n, v_code, seed);
    check_launch("train_moment_quantize");
}

void train_moment_dequantize(float* x, const uint8_t* codes, const float* scales, int64_t n,
                             bool v_code, const Stream& stream) {
    if (n <= 0) return;
    moment_dequantize_kernel<<<grid_for((n + 255) / 256), 256, 0, raw(stream)>>>(x, codes, scales,
                                                                                 n, v_code);
    check_launch("train_moment_dequantize");
}

void train_accumulate_bf16(uint16_t* dst, const float* src, int64_t n, const Stream& stream) {
    if (n <= 0) return;
    accumulate_bf16_kernel<<<grid_for((n + 255) / 256), 256, 0, raw(stream)>>>(dst, src, n);
    check_launch("train_accumulate_bf16");
}

void train_embedding_backward_bf16(uint16_t* dwte, const float* dout, const int32_t* order,
                                   const int32_t* starts, const int32_t* unique, int64_t U,
                                   int64_t C, const Stream& stream) {
    if (U <= 0) return;
    embedding_backward_bf16_kernel<<<grid_for(U), 256, 0, raw(stream)>>>(dwte, dout, order, starts,
                                                                         unique, U, C);
    check_launch("train_embedding_backward_bf16");
}

}  // namespace bitttt::cuda
