// The linear products of CPU training in bf16 (TrainModel::bf16_products; gemm_bf16.hpp for the
// arithmetic): y = x·Wᵀ, and in the backward dx += dy·W, dW += dyᵀ·x, each with bf16 operands
// (rounded to nearest even) and fp32 sums, as torch.autocast("cpu", bfloat16) runs nn.Linear.
//
// Each product packs its two operands once, in the layout its kernel reads (weights: their
// rows paired along C for the forward, along OC for dx; activations: their rows as A, or x's
// columns paired along N for dW); a step packs every weight once per use, and the backward's
// dW products reuse the last packed x while it is the same tensor (gate/up share the MLP's
// normed input, the delta rule's q/k/v the TTT branch's).
#pragma once

#include <cstdint>

#include "train/gemm_bf16.hpp"

namespace bitttt::train {

class Bf16Linear {
  public:
    // out[N, OC] = x[N, C] · weight[OC, C]ᵀ (overwrites out).
    void forward(float* out, const float* x, const float* weight, int64_t N, int64_t C, int64_t OC);
    // dx[N, C] += dy[N, OC] · weight[OC, C] (skipped when dx is null) and
    // dweight[OC, C] += dy[N, OC]ᵀ · x[N, C].
    void backward(float* dx, float* dweight, const float* dy, const float* x, const float* weight,
                  int64_t N, int64_t C, int64_t OC);
    // Forgets the packed x (call whenever activations may have changed: each backward's start).
    void forget() { x_of_ = nullptr; }

  private:
    Bf16Panels a_, b_, x_;
    const float* x_of_ = nullptr;  // the tensor x_ holds, as B panels [N, C]
    int64_t x_rows_ = 0, x_cols_ = 0;
};

}  // namespace bitttt::train
