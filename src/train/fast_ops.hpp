// Elementwise passes of CPU training with a vectorized exp, for the bf16 products path only
// (TrainModel::bf16_in_use()): there the products already round their operands to 8 bits, and
// torch's autocast likewise runs these passes with its own vectorized exp. The fp32 default path
// keeps ops.hpp's std::exp versions, whose bits the GPU tests use as their reference.
//
// The exp is the inference kernels' (simd::exp_ps in kernels/cpu/simd_avx512.hpp: 2^n · e^r,
// a degree-7 polynomial and vscalefps): within a few fp32 ulps of std::exp over the whole range
// (the tests bound it at 4e-7 relative), gradual underflow to 0, overflow to inf, NaN stays NaN.
// On a CPU without AVX-512 these call the exact ops.hpp versions.
#pragma once

#include <cstdint>

namespace bitttt::train {

// As crossentropy_forward<float>: logits[N, V] become the softmax probabilities, losses[n] =
// −log p(targets[n]); returns the mean loss. The row's sum is taken in fp32 lanes over blocks of
// 1024 and in double across blocks.
double crossentropy_forward_fast(float* losses, float* logits, const int32_t* targets, int64_t N,
                                 int64_t V);
// As swiglu_forward<float> / swiglu_backward<float> (out = g·σ(g)·u; dgate, dup accumulate).
void swiglu_forward_fast(float* out, const float* gate, const float* up, int64_t n);
void swiglu_backward_fast(float* dgate, float* dup, const float* dout, const float* gate,
                          const float* up, int64_t n);
// The vectorized exp itself (tests): out[i] = exp(x[i]).
void exp_fast(float* out, const float* x, int64_t n);

}  // namespace bitttt::train
