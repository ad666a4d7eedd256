// Products with an int8 weight matrix and int8 activations, for the opt-in int8 lm_head of CPU
// inference (DeviceOptions::lm_head, include/bitttt/model.hpp).
//
// Weights: per row (per output) absmax, made once at load from the fp32 lm_head:
//     s_n = max_k |w[n, k]| / 127,   q[n, k] = clamp(round(w[n, k] · (127 / max_k |w[n, k]|)),
//     ±127)
// (round half to even; a row of zeros gets s_n = 0). Activations: per token absmax, the same
// quantization the BitLinear layers use (kernels::quantize_activations, ternary.hpp):
//     a_i = max_k |x[i, k]| / 127,  xq[i, k] = clamp(round(x[i, k] · (127 / max_k |x[i, k]|)),
//     ±127).
// Then y[i, n] = float(Σ_k q[n, k] · xq[i, k]) · (s_n · a_i).
//
// The integer sums are exact (|Σ| ≤ 127² · cols < 2³¹ for cols ≤ kInt8MaxCols) and every ISA
// rescales with the same two float multiplications, so all versions give bit-identical y.
// Against the fp32 product each weight moves by at most s_n / 2 and each activation by a_i / 2:
//     |y_int8 − y_f32| ≤ Σ_k (|x_k| s_n + |w_k| a_i + s_n a_i / 2) / 2
// (about 2⁻⁸ of Σ|w||x| for well-spread rows; tests/cpp/int8_matmul_test.cpp checks the bound).
//
// A decoded token reads cols bytes per row instead of 2 · cols (bf16) or 4 · cols (fp32): at
// D = 2048, V = 32000 that is 65.5 MB instead of 131 MB.
#pragma once

#include <cstdint>

namespace bitttt::kernels {

// The longest rows the int8 products take: 127 · 127 · 2¹⁷ < 2³¹ keeps the exact sum in int32.
inline constexpr int64_t kInt8MaxCols = int64_t{1} << 17;

// Row stride of the quantized weights: rows padded with zeros to whole 64-byte blocks, so every
// row starts 64-byte aligned and the SIMD versions load whole blocks of weights.
inline constexpr int64_t int8_row_stride(int64_t cols) {
    return (cols + 63) / 64 * 64;
}

// A quantized matrix [rows, cols] (views; the owner keeps the buffers alive).
struct Int8Weights {
    const int8_t* q = nullptr;         // rows x int8_row_stride(cols), zero padded, 64-byte aligned
    const float* scale = nullptr;      // [rows] s_n
    const int32_t* row_sum = nullptr;  // [rows] Σ_k q[n, k] (the AVX-512 version's offset, below)
    int64_t rows = 0;
    int64_t cols = 0;
};

// Quantizes w [rows, cols] (fp32, row-major) as above into q (rows x int8_row_stride(cols)
// bytes, padding zeroed), scale and row_sum. Throws Error for a non-finite weight (naming its
// row) or cols outside [1, kInt8MaxCols]. Multi-threaded over rows.
void quantize_int8_rows(const float* w, int64_t rows, int64_t cols, int8_t* q, float* scale,
                        int32_t* row_sum);

// y[i * y_stride + n] = float(Σ_k q[n, k] · xq[i * xq_stride + k]) · (scale[n] · act_scale[i])
// for n < w.rows, i < m. xq rows hold at least w.cols bytes in [−127, 127] (what
// quantize_activations writes); nothing past w.cols is read. Dispatches on active_isa();
// multi-threaded over rows with OpenMP when there is enough work (and the caller is not already
// in a team); allocates nothing.
void int8_matmul(const Int8Weights& w, const int8_t* xq, int64_t xq_stride, const float* act_scale,
                 int64_t m, float* y, int64_t y_stride);

// The scalar reference (the obvious loops, int64 sums; every ISA version is tested against it).
void int8_matmul_scalar(const Int8Weights& w, const int8_t* xq, int64_t xq_stride,
                        const float* act_scale, int64_t m, float* y, int64_t y_stride);

// Per-ISA versions (internal; call the dispatcher). Arguments are checked by the dispatcher.
// AVX2: maddubs on |q| and xq carrying q's sign (_mm256_sign_epi8), |pair sums| ≤ 2 · 127² < 2¹⁵.
void int8_matmul_avx2(const Int8Weights& w, const int8_t* xq, int64_t xq_stride,
                      const float* act_scale, int64_t m, float* y, int64_t y_stride);
// AVX-512 VNNI: vpdpbusd takes unsigned × signed bytes, so xq enters as xq + 128 (a sign-bit
// flip) and 128 · row_sum[n] is subtracted: Σ (xq + 128) q = Σ xq q + 128 Σ q.
void int8_matmul_avx512(const Int8Weights& w, const int8_t* xq, int64_t xq_stride,
                        const float* act_scale, int64_t m, float* y, int64_t y_stride);

}  // namespace bitttt::kernels
