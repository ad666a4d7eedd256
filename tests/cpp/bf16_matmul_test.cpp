// bf16-weight products (the inference lm_head): every ISA version against a double-precision
// dot product of the same bf16 weights, on random data and odd shapes; decode and batched agree
// exactly; the distance to the fp32 product of the unrounded weights stays within the bound
// bf16_matmul.hpp states.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/cpu_features.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "io/safetensors.hpp"
#include "kernels/cpu/bf16_matmul.hpp"

namespace bitttt {
namespace {

using Fn = void (*)(const uint16_t*, int64_t, int64_t, const float*, int64_t, int64_t, float*,
                    int64_t);

std::vector<std::pair<const char*, Fn>> versions() {
    std::vector<std::pair<const char*, Fn>> v = {{"scalar", kernels::bf16_matmul_scalar},
                                                 {"dispatch", kernels::bf16_matmul}};
    if (detected_isa() >= Isa::kAvx2) v.emplace_back("avx2", kernels::bf16_matmul_avx2);
    if (detected_isa() >= Isa::kAvx512) v.emplace_back("avx512", kernels::bf16_matmul_avx512);
    if (has_avx512_bf16()) v.emplace_back("avx512bf16", kernels::bf16_matmul_avx512bf16);
    return v;
}

// Relative tolerance against the double-precision product of the same bf16 weights: fp32
// summation, plus 2⁻¹⁶ for the AVX512_BF16 version's 16-bit x (the dispatcher may pick it).
double tolerance(const std::string& name) {
    return name == "scalar" || name == "avx2" || name == "avx512" ? 1e-5
                                                                  : 1e-5 + std::ldexp(1, -16);
}

std::vector<uint16_t> to_bf16(const std::vector<float>& f) {
    std::vector<uint16_t> h(f.size());
    for (size_t i = 0; i < f.size(); ++i) h[i] = io::f32_to_bf16(f[i]);
    return h;
}

TEST(Bf16Matmul, EveryVersionMatchesDoubleReference) {
    Rng rng(12);
    const int64_t shapes[][3] = {{1, 1, 1},      {3, 5, 1},    {4, 16, 1},  {5, 31, 2},
                                 {7, 32, 3},     {9, 33, 5},   {16, 64, 4}, {33, 100, 7},
                                 {5, 256, 9},    {64, 47, 3},  {6, 63, 1},  {3, 65, 4},
                                 {300, 70, 7},  // past kParallelMinWork: the multi-threaded path
                                 {1030, 130, 1}, {257, 256, 5}};
    for (const auto& [rows, cols, m] : shapes) {
        const int64_t x_stride = cols + 3, y_stride = rows + 2;  // strides past the row length
        std::vector<float> wf(static_cast<size_t>(rows * cols)),
            x(static_cast<size_t>(m * x_stride));
        for (auto& v : wf) v = rng.normal();
        for (auto& v : x) v = rng.normal();
        const std::vector<uint16_t> w = to_bf16(wf);
        for (const auto& [name, fn] : versions()) {
            std::vector<float> y(static_cast<size_t>(m * y_stride), -7.0f);
            fn(w.data(), rows, cols, x.data(), x_stride, m, y.data(), y_stride);
            for (int64_t i = 0; i < m; ++i) {
                for (int64_t n = 0; n < rows; ++n) {
                    double ref = 0, mag = 0;
                    for (int64_t k = 0; k < cols; ++k) {
                        const double p = static_cast<double>(io::bf16_to_f32(w[n * cols + k])) *
                                         x[i * x_stride + k];
                        ref += p;
                        mag += std::fabs(p);
                    }
                    ASSERT_NEAR(y[i * y_stride + n], ref, tolerance(name) * mag + 1e-7)
                        << name << " " << rows << "x" << cols << " m=" << m;
                }
                for (int64_t n = rows; n < y_stride; ++n) ASSERT_EQ(y[i * y_stride + n], -7.0f);
            }
        }
    }
}

// Worst over rows of |y − Σ w x| / ((2⁻⁸ + 2⁻¹⁶ + 1e-5) Σ|w x|), y = bf16_matmul(w16, x): ≤ 1 is
// bf16_matmul.hpp's bound against the fp32 product of the unrounded weights wf.
double worst_bound_ratio(const std::vector<float>& wf, const std::vector<uint16_t>& w16,
                         const std::vector<float>& x, int64_t rows, int64_t cols) {
    std::vector<float> y(static_cast<size_t>(rows));
    kernels::bf16_matmul(w16.data(), rows, cols, x.data(), cols, 1, y.data(), rows);
    double worst = 0;
    for (int64_t n = 0; n < rows; ++n) {
        double exact = 0, mag = 0;
        for (int64_t k = 0; k < cols; ++k) {
            exact += static_cast<double>(wf[n * cols + k]) * x[k];
            mag += std::fabs(static_cast<double>(wf[n * cols + k]) * x[k]);
        }
        const double bound = (std::ldexp(1, -8) + std::ldexp(1, -16) + 1e-5) * mag;
        worst = std::max(worst, std::fabs(y[n] - exact) / bound);
    }
    return worst;
}

// x_k = ±1 with the sign of row 0's rounding error at k: row 0's errors all add up.
std::vector<float> aligned_input(const std::vector<float>& wf, const std::vector<uint16_t>& w16,
                                 int64_t cols) {
    std::vector<float> x(static_cast<size_t>(cols));
    for (int64_t k = 0; k < cols; ++k) x[k] = io::bf16_to_f32(w16[k]) > wf[k] ? -1.0f : 1.0f;
    return x;
}

TEST(Bf16Matmul, WithinTheStatedBoundOfTheFp32Product) {
    // Random inputs stay far inside the bound; inputs whose signs line up with the rounding
    // errors reach a good part of it, so it is not loose; weights rounded to two bits fewer
    // (truncating 2 more mantissa bits) break it, so it can fail.
    Rng rng(3);
    const int64_t rows = 64, cols = 256;
    std::vector<float> wf(rows * cols), x(cols);
    for (auto& v : wf) v = rng.normal() * 0.06f;
    for (auto& v : x) v = rng.normal();
    const std::vector<uint16_t> w = to_bf16(wf);
    EXPECT_LE(worst_bound_ratio(wf, w, x, rows, cols), 0.2);
    const double aligned = worst_bound_ratio(wf, w, aligned_input(wf, w, cols), rows, cols);
    EXPECT_LE(aligned, 1.0);
    EXPECT_GE(aligned, 0.2);
    std::vector<uint16_t> coarse(w.size());
    for (size_t i = 0; i < w.size(); ++i) coarse[i] = static_cast<uint16_t>(w[i] & 0xFFFC);
    EXPECT_GT(worst_bound_ratio(wf, coarse, aligned_input(wf, coarse, cols), rows, cols), 1.0);
}

TEST(Bf16Matmul, DecodeAndBatchedAgreeExactly) {
    // The model's "forward of a prompt equals forward token by token" rests on this.
    Rng rng(5);
    const int64_t rows = 37, cols = 77, m = 6;
    std::vector<float> wf(rows * cols), x(m * cols), y(m * rows), y1(rows);
    for (auto& v : wf) v = rng.normal();
    for (auto& v : x) v = rng.normal();
    const std::vector<uint16_t> w = to_bf16(wf);
    for (const auto& [name, fn] : versions()) {
        fn(w.data(), rows, cols, x.data(), cols, m, y.data(), rows);
        for (int64_t i = 0; i < m; ++i) {
            fn(w.data(), rows, cols, x.data() + i * cols, cols, 1, y1.data(), rows);
            for (int64_t n = 0; n < rows; ++n) ASSERT_EQ(y1[n], y[i * rows + n]) << name;
        }
    }
}

TEST(Bf16Matmul, BadArgumentsAreErrors) {
    std::vector<uint16_t> w(12);
    std::vector<float> x(8), y(8);
    EXPECT_THROW(kernels::bf16_matmul(w.data(), -1, 4, x.data(), 4, 1, y.data(), 3), Error);
    EXPECT_THROW(kernels::bf16_matmul(nullptr, 3, 4, x.data(), 4, 1, y.data(), 3), Error);
    EXPECT_THROW(kernels::bf16_matmul(w.data(), 3, 4, x.data(), 2, 2, y.data(), 3), Error);
    EXPECT_THROW(kernels::bf16_matmul(w.data(), 3, 4, x.data(), 4, 2, y.data(), 1), Error);
    EXPECT_NO_THROW(kernels::bf16_matmul(w.data(), 3, 4, x.data(), 4, 0, y.data(), 3));
}

}  // namespace
}  // namespace bitttt
