// Int8 tensor-core products (IMMA, int32 accumulation) for the BitLinear forward of GPU training
// (train_model.cpp): out[N, OC] = x[N, K] · W[OC, K]ᵀ, all row-major, x the int8 activation codes
// (|c| <= 127), W the ternary weight codes as int8, out int32.
//
// Why it gives the bf16 path's results bit for bit: every term c_x · c_w is an integer of at most
// 127 in magnitude, so the int32 sum is the exact dot product (no overflow below K = 2^24). The
// bf16 path multiplies the same codes (exact in bf16) and accumulates in fp32, also exactly while
// every partial sum stays below 2^24 in magnitude (K · 127 < 2^24: K < 132104; the model's K are
// D, ttt_dim and mlp_dim, at most 4096 here). So float(int32 result) equals the bf16 path's fp32
// result, and the consumers that read the int32 values convert them (exactly) before the same
// float rescale. On an H100 the int8 rate is twice the bf16 one.
//
// Layout (cuBLASLt's rule for int8 with regular ordering: "TN", both operands K-major; m and k
// multiples of 4, leading dimensions multiples of 4): cuBLAS sees the column-major outᵀ[OC, N] =
// W · xᵀ with A = W (transposed, lda = K), B = xᵀ (lda = K), C = outᵀ (ldc = OC). supported()
// asks more, K and OC multiples of 16 (16-byte rows); other shapes are refused (the model then
// keeps the bf16 products).
// Plain C++ (no CUDA types in the interface); built only with the CUDA backend.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "kernels/cuda/device.hpp"

namespace bitttt::cuda {

class Int8Gemm {
  public:
    // workspace: device scratch for cuBLASLt (may be shared with other work of the same stream),
    // `bytes` long.
    Int8Gemm(void* workspace, size_t bytes);
    ~Int8Gemm();
    Int8Gemm(const Int8Gemm&) = delete;
    Int8Gemm& operator=(const Int8Gemm&) = delete;

    // Whether run() takes this shape: N >= 1, K and OC positive multiples of 16, each at most
    // 2^31 - 1.
    static bool supported(int64_t N, int64_t K, int64_t OC);

    // out[N, OC] = x[N, K] · w[OC, K]ᵀ in int32 (device pointers, 16-byte aligned), enqueued on
    // `stream`. Throws Error(kInvalidArgument) for a shape supported() refuses or a misaligned
    // pointer, Error(kUnsupported) when cuBLASLt offers no algorithm.
    void run(int32_t* out, const int8_t* x, const int8_t* w, int64_t N, int64_t K, int64_t OC,
             const Stream& stream);

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace bitttt::cuda
