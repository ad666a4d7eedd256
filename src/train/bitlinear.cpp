// BitLinear forward products on integer codes (see bitlinear.hpp for the math).
#include "train/bitlinear.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.hpp"
#include "train/gemm.hpp"
#include "train/ops.hpp"

namespace bitttt::train {

void act_quant_codes(float* out, ActCodes& codes, const float* inp, int64_t N, int64_t C) {
    const int64_t stride = kernels::packed_cols(C);
    if (static_cast<int64_t>(codes.q.size()) < N * stride)
        codes.q.resize(static_cast<size_t>(N * stride));
    if (static_cast<int64_t>(codes.scale.size()) < N) codes.scale.resize(static_cast<size_t>(N));
    codes.rows = N, codes.cols = C, codes.stride = stride;
    int8_t* q = codes.q.data();
    float* s = codes.scale.data();
    // quantize_activations is one thread per call and its rows are independent: blocks of rows.
    constexpr int64_t kRowsPerItem = 64;
#pragma omp parallel for schedule(static) if (N * C > (1 << 15))
    for (int64_t n0 = 0; n0 < N; n0 += kRowsPerItem) {
        const int64_t rows = std::min(kRowsPerItem, N - n0);
        kernels::quantize_activations(inp + n0 * C, rows, C, C, q + n0 * stride, stride, s + n0);
        for (int64_t n = n0; n < n0 + rows; ++n) {
            const float* x = inp + n * C;
            float* y = out + n * C;
            const int8_t* qn = q + n * stride;
            bool nan = false;
            for (int64_t c = 0; c < C; ++c) nan |= x[c] != x[c];
            if (nan || !std::isfinite(s[n])) {
                // A non-finite input (an infinite one makes γ infinite): act_quant_forward's row
                // is (partly) NaN, so the fake-quantized product's row is NaN, while the kernel
                // codes NaN as 0; a NaN scale keeps the row NaN on the integer paths too.
                act_quant_forward(y, x, int64_t{1}, C, 8);
                s[n] = std::numeric_limits<float>::quiet_NaN();
                continue;
            }
            // The values act_quant_forward computes, clamp(round(x·127/γ)) · (γ/127), from the
            // codes (the same rounding of the same product) and the same scale: bit-identical,
            // the sign of a zero included (round keeps x's sign; the code 0 has none).
            const float sn = s[n];
            for (int64_t c = 0; c < C; ++c)
                y[c] = std::copysign(static_cast<float>(qn[c]) * sn, x[c]);
        }
    }
}

void pack_weight_codes(uint8_t* packed, const float* w, int64_t rows, int64_t cols, float beta) {
    // Row groups of 16 are contiguous in the packed layout, so each item packs its own rows as
    // a matrix of its own.
    constexpr int64_t kGroupsPerItem = 4;
    const int64_t rows_per_item = kGroupsPerItem * kernels::kRowGroup;
    const int64_t item_bytes = kernels::packed_bytes(rows_per_item, cols);
#pragma omp parallel if (rows * cols > (1 << 16))
    {
        std::vector<int8_t> q(static_cast<size_t>(rows_per_item * cols));
#pragma omp for schedule(static)
        for (int64_t r0 = 0; r0 < rows; r0 += rows_per_item) {
            const int64_t r = std::min(rows_per_item, rows - r0);
            kernels::quantize_ternary(w + r0 * cols, r * cols, beta, q.data());
            kernels::pack_ternary(q.data(), r, cols, packed + (r0 / rows_per_item) * item_bytes);
        }
    }
}

namespace {

// The fp32 twin: the codes as floats through the training GEMM, then the same rescale.
void bitlinear_forward_fp32(float* y, const ActCodes& x, const kernels::TernaryWeights& w) {
    const int64_t N = x.rows, K = x.cols, OC = w.rows;
    std::vector<float> a(static_cast<size_t>(N * K)), bt(static_cast<size_t>(K * OC));
    for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k) a[n * K + k] = x.q[n * x.stride + k];
    std::vector<int8_t> wq(static_cast<size_t>(OC * K));
    kernels::unpack_ternary(w.codes, OC, K, wq.data());
    for (int64_t o = 0; o < OC; ++o)
        for (int64_t k = 0; k < K; ++k) bt[k * OC + o] = wq[o * K + k];
    // Every partial sum is an integer of magnitude <= 127·K < 2^24 (checked by the caller):
    // exact in fp32 whatever the order, so y holds float(Σ q·w) exactly.
    gemm(y, a.data(), K, int64_t{1}, bt.data(), N, OC, K, 1.0f, false);
#pragma omp parallel for schedule(static) if (N * OC > (1 << 15))
    for (int64_t n = 0; n < N; ++n) {
        const float scale = w.scale * x.scale[n];  // as ternary_matmul: β·s_n, then the product
        for (int64_t o = 0; o < OC; ++o) y[n * OC + o] *= scale;
    }
}

}  // namespace

void bitlinear_forward(float* y, const ActCodes& x, const kernels::TernaryWeights& w,
                       BitLinearPath path) {
    check(x.cols == w.cols, ErrorKind::kDimensionMismatch,
          "bitlinear_forward: input has {} columns, the weight {}", x.cols, w.cols);
    // 127·K < 2^24 keeps the fp32 sums exact (and the two paths equal).
    check(x.cols <= (int64_t{1} << 24) / 127, ErrorKind::kInvalidArgument,
          "bitlinear_forward: {} input features exceed the exact fp32 range (132104)", x.cols);
    check(path != BitLinearPath::kFakeQuant, ErrorKind::kInvalidArgument,
          "bitlinear_forward: the fake-quantized path has no codes");
    if (path == BitLinearPath::kInt8)
        kernels::ternary_matmul(w, x.q.data(), x.stride, x.scale.data(), x.rows, y, w.rows);
    else
        bitlinear_forward_fp32(y, x, w);
}

}  // namespace bitttt::train
