// Ternary x int8 products: the scalar reference and the ISA dispatch.
#include <omp.h>

#include "core/cpu_features.hpp"
#include "core/error.hpp"
#include "core/team.hpp"
#include "kernels/cpu/ternary.hpp"
#include "kernels/cpu/ternary_isa.hpp"

namespace bitttt::kernels {

namespace {
// The checks shared by the int8 and float products; x_row_len is the row length x must hold.
void check_product_args(const char* what, const TernaryWeights& w, const void* x, int64_t x_stride,
                        int64_t x_row_len, int64_t m, const float* y, int64_t y_stride) {
    constexpr int64_t kMaxDim = int64_t{1} << 40;  // keeps every byte offset far from overflow
    check(w.rows >= 0 && w.cols >= 0 && w.rows <= kMaxDim && w.cols <= kMaxDim,
          ErrorKind::kInvalidArgument, "{}: weight shape [{}, {}] is out of range", what, w.rows,
          w.cols);
    check(m >= 0 && m <= kMaxDim, ErrorKind::kInvalidArgument, "{}: token count {} is out of range",
          what, m);
    if (m == 0 || w.rows == 0) return;
    check(w.codes != nullptr && x != nullptr && y != nullptr, ErrorKind::kInvalidArgument,
          "{}: null weight, input or output buffer", what);
    check(m == 1 || (x_stride >= x_row_len && x_stride <= kMaxDim), ErrorKind::kDimensionMismatch,
          "{}: input stride {} is not in [{}, 2^40]", what, x_stride, x_row_len);
    check(m == 1 || (y_stride >= w.rows && y_stride <= kMaxDim), ErrorKind::kDimensionMismatch,
          "{}: output stride {} is not in [{}, 2^40]", what, y_stride, w.rows);
}
}  // namespace

void check_matmul_args(const TernaryWeights& w, const void* x, int64_t x_stride,
                       const float* act_scale, int64_t m, const float* y, int64_t y_stride) {
    check_product_args("ternary_matmul", w, x, x_stride, packed_cols(w.cols), m, y, y_stride);
    check(m == 0 || w.rows == 0 || act_scale != nullptr, ErrorKind::kInvalidArgument,
          "ternary_matmul: null activation scales");
}

void ternary_matmul_scalar(const TernaryWeights& w, const int8_t* xq, int64_t xq_stride,
                           const float* act_scale, int64_t m, float* y, int64_t y_stride) {
    check_matmul_args(w, xq, xq_stride, act_scale, m, y, y_stride);
    parallel_for(w.rows, true, [&](int64_t n) {
        for (int64_t i = 0; i < m; ++i) {
            const int8_t* xi = xq + i * xq_stride;
            int32_t acc = 0;
            for (int64_t k = 0; k < w.cols; ++k) {
                int code = (w.codes[packed_byte_index(n, k, w.cols)] >> packed_bit_shift(k)) & 3;
                acc += (code - 1) * xi[k];
            }
            y[i * y_stride + n] = static_cast<float>(acc) * (w.scale * act_scale[i]);
        }
    });
}

void ternary_matmul(const TernaryWeights& w, const int8_t* xq, int64_t xq_stride,
                    const float* act_scale, int64_t m, float* y, int64_t y_stride) {
    switch (active_isa()) {
        case Isa::kAvx512:
            return ternary_matmul_avx512(w, xq, xq_stride, act_scale, m, y, y_stride);
        case Isa::kAvx2:
            return ternary_matmul_avx2(w, xq, xq_stride, act_scale, m, y, y_stride);
        case Isa::kScalar:
            break;
    }
    ternary_matmul_scalar(w, xq, xq_stride, act_scale, m, y, y_stride);
}

void ternary_matmul_f32(const TernaryWeights& w, const float* x, int64_t x_stride, int64_t m,
                        float* y, int64_t y_stride) {
    check_product_args("ternary_matmul_f32", w, x, x_stride, w.cols, m, y, y_stride);
    parallel_for(w.rows, true, [&](int64_t n) {
        for (int64_t i = 0; i < m; ++i) {
            const float* xi = x + i * x_stride;
            float acc = 0.0f;
            for (int64_t k = 0; k < w.cols; ++k) {
                int code = (w.codes[packed_byte_index(n, k, w.cols)] >> packed_bit_shift(k)) & 3;
                acc += code == 2 ? xi[k] : (code == 0 ? -xi[k] : 0.0f);
            }
            y[i * y_stride + n] = acc * w.scale;
        }
    });
}

}  // namespace bitttt::kernels
