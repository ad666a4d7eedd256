// Per-ISA versions of the ternary kernels (internal: call the dispatching functions in
// ternary.hpp). Each lives in a translation unit compiled for its ISA only.
#pragma once

#include "kernels/cpu/ternary.hpp"

namespace bitttt::kernels {

void ternary_matmul_avx2(const TernaryWeights& w, const int8_t* xq, int64_t xq_stride,
                         const float* act_scale, int64_t m, float* y, int64_t y_stride);
void ternary_matmul_avx512(const TernaryWeights& w, const int8_t* xq, int64_t xq_stride,
                           const float* act_scale, int64_t m, float* y, int64_t y_stride);

}  // namespace bitttt::kernels
