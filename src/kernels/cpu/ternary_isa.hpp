// Per-ISA versions of the ternary kernels (internal: call the dispatching functions in
// ternary.hpp). Each lives in a translation unit compiled for its ISA only; tests call them
// directly to compare every ISA against the scalar reference.
#pragma once

#include "kernels/cpu/ternary.hpp"

namespace bitttt::kernels {

// Throws Error unless the arguments of a ternary_matmul call are consistent: non-negative sizes,
// non-null buffers when there is work, strides that keep token rows from overlapping. Every
// ISA's entry point calls it (O(1)), so a hostile shape fails cleanly instead of crashing.
void check_matmul_args(const TernaryWeights& w, const void* x, int64_t x_stride,
                       const float* act_scale, int64_t m, const float* y, int64_t y_stride);

void ternary_matmul_avx2(const TernaryWeights& w, const int8_t* xq, int64_t xq_stride,
                         const float* act_scale, int64_t m, float* y, int64_t y_stride);
void ternary_matmul_avx512(const TernaryWeights& w, const int8_t* xq, int64_t xq_stride,
                           const float* act_scale, int64_t m, float* y, int64_t y_stride);

// Same contract and results as quantize_activations_scalar.
void quantize_activations_avx2(const float* x, int64_t m, int64_t k, int64_t x_stride, int8_t* xq,
                               int64_t xq_stride, float* act_scale);
void quantize_activations_avx512(const float* x, int64_t m, int64_t k, int64_t x_stride, int8_t* xq,
                                 int64_t xq_stride, float* act_scale);
// Throws Error unless the arguments of a quantize_activations call are consistent.
void check_quantize_args(const float* x, int64_t m, int64_t k, int64_t x_stride, const int8_t* xq,
                         int64_t xq_stride, const float* act_scale);

}  // namespace bitttt::kernels
