// The forward BitLinear products of training on integer codes (DESIGN.md §2.1).
//
// With activation codes q[n, k] = clamp(round(x[n, k]·127/γ_n), −127, 127), s_n = γ_n/127, and
// ternary weight codes w[o, k] ∈ {−1, 0, 1} with the tensor's scale β, the fake-quantized
// product is
//     y[n, o] = Σ_k (q[n, k]·s_n)(w[o, k]·β) = float(Σ_k q[n, k]·w[o, k]) · (β·s_n),
// as torch_models.bitlinear and the inference kernels compute it. The integer sum is exact in
// int32, and in fp32 as long as every partial sum stays below 2^24 in magnitude: |Σ| ≤ 127·K,
// so K ≤ 132,104 (checked). Both paths then apply the same rescale (one rounding of β·s_n, one
// of the product), so they give the same bits:
//   kInt8: kernels::ternary_matmul, the inference kernel (AVX-512 VNNI / AVX2 / scalar);
//   kFp32: the training GEMM on the codes converted to floats (the twin it is tested against).
// The backward keeps using the fake-quantized floats (x_q = q·s_n, W_q = w·β): same values.
#pragma once

#include <cstdint>

#include "core/aligned_buffer.hpp"
#include "kernels/cpu/ternary.hpp"

namespace bitttt::train {

// kFakeQuant: the fp32 GEMM on the fake-quantized floats (x_q · W_qᵀ, the formulation before the
// integer path; equal to the other two to float rounding, not bit for bit). bitlinear_forward
// takes kInt8 or kFp32.
enum class BitLinearPath { kInt8, kFp32, kFakeQuant };

// The int8 codes of one BitLinear input [rows, cols]: rows of `stride` = packed_cols(cols) bytes
// (zero padded, the layout ternary_matmul reads) and the per-row scale s_n = γ_n/127.
struct ActCodes {
    AlignedBuffer<int8_t> q;
    AlignedBuffer<float> scale;
    int64_t rows = 0, cols = 0, stride = 0;
};

// Quantizes inp [N, C] (act_bits = 8) into `codes` (grown as needed) and writes the
// fake-quantized values out = q·s_n, bit-identical to act_quant_forward<float>(out, inp, N, C, 8)
// (computed from the codes; tested). A row with a non-finite input gets act_quant_forward's values
// and a NaN scale, so its products are NaN as the fake-quantized ones are.
void act_quant_codes(float* out, ActCodes& codes, const float* inp, int64_t N, int64_t C);

// The packed ternary codes (kernels::pack_ternary's layout, packed_bytes(rows, cols) bytes) of
// w [rows, cols] quantized with scale beta as weight_quant_forward does; row groups in parallel.
void pack_weight_codes(uint8_t* packed, const float* w, int64_t rows, int64_t cols, float beta);

// y[n, o] = float(Σ_k q[n, k]·w[o, k]) · (w.scale · s_n) for n < x.rows, o < w.rows (y row-major
// [x.rows, w.rows]). x.cols must equal w.cols.
void bitlinear_forward(float* y, const ActCodes& x, const kernels::TernaryWeights& w,
                       BitLinearPath path);

}  // namespace bitttt::train
