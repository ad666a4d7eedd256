// bf16-weight products: argument checks, the scalar reference and the ISA dispatch.
#include "kernels/cpu/bf16_matmul.hpp"

#include <bit>

#include "core/cpu_features.hpp"
#include "core/error.hpp"
#include "core/team.hpp"

namespace bitttt::kernels {
namespace {

void check_args(const uint16_t* w, int64_t rows, int64_t cols, const float* x, int64_t x_stride,
                int64_t m, const float* y, int64_t y_stride) {
    constexpr int64_t kMaxDim = int64_t{1} << 40;  // keeps every offset far from overflow
    check(rows >= 0 && cols >= 0 && rows <= kMaxDim && cols <= kMaxDim && m >= 0 && m <= kMaxDim,
          ErrorKind::kInvalidArgument, "bf16_matmul: shape [{}, {}] x {} tokens is out of range",
          rows, cols, m);
    if (m == 0 || rows == 0) return;
    check(w != nullptr && x != nullptr && y != nullptr, ErrorKind::kInvalidArgument,
          "bf16_matmul: null weight, input or output buffer");
    check(m == 1 || (x_stride >= cols && x_stride <= kMaxDim), ErrorKind::kDimensionMismatch,
          "bf16_matmul: input stride {} is not in [{}, 2^40]", x_stride, cols);
    check(m == 1 || (y_stride >= rows && y_stride <= kMaxDim), ErrorKind::kDimensionMismatch,
          "bf16_matmul: output stride {} is not in [{}, 2^40]", y_stride, rows);
}

}  // namespace

void bf16_matmul_scalar(const uint16_t* w, int64_t rows, int64_t cols, const float* x,
                        int64_t x_stride, int64_t m, float* y, int64_t y_stride) {
    check_args(w, rows, cols, x, x_stride, m, y, y_stride);
    parallel_for(rows, true, [&](int64_t n) {
        const uint16_t* wn = w + n * cols;
        for (int64_t i = 0; i < m; ++i) {
            const float* xi = x + i * x_stride;
            float acc = 0.0f;
            for (int64_t k = 0; k < cols; ++k)
                acc += std::bit_cast<float>(static_cast<uint32_t>(wn[k]) << 16) * xi[k];
            y[i * y_stride + n] = acc;
        }
    });
}

void bf16_matmul(const uint16_t* w, int64_t rows, int64_t cols, const float* x, int64_t x_stride,
                 int64_t m, float* y, int64_t y_stride) {
    check_args(w, rows, cols, x, x_stride, m, y, y_stride);
    if (m == 0 || rows == 0) return;
    switch (active_isa()) {
        case Isa::kAvx512:
            if (has_avx512_bf16())
                return bf16_matmul_avx512bf16(w, rows, cols, x, x_stride, m, y, y_stride);
            return bf16_matmul_avx512(w, rows, cols, x, x_stride, m, y, y_stride);
        case Isa::kAvx2:
            return bf16_matmul_avx2(w, rows, cols, x, x_stride, m, y, y_stride);
        case Isa::kScalar:
            break;
    }
    bf16_matmul_scalar(w, rows, cols, x, x_stride, m, y, y_stride);
}

}  // namespace bitttt::kernels
