// fp32 products (lm_head): every ISA version against the scalar reference, and the reference
// against a double-precision dot product, on random data and odd shapes.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/cpu_features.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "kernels/cpu/f32_matmul.hpp"

namespace bitttt {
namespace {

using Fn = void (*)(const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*,
                    int64_t);

std::vector<std::pair<const char*, Fn>> versions() {
    std::vector<std::pair<const char*, Fn>> v = {{"scalar", kernels::f32_matmul_scalar},
                                                 {"dispatch", kernels::f32_matmul}};
    if (detected_isa() >= Isa::kAvx2) v.emplace_back("avx2", kernels::f32_matmul_avx2);
    if (detected_isa() >= Isa::kAvx512) v.emplace_back("avx512", kernels::f32_matmul_avx512);
    return v;
}

TEST(F32Matmul, EveryVersionMatchesDoubleReference) {
    Rng rng(11);
    const int64_t shapes[][3] = {{1, 1, 1},
                                 {3, 5, 1},
                                 {4, 16, 1},
                                 {7, 17, 2},
                                 {9, 33, 5},
                                 {16, 64, 4},
                                 {33, 100, 7},
                                 {5, 256, 9},
                                 {64, 31, 3},
                                 // past kParallelMinWork: the multi-threaded path
                                 {300, 70, 7},
                                 {1030, 130, 1}};
    for (const auto& [rows, cols, m] : shapes) {
        const int64_t x_stride = cols + 3, y_stride = rows + 2;  // strides past the row length
        std::vector<float> w(static_cast<size_t>(rows * cols)),
            x(static_cast<size_t>(m * x_stride));
        for (auto& v : w) v = rng.normal();
        for (auto& v : x) v = rng.normal();
        for (const auto& [name, fn] : versions()) {
            std::vector<float> y(static_cast<size_t>(m * y_stride), -7.0f);
            fn(w.data(), rows, cols, x.data(), x_stride, m, y.data(), y_stride);
            for (int64_t i = 0; i < m; ++i) {
                for (int64_t n = 0; n < rows; ++n) {
                    double ref = 0, mag = 0;
                    for (int64_t k = 0; k < cols; ++k) {
                        ref += static_cast<double>(w[n * cols + k]) * x[i * x_stride + k];
                        mag +=
                            std::fabs(static_cast<double>(w[n * cols + k]) * x[i * x_stride + k]);
                    }
                    ASSERT_NEAR(y[i * y_stride + n], ref, 1e-5 * mag + 1e-7)
                        << name << " " << rows << "x" << cols << " m=" << m;
                }
                // The padding between output rows is left alone.
                for (int64_t n = rows; n < y_stride; ++n) ASSERT_EQ(y[i * y_stride + n], -7.0f);
            }
        }
    }
}

TEST(F32Matmul, DecodeAndBatchedAgreeExactly) {
    // The model's "forward of a prompt equals forward token by token" rests on this: a token's
    // result does not depend on how many tokens are computed with it.
    Rng rng(5);
    const int64_t rows = 37, cols = 45, m = 6;
    std::vector<float> w(rows * cols), x(m * cols), y(m * rows), y1(rows);
    for (auto& v : w) v = rng.normal();
    for (auto& v : x) v = rng.normal();
    kernels::f32_matmul(w.data(), rows, cols, x.data(), cols, m, y.data(), rows);
    for (int64_t i = 0; i < m; ++i) {
        kernels::f32_matmul(w.data(), rows, cols, x.data() + i * cols, cols, 1, y1.data(), rows);
        for (int64_t n = 0; n < rows; ++n) ASSERT_EQ(y1[n], y[i * rows + n]);
    }
}

TEST(F32Matmul, BadArgumentsAreErrors) {
    std::vector<float> w(12), x(8), y(8);
    EXPECT_THROW(kernels::f32_matmul(w.data(), -1, 4, x.data(), 4, 1, y.data(), 3), Error);
    EXPECT_THROW(kernels::f32_matmul(nullptr, 3, 4, x.data(), 4, 1, y.data(), 3), Error);
    EXPECT_THROW(kernels::f32_matmul(w.data(), 3, 4, x.data(), 2, 2, y.data(), 3), Error);
    EXPECT_THROW(kernels::f32_matmul(w.data(), 3, 4, x.data(), 4, 2, y.data(), 1), Error);
    EXPECT_NO_THROW(kernels::f32_matmul(w.data(), 3, 4, x.data(), 4, 0, y.data(), 3));
}

}  // namespace
}  // namespace bitttt
