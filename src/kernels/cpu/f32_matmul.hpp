// Floating-point matrix products for the fp32 tensors of the model (lm_head [V, D]; DESIGN.md §2
// keeps it unquantized): y = x · Wᵀ, W row-major [rows, cols] as PyTorch stores a Linear.
//
// Decode (m = 1) is a GEMV that streams W once per token, so it is bound by memory (or cache)
// bandwidth: at the default config lm_head is 16 MiB, larger than everything else the token reads.
// Prompts and evaluation (m > 1) reuse each block of W rows, held in L1, for several tokens.
#pragma once

#include <cstdint>

namespace bitttt::kernels {

inline constexpr int64_t kParallelMinWork = int64_t{1} << 17;

// y[i * y_stride + n] = Σ_k w[n * cols + k] · x[i * x_stride + k] for n < rows, i < m.
// Dispatches on active_isa(); multi-threaded over rows with OpenMP when there are at least
// kParallelMinWork multiply-adds; allocates nothing.
// The SIMD versions sum in a different order than the scalar one (float rounding differs).
void f32_matmul(const float* w, int64_t rows, int64_t cols, const float* x, int64_t x_stride,
                int64_t m, float* y, int64_t y_stride);

// The scalar reference (the obvious loops; every ISA version is tested against it).
void f32_matmul_scalar(const float* w, int64_t rows, int64_t cols, const float* x, int64_t x_stride,
                       int64_t m, float* y, int64_t y_stride);

// Per-ISA versions (internal; call the dispatcher). Arguments are checked by the dispatcher.
void f32_matmul_avx2(const float* w, int64_t rows, int64_t cols, const float* x, int64_t x_stride,
                     int64_t m, float* y, int64_t y_stride);
void f32_matmul_avx512(const float* w, int64_t rows, int64_t cols, const float* x, int64_t x_stride,
                       int64_t m, float* y, int64_t y_stride);

}  // namespace bitttt::kernels
