// int8 products (the opt-in int8 lm_head): the weight quantization, every ISA version against the
// scalar reference bit for bit (the integer sums are exact) on random data, odd shapes and the
// extreme codes, decode against batched tokens, the error bound against the fp32 product that
// int8_matmul.hpp states, and clear errors for bad arguments.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/aligned_buffer.hpp"
#include "core/cpu_features.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "kernels/cpu/int8_matmul.hpp"
#include "kernels/cpu/ternary.hpp"

namespace bitttt {
namespace {

using kernels::Int8Weights;
using Fn = void (*)(const Int8Weights&, const int8_t*, int64_t, const float*, int64_t, float*,
                    int64_t);

std::vector<std::pair<const char*, Fn>> versions() {
    std::vector<std::pair<const char*, Fn>> v = {{"dispatch", kernels::int8_matmul}};
    if (detected_isa() >= Isa::kAvx2) v.emplace_back("avx2", kernels::int8_matmul_avx2);
    if (detected_isa() >= Isa::kAvx512) v.emplace_back("avx512", kernels::int8_matmul_avx512);
    return v;
}

// A quantized matrix with its buffers.
struct Quantized {
    AlignedBuffer<int8_t> q;
    AlignedBuffer<float> scale;
    AlignedBuffer<int32_t> row_sum;
    Int8Weights w;
    Quantized(const float* f, int64_t rows, int64_t cols)
        : q(static_cast<size_t>(rows * kernels::int8_row_stride(cols))),
          scale(static_cast<size_t>(rows)),
          row_sum(static_cast<size_t>(rows)) {
        kernels::quantize_int8_rows(f, rows, cols, q.data(), scale.data(), row_sum.data());
        w = {q.data(), scale.data(), row_sum.data(), rows, cols};
    }
};

// Quantized activations of m tokens (rows xq_stride apart, stride >= cols).
struct Acts {
    AlignedBuffer<int8_t> xq;
    AlignedBuffer<float> scale;
    int64_t stride;
    Acts(const std::vector<float>& x, int64_t m, int64_t cols, int64_t x_stride)
        : xq(static_cast<size_t>(m * kernels::packed_cols(cols + 5))),
          scale(static_cast<size_t>(m)),
          stride(kernels::packed_cols(cols + 5)) {
        kernels::quantize_activations_scalar(x.data(), m, cols, x_stride, xq.data(), stride,
                                             scale.data());
    }
};

// Every version gives the scalar reference's bits, on random data and odd shapes (rows and
// cols not multiples of 4, 16, 32 or 64; cols past one and two 64-byte blocks; the multi-threaded
// path), token strides past the row, and writes nothing outside the outputs.
TEST(Int8Matmul, EveryVersionMatchesScalarBitForBit) {
    Rng rng(21);
    const int64_t shapes[][3] = {{1, 1, 1},     {3, 5, 1},     {4, 16, 1},    {5, 31, 2},
                                 {7, 32, 3},    {9, 33, 5},    {16, 64, 4},   {33, 100, 7},
                                 {5, 256, 9},   {64, 47, 3},   {6, 63, 1},    {3, 65, 4},
                                 {2, 127, 6},   {11, 129, 8},  {300, 70, 7},  {1030, 130, 1},
                                 {257, 256, 5}, {37, 2049, 3}, {1001, 200, 2}};
    for (const auto& [rows, cols, m] : shapes) {
        std::vector<float> wf(static_cast<size_t>(rows * cols)), x(static_cast<size_t>(m * cols));
        for (auto& v : wf) v = rng.normal();
        for (auto& v : x) v = rng.normal() * 3.0f;
        const Quantized q(wf.data(), rows, cols);
        const Acts a(x, m, cols, cols);
        const int64_t y_stride = rows + 3;
        std::vector<float> ref(static_cast<size_t>(m * y_stride), -7.0f);
        kernels::int8_matmul_scalar(q.w, a.xq.data(), a.stride, a.scale.data(), m, ref.data(),
                                    y_stride);
        for (const auto& [name, fn] : versions()) {
            std::vector<float> y(static_cast<size_t>(m * y_stride), -7.0f);
            fn(q.w, a.xq.data(), a.stride, a.scale.data(), m, y.data(), y_stride);
            ASSERT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0)
                << name << " " << rows << "x" << cols << " m=" << m;
        }
        for (int64_t i = 0; i < m; ++i)
            for (int64_t n = rows; n < y_stride; ++n) ASSERT_EQ(ref[i * y_stride + n], -7.0f);
    }
}

// The extreme codes: every weight and activation ±127 (largest pair sums, where a saturating
// int16 step would clip) and −127 · −127 at the longest rows allowed, where the sum is within 1%
// of 2³¹: the exact integer times the scales.
TEST(Int8Matmul, ExtremeCodesAreExact) {
    for (const int64_t cols : {int64_t{64}, int64_t{1000}, kernels::kInt8MaxCols}) {
        const int64_t rows = 5, m = 2;
        std::vector<float> wf(static_cast<size_t>(rows * cols)), x(static_cast<size_t>(m * cols));
        Rng rng(static_cast<uint64_t>(cols));
        for (int64_t n = 0; n < rows; ++n)
            for (int64_t k = 0; k < cols; ++k)
                wf[n * cols + k] = n == 0 ? -1.0f : (n == 1 ? 1.0f : (rng.below(2) ? 1.0f : -1.0f));
        for (int64_t k = 0; k < cols; ++k) {
            x[k] = -2.0f;
            x[cols + k] = rng.below(2) ? 2.0f : -2.0f;
        }
        const Quantized q(wf.data(), rows, cols);
        const Acts a(x, m, cols, cols);
        std::vector<float> ref(static_cast<size_t>(m * rows));
        kernels::int8_matmul_scalar(q.w, a.xq.data(), a.stride, a.scale.data(), m, ref.data(),
                                    rows);
        // Rows of all −1 against x of all −2: Σ = 127² · cols exactly, times (1/127) (2/127).
        const float s = (1.0f / 127.0f) * (2.0f / 127.0f);
        const float exact = static_cast<float>(int64_t{127 * 127} * cols) * s;
        EXPECT_EQ(ref.front(), exact);
        EXPECT_EQ(ref.at(1), -exact);
        for (const auto& [name, fn] : versions()) {
            std::vector<float> y(static_cast<size_t>(m * rows));
            fn(q.w, a.xq.data(), a.stride, a.scale.data(), m, y.data(), rows);
            ASSERT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0)
                << name << " cols=" << cols;
        }
    }
}

// A token's logits do not depend on how many tokens share the call (decode = batched prompt).
TEST(Int8Matmul, DecodeMatchesBatched) {
    Rng rng(5);
    const int64_t rows = 203, cols = 171, m = 7;
    std::vector<float> wf(static_cast<size_t>(rows * cols)), x(static_cast<size_t>(m * cols));
    for (auto& v : wf) v = rng.normal();
    for (auto& v : x) v = rng.normal();
    const Quantized q(wf.data(), rows, cols);
    const Acts a(x, m, cols, cols);
    for (const auto& [name, fn] : versions()) {
        std::vector<float> all(static_cast<size_t>(m * rows)), one(static_cast<size_t>(rows));
        fn(q.w, a.xq.data(), a.stride, a.scale.data(), m, all.data(), rows);
        for (int64_t i = 0; i < m; ++i) {
            fn(q.w, a.xq.data() + i * a.stride, a.stride, a.scale.data() + i, 1, one.data(), rows);
            ASSERT_EQ(std::memcmp(one.data(), all.data() + i * rows, one.size() * sizeof(float)), 0)
                << name << " token " << i;
        }
    }
}

// The quantized weights: round half to even of w · 127 / max|w|, clamped, zero padding, the row
// sums, and a row of zeros with scale 0.
TEST(Int8Matmul, QuantizeRows) {
    const int64_t rows = 3, cols = 70;
    std::vector<float> wf(static_cast<size_t>(rows * cols), 0.0f);
    Rng rng(9);
    for (int64_t k = 0; k < cols; ++k) wf[k] = rng.normal();
    wf[5] = 4.0f;  // row 0's absmax: q = w · 31.75
    for (int64_t k = 0; k < cols; ++k) wf[2 * cols + k] = (k % 2 ? 1.0f : -1.0f) * 0.5f;
    const Quantized q(wf.data(), rows, cols);
    const int64_t stride = kernels::int8_row_stride(cols);
    ASSERT_EQ(stride, 128);
    EXPECT_EQ(q.scale[0], 4.0f / 127.0f);
    int32_t sum = 0;
    for (int64_t k = 0; k < cols; ++k) {
        const float r = std::nearbyint(wf[k] * (127.0f / 4.0f));
        EXPECT_EQ(q.q[k], static_cast<int8_t>(r)) << k;
        sum += q.q[k];
    }
    EXPECT_EQ(q.row_sum[0], sum);
    EXPECT_EQ(q.q[5], 127);
    for (int64_t k = cols; k < stride; ++k) EXPECT_EQ(q.q[k], 0);
    EXPECT_EQ(q.scale[1], 0.0f);  // a row of zeros
    EXPECT_EQ(q.row_sum[1], 0);
    for (int64_t k = 0; k < stride; ++k) EXPECT_EQ(q.q[stride + k], 0);
    for (int64_t k = 0; k < cols; ++k) EXPECT_EQ(q.q[2 * stride + k], k % 2 ? 127 : -127);
    EXPECT_EQ(q.row_sum[2], 0);
}

// |y_int8 − y_f32| ≤ Σ_k (|x_k| s_n + |w_k| a_i + s_n a_i / 2) / 2, the bound int8_matmul.hpp
// states (plus float rounding of the two scale products).
TEST(Int8Matmul, ErrorWithinStatedBound) {
    Rng rng(77);
    const int64_t rows = 97, cols = 301, m = 3;
    std::vector<float> wf(static_cast<size_t>(rows * cols)), x(static_cast<size_t>(m * cols));
    for (auto& v : wf) v = rng.normal() * 0.05f;
    for (auto& v : x) v = rng.normal() * 2.0f;
    const Quantized q(wf.data(), rows, cols);
    const Acts a(x, m, cols, cols);
    std::vector<float> y(static_cast<size_t>(m * rows));
    kernels::int8_matmul(q.w, a.xq.data(), a.stride, a.scale.data(), m, y.data(), rows);
    double worst = 0;
    for (int64_t i = 0; i < m; ++i)
        for (int64_t n = 0; n < rows; ++n) {
            double exact = 0, bound = 0;
            const double s = q.scale[n], as = a.scale[i];
            for (int64_t k = 0; k < cols; ++k) {
                const double wk = wf[n * cols + k], xk = x[i * cols + k];
                exact += wk * xk;
                bound += (std::fabs(xk) * s + std::fabs(wk) * as + s * as / 2) / 2;
            }
            const double err = std::fabs(y[i * rows + n] - exact);
            ASSERT_LE(err, bound * (1 + 1e-5) + 1e-6) << n << " " << i;
            worst = std::max(worst, err / bound);
        }
    EXPECT_LT(worst, 0.5);  // the bound is loose for random signs: errors cancel
}

TEST(Int8Matmul, BadArgumentsThrow) {
    std::vector<float> wf(64, 1.0f);
    const Quantized q(wf.data(), 2, 32);
    Acts a(std::vector<float>(32, 1.0f), 1, 32, 32);
    std::vector<float> y(2);
    Int8Weights bad = q.w;
    bad.cols = 0;
    EXPECT_THROW(kernels::int8_matmul(bad, a.xq.data(), 32, a.scale.data(), 1, y.data(), 2), Error);
    bad = q.w;
    bad.cols = kernels::kInt8MaxCols + 1;
    EXPECT_THROW(kernels::int8_matmul(bad, a.xq.data(), 32, a.scale.data(), 1, y.data(), 2), Error);
    bad = q.w;
    bad.row_sum = nullptr;
    EXPECT_THROW(kernels::int8_matmul(bad, a.xq.data(), 32, a.scale.data(), 1, y.data(), 2), Error);
    EXPECT_THROW(kernels::int8_matmul(q.w, a.xq.data(), 31, a.scale.data(), 2, y.data(), 2),
                 Error);  // token rows overlap
    EXPECT_THROW(kernels::int8_matmul(q.w, a.xq.data(), 32, a.scale.data(), 2, y.data(), 1),
                 Error);  // output rows overlap
    EXPECT_THROW(kernels::int8_matmul_scalar(q.w, nullptr, 32, a.scale.data(), 1, y.data(), 2),
                 Error);
    // A non-finite weight names its row.
    std::vector<float> nan(3 * 40, 0.5f);
    nan[2 * 40 + 7] = std::numeric_limits<float>::quiet_NaN();
    nan[1 * 40 + 3] = std::numeric_limits<float>::infinity();
    AlignedBuffer<int8_t> qb(3 * 64);
    AlignedBuffer<float> sb(3);
    AlignedBuffer<int32_t> rb(3);
    try {
        kernels::quantize_int8_rows(nan.data(), 3, 40, qb.data(), sb.data(), rb.data());
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("row 1 "), std::string::npos) << e.what();
    }
    EXPECT_THROW(kernels::quantize_int8_rows(wf.data(), 2, 0, qb.data(), sb.data(), rb.data()),
                 Error);
}

}  // namespace
}  // namespace bitttt
