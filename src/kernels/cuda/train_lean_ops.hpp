// The kernels of the memory-lean training state (train_model.hpp GpuMemoryOptions): AdamW with
// 8-bit blockwise moments (moment_code.hpp) and the helpers of bf16 gradients. DEVICE pointers,
// asynchronous launches on `stream`, like train_ops.hpp.
#pragma once

#include <cstdint>

#include "kernels/cuda/device.hpp"

namespace bitttt::cuda {

// Blocks of moment_code::kMomentBlock elements in a flat buffer of n (one fp32 scale each).
int64_t train_moment_blocks(int64_t n);

// One AdamW step as train_adamw (same fp32 arithmetic, clipping, decay bits and non-finite
// guard) with the moments stored as 8-bit codes m, v (n bytes each) and one scale per block
// (m_scale, v_scale: train_moment_blocks(n) floats). The parameter update uses this step's fp32
// moments; then each block's new moments are coded with the block's absmax (moment_code.hpp),
// rounded stochastically with random bits of (seed, element): pass a seed that changes every step.
// Grads in fp32 or bf16 bits.
void train_adamw_int8_moments(float* params, const float* grads, uint8_t* m, uint8_t* v,
                              float* m_scale, float* v_scale, const uint32_t* decay_bits, int64_t n,
                              float lr, float beta1, float beta2, float eps, float weight_decay,
                              float bc1, float bc2, const double* norm, const double* loss,
                              float grad_clip, uint64_t seed, const Stream& stream,
                              int decay_shift = 0);
void train_adamw_int8_moments(float* params, const uint16_t* grads, uint8_t* m, uint8_t* v,
                              float* m_scale, float* v_scale, const uint32_t* decay_bits, int64_t n,
                              float lr, float beta1, float beta2, float eps, float weight_decay,
                              float bc1, float bc2, const double* norm, const double* loss,
                              float grad_clip, uint64_t seed, const Stream& stream,
                              int decay_shift = 0);

// The coding of train_adamw_int8_moments alone (the same device code), for tests: x (n values of m,
// or of v when v_code) to codes and block scales, with the random bits of (seed, element); and
// back (v_code: returns v, the square of the decoded √v).
void train_moment_quantize(uint8_t* codes, float* scales, const float* x, int64_t n, bool v_code,
                           uint64_t seed, const Stream& stream);
void train_moment_dequantize(float* x, const uint8_t* codes, const float* scales, int64_t n,
                             bool v_code, const Stream& stream);

// dst[i] = bf16(float(dst[i]) + src[i]) (round to nearest even): an fp32 gradient computed with
// atomics (RMSNorm weights, ttt.lr) added once into a bf16 gradient buffer.
void train_accumulate_bf16(uint16_t* dst, const float* src, int64_t n, const Stream& stream);

// The embedding gradient into a bf16 buffer without atomics: the batch's positions grouped by
// token on the host (order: positions sorted by token, stably; starts[u] .. starts[u + 1]: the
// positions of the u-th distinct token unique[u]), one block per distinct token summing its rows of
// dout in fp32, in position order, then dwte[token, :] = bf16(dwte[token, :] + sum).
void train_embedding_backward_bf16(uint16_t* dwte, const float* dout, const int32_t* order,
                                   const int32_t* starts, const int32_t* unique, int64_t U,
                                   int64_t C, const Stream& stream);

}  // namespace bitttt::cuda
