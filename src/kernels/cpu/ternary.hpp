// BitNet b1.58 ternary weights and int8 activations (DESIGN.md §2.1): quantization, the packed
// 2-bit layout, and the ternary x int8 matrix products used for decode (m = 1) and prompts.
#pragma once

#include <cstdint>

namespace bitttt::kernels {

// ---------------------------------------------------------------------------------------------
// Packed layout ("TQ2 row-group-16")
//
// A weight w in {-1, 0, +1} is stored as the 2-bit code c = w + 1 in {0, 1, 2} (3 never occurs).
// Rows are padded to a multiple of 16 and columns (the input dimension K) to a multiple of 16;
// padding holds code 1 (weight 0).
//
// Rows are taken in groups of 16. For each group g and each block of 16 columns kb, 64 bytes are
// stored (groups outer, blocks inner: offset ((g * K_pad/16) + kb) * 64):
//
//     byte[r*4 + j] (r = row in group 0..15, j = 0..3) holds, in bits 2s..2s+1 (s = 0..3),
//     the code of row 16g + r, column 16kb + 4s + j.
//
// So `(block >> 2s) & 3`, taken bytewise over the 64 bytes, gives 16 lanes of 4 bytes where
// lane r holds the codes of row r for the 4 consecutive columns 16kb+4s .. 16kb+4s+3: exactly the
// operand of one u8 x s8 dot product of four (vpdpbusd, or maddubs + madd) against the 4
// activations of those columns broadcast to all lanes. One 64-byte load feeds four such steps
// for 16 output rows; AVX2 takes the two 32-byte halves (rows 0-7, rows 8-15) separately.
//
// With codes c = w + 1 the products give sum_k (w_k + 1) x_k = sum_k w_k x_k + sum_k x_k, so
// the kernels subtract sum_k x_k (computed once per token) to get the ternary dot product.
// ---------------------------------------------------------------------------------------------
inline constexpr int64_t kRowGroup = 16;
inline constexpr int64_t kColBlock = 16;

inline constexpr int64_t round_up(int64_t n, int64_t multiple) {
    return (n + multiple - 1) / multiple * multiple;
}
inline constexpr int64_t packed_rows(int64_t rows) {
    return round_up(rows, kRowGroup);
}
inline constexpr int64_t packed_cols(int64_t cols) {
    return round_up(cols, kColBlock);
}
inline constexpr int64_t packed_bytes(int64_t rows, int64_t cols) {
    return packed_rows(rows) * packed_cols(cols) / 4;
}
// Byte offset and bit shift of the code of (row, col) in the packed layout.
inline constexpr int64_t packed_byte_index(int64_t row, int64_t col, int64_t cols) {
    int64_t blocks_per_group = packed_cols(cols) / kColBlock;
    return ((row / kRowGroup) * blocks_per_group + col / kColBlock) * 64 + (row % kRowGroup) * 4 +
           col % 4;
}
inline constexpr int packed_bit_shift(int64_t col) {
    return static_cast<int>((col % 16) / 4) * 2;
}

// A packed ternary matrix W [rows, cols] (PyTorch's [out, in]) with its scale beta; does not own
// the codes (they may live in a memory-mapped model file). codes has packed_bytes(rows, cols)
// bytes and must be 64-byte aligned.
struct TernaryWeights {
    const uint8_t* codes = nullptr;
    int64_t rows = 0;
    int64_t cols = 0;
    float scale = 0.0f;  // beta
};

// ---- weight quantization (absmean, per tensor) ----
// beta = mean(|W|) over all n elements (accumulated in double, so it does not depend on order).
float ternary_scale(const float* w, int64_t n);
// q = clamp(round(w / (beta + 1e-8)), -1, 1); round half to even, as PyTorch and NumPy do.
void quantize_ternary(const float* w, int64_t n, float beta, int8_t* q);
// Packs q [rows, cols] (values in {-1,0,1}) into codes (packed_bytes(rows, cols) bytes).
void pack_ternary(const int8_t* q, int64_t rows, int64_t cols, uint8_t* codes);
// Inverse of pack_ternary: writes q [rows, cols].
void unpack_ternary(const uint8_t* codes, int64_t rows, int64_t cols, int8_t* q);

// ---- activation quantization (per token absmax int8) ----
// For each of m tokens x[i*x_stride .. + k): gamma = max(max|x|, 1e-5);
// xq = clamp(round(x * (127 / gamma)), -127, 127), written to xq[i*xq_stride .. + packed_cols(k))
// with zeros in the padding; act_scale[i] = gamma / 127 (the factor that undoes the scaling).
// Inputs must be finite (callers at the API boundary check); NaN never causes undefined behaviour.
void quantize_activations(const float* x, int64_t m, int64_t k, int64_t x_stride, int8_t* xq,
                          int64_t xq_stride, float* act_scale);
// The scalar reference of quantize_activations (the dispatching version above picks the AVX2 or
// AVX-512 one, which give bit-identical results).
void quantize_activations_scalar(const float* x, int64_t m, int64_t k, int64_t x_stride, int8_t* xq,
                                 int64_t xq_stride, float* act_scale);

// ---- products ----
// y[i, n] = float(sum_k Wq[n, k] * xq[i, k]) * (beta * act_scale[i]) for i < m, n < w.rows.
// xq rows hold packed_cols(w.cols) bytes (zero padded), 64-byte aligned rows are fastest.
// Dispatches on active_isa(); multi-threaded with OpenMP; allocates nothing.
// Integer sums are exact, and every ISA rescales in the same order, so results are bit-identical.
void ternary_matmul(const TernaryWeights& w, const int8_t* xq, int64_t xq_stride,
                    const float* act_scale, int64_t m, float* y, int64_t y_stride);
// The scalar reference of ternary_matmul (what every SIMD version is tested against).
void ternary_matmul_scalar(const TernaryWeights& w, const int8_t* xq, int64_t xq_stride,
                           const float* act_scale, int64_t m, float* y, int64_t y_stride);

// Unquantized activations (act_bits = 0): y[i, n] = (sum_k Wq[n, k] * x[i, k]) * beta.
void ternary_matmul_f32(const TernaryWeights& w, const float* x, int64_t x_stride, int64_t m,
                        float* y, int64_t y_stride);

}  // namespace bitttt::kernels
