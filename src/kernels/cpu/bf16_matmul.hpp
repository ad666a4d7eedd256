// Products with a bf16 weight matrix and fp32 activations: y = x · Wᵀ, W row-major [rows, cols]
// of bfloat16 (the top 16 bits of an fp32), x and y fp32. The inference lm_head uses it
// (model/weights.hpp): at the default config the fp32 lm_head is 16 MiB, read once per decoded
// token, more than all the layers together; in bf16 it is 8 MiB and fits the L3 cache with room.
//
// Every bf16 value is an fp32 value exactly (bf16 → fp32 is a 16-bit shift), so the products
// w·x are fp32 products of the stored weights and the unrounded activations, accumulated in
// fp32: the only rounding against an fp32 lm_head is that of the weights themselves (bf16 keeps
// 8 significant bits; round to nearest even moves a weight by at most 2⁻⁸ of its magnitude), so
// |y_bf16 − y_f32| ≤ 2⁻⁸ Σ_k |w_k x_k| plus fp32 summation error (plus 2⁻¹⁶ Σ_k |w_k x_k| for the
// AVX512_BF16 version, which rounds x to 16 significant bits). For random-signed terms the
// error is far smaller, ~2⁻¹⁰ · sqrt(Σ_k (w_k x_k)²).
#pragma once

#include <cstdint>

namespace bitttt::kernels {

// y[i * y_stride + n] = Σ_k float(w[n * cols + k]) · x[i * x_stride + k] for n < rows, i < m.
// Dispatches on active_isa(); multi-threaded over rows with OpenMP when there are at least
// kParallelMinWork multiply-adds (f32_matmul.hpp); allocates nothing. A token's result does not
// depend on m (decode and batched prompts agree exactly); the SIMD versions sum in a different
// order than the scalar one.
void bf16_matmul(const uint16_t* w, int64_t rows, int64_t cols, const float* x, int64_t x_stride,
                 int64_t m, float* y, int64_t y_stride);

// The scalar reference (the obvious loops; every ISA version is tested against it).
void bf16_matmul_scalar(const uint16_t* w, int64_t rows, int64_t cols, const float* x,
                        int64_t x_stride, int64_t m, float* y, int64_t y_stride);

// Per-ISA versions (internal; call the dispatcher). Arguments are checked by the dispatcher.
void bf16_matmul_avx2(const uint16_t* w, int64_t rows, int64_t cols, const float* x,
                      int64_t x_stride, int64_t m, float* y, int64_t y_stride);
void bf16_matmul_avx512(const uint16_t* w, int64_t rows, int64_t cols, const float* x,
                        int64_t x_stride, int64_t m, float* y, int64_t y_stride);
// AVX512_BF16 (vdpbf16ps; chosen over bf16_matmul_avx512 when has_avx512_bf16()): x enters as
// two bf16 halves with 16 significant bits, which adds at most 2⁻¹⁶ Σ|w x| to the error.
void bf16_matmul_avx512bf16(const uint16_t* w, int64_t rows, int64_t cols, const float* x,
                            int64_t x_stride, int64_t m, float* y, int64_t y_stride);

}  // namespace bitttt::kernels
