// Ternary kernels: quantization against the formulas of DESIGN.md §2.1 written out naively here,
// the packed layout, the scalar product against a plain integer dot product, and every ISA
// bit-exact against the scalar reference on random data and odd shapes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/aligned_buffer.hpp"
#include "core/cpu_features.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "kernels/cpu/ternary.hpp"
#include "kernels/cpu/ternary_isa.hpp"

namespace bitttt::kernels {
namespace {

// Round half to even, written without the floating-point environment.
double round_half_even(double v) {
    double f = std::floor(v);
    double diff = v - f;
    if (diff > 0.5) return f + 1;
    if (diff < 0.5) return f;
    return std::fmod(f, 2.0) == 0.0 ? f : f + 1;
}

using MatmulFn = void (*)(const TernaryWeights&, const int8_t*, int64_t, const float*, int64_t,
                          float*, int64_t);
using QuantizeFn = void (*)(const float*, int64_t, int64_t, int64_t, int8_t*, int64_t, float*);

struct IsaKernels {
    const char* name;
    Isa isa;
    MatmulFn matmul;
    QuantizeFn quantize;
};
// The SIMD versions this CPU can run.
std::vector<IsaKernels> simd_kernels() {
    std::vector<IsaKernels> out;
    if (detected_isa() >= Isa::kAvx2)
        out.push_back({"avx2", Isa::kAvx2, ternary_matmul_avx2, quantize_activations_avx2});
    if (detected_isa() >= Isa::kAvx512)
        out.push_back({"avx512", Isa::kAvx512, ternary_matmul_avx512, quantize_activations_avx512});
    return out;
}

// Random ternary weights, packed, with a known unpacked copy.
struct RandomWeights {
    std::vector<int8_t> q;
    AlignedBuffer<uint8_t> codes;
    TernaryWeights w;
    RandomWeights(int64_t rows, int64_t cols, Rng& rng) : q(rows * cols) {
        for (auto& v : q) v = static_cast<int8_t>(static_cast<int>(rng.below(3)) - 1);
        codes.resize(packed_bytes(rows, cols));
        pack_ternary(q.data(), rows, cols, codes.data());
        w = {codes.data(), rows, cols, 0.5f + rng.uniform()};
    }
};

// int8 activations with values over the whole [-127, 127] range (the extremes included), rows
// of `stride` bytes starting `offset` bytes into the buffer, zero padding up to packed_cols.
struct RandomActivations {
    AlignedBuffer<int8_t> storage;
    int8_t* xq;
    std::vector<float> scale;
    RandomActivations(int64_t m, int64_t cols, int64_t stride, int64_t offset, Rng& rng)
        : storage(offset + m * stride), xq(storage.data() + offset), scale(m) {
        for (int64_t i = 0; i < m; ++i) {
            for (int64_t k = 0; k < cols; ++k) {
                uint64_t r = rng.below(16);
                xq[i * stride + k] = static_cast<int8_t>(
                    r == 0 ? 127 : (r == 1 ? -127 : static_cast<int>(rng.below(255)) - 127));
            }
            scale[i] = 1e-3f * (1.0f + rng.uniform());
        }
    }
};

TEST(TernaryQuant, ScaleIsMeanAbs) {
    Rng rng(1);
    std::vector<float> w(1001);
    for (auto& v : w) v = rng.normal();
    long double sum = 0;
    for (float v : w) sum += std::fabs(static_cast<long double>(v));
    EXPECT_NEAR(ternary_scale(w.data(), 1001), static_cast<double>(sum / 1001), 1e-6);
    EXPECT_EQ(ternary_scale(w.data(), 0), 0.0f);
}

TEST(TernaryQuant, WeightsRoundHalfToEvenAndClamp) {
    // beta = 1: beta + 1e-8 rounds to exactly 1 in float, so w / (beta + 1e-8) = w.
    const std::vector<float> w = {0.5f,  -0.5f, 0.49f, 0.51f, 1.5f,
                                  -1.5f, 0.0f,  3.0f,  -7.0f, -0.51f};
    const std::vector<int8_t> expected = {0, 0, 0, 1, 1, -1, 0, 1, -1, -1};
    std::vector<int8_t> q(w.size());
    quantize_ternary(w.data(), static_cast<int64_t>(w.size()), 1.0f, q.data());
    EXPECT_EQ(q, expected);
}

TEST(TernaryQuant, WeightsMatchNaiveFormula) {
    Rng rng(2);
    std::vector<float> w(4097);
    for (auto& v : w) v = 0.02f * rng.normal();
    const float beta = ternary_scale(w.data(), 4097);
    std::vector<int8_t> q(w.size());
    quantize_ternary(w.data(), 4097, beta, q.data());
    int zeros = 0;
    for (size_t i = 0; i < w.size(); ++i) {
        double r = round_half_even(static_cast<double>(w[i] / (beta + 1e-8f)));
        ASSERT_EQ(q[i], static_cast<int8_t>(std::fmin(1.0, std::fmax(-1.0, r)))) << i;
        zeros += q[i] == 0;
    }
    // Gaussian weights: |w| < beta/2 (roughly |z| < 0.4) for about a third of them.
    EXPECT_GT(zeros, 1000);
    EXPECT_LT(zeros, 1800);
}

// Naive activation quantization: gamma = max(max|x|, 1e-5), xq = clamp(rne(x * (127/gamma))).
void naive_quantize(const float* x, int64_t k, int8_t* q, float* act_scale) {
    float gamma = 1e-5f;
    for (int64_t j = 0; j < k; ++j) gamma = std::fmax(gamma, std::fabs(x[j]));
    const float s = 127.0f / gamma;
    for (int64_t j = 0; j < k; ++j) {
        double r = round_half_even(static_cast<double>(x[j] * s));
        q[j] = static_cast<int8_t>(std::fmin(127.0, std::fmax(-127.0, r)));
    }
    *act_scale = gamma / 127.0f;
}

TEST(TernaryQuant, ActivationsTiesRoundToEven) {
    // gamma = 127 gives the scale 127/gamma = 1 exactly, so x * s = x and the ties stay ties.
    const std::vector<float> x = {127.0f, 0.5f, 1.5f, 2.5f, -2.5f, -0.5f, 3.5f, -127.0f, 0.0f};
    const std::vector<int8_t> expected = {127, 0, 2, 2, -2, 0, 4, -127, 0};
    std::vector<int8_t> q(16, 99);
    float scale = 0;
    quantize_activations_scalar(x.data(), 1, 9, 9, q.data(), 16, &scale);
    EXPECT_EQ(std::vector<int8_t>(q.begin(), q.begin() + 9), expected);
    for (int j = 9; j < 16; ++j) EXPECT_EQ(q[j], 0) << "padding";
    EXPECT_EQ(scale, 1.0f);
}

TEST(TernaryQuant, ActivationsMatchNaiveFormulaOnEveryIsa) {
    Rng rng(3);
    for (int64_t k : {1, 3, 17, 255, 4097}) {
        const int64_t m = 5, x_stride = k + 3, q_stride = packed_cols(k) + 7;
        std::vector<float> x(m * x_stride);
        for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < k; ++j)
                x[i * x_stride + j] = (i == 3 ? 1e-7f : 3.0f) * rng.normal();  // row 3: gamma floor
        std::vector<int8_t> expected(packed_cols(k), 0);
        std::vector<IsaKernels> isas = simd_kernels();
        isas.insert(isas.begin(), {"scalar", Isa::kScalar, nullptr, quantize_activations_scalar});
        for (const auto& isa : isas) {
            std::vector<int8_t> q(m * q_stride, 77);
            std::vector<float> scale(m);
            isa.quantize(x.data(), m, k, x_stride, q.data(), q_stride, scale.data());
            for (int64_t i = 0; i < m; ++i) {
                float expected_scale;
                naive_quantize(&x[i * x_stride], k, expected.data(), &expected_scale);
                EXPECT_EQ(scale[i], expected_scale) << isa.name << " k=" << k << " row " << i;
                for (int64_t j = 0; j < packed_cols(k); ++j)
                    ASSERT_EQ(q[i * q_stride + j], expected[j])
                        << isa.name << " k=" << k << " j=" << j;
                for (int64_t j = packed_cols(k); j < q_stride; ++j)
                    ASSERT_EQ(q[i * q_stride + j], 77) << "wrote past the padded row";
            }
        }
    }
}

TEST(TernaryQuant, ActivationsWithNanAndInfAgreeAcrossIsas) {
    // Inputs must be finite; with NaN/Inf the result is still defined and the same on every ISA.
    const int64_t k = 40;
    std::vector<float> x(3 * k);
    for (int64_t j = 0; j < 3 * k; ++j) x[j] = 0.1f * static_cast<float>(j % 17) - 0.7f;
    x[5] = std::nanf("");
    x[k + 33] = INFINITY;
    x[2 * k + 39] = -std::nanf("");
    std::vector<int8_t> ref(3 * 48);
    std::vector<float> ref_scale(3);
    quantize_activations_scalar(x.data(), 3, k, k, ref.data(), 48, ref_scale.data());
    EXPECT_EQ(ref[5], 0);
    for (const auto& isa : simd_kernels()) {
        std::vector<int8_t> q(3 * 48);
        std::vector<float> scale(3);
        isa.quantize(x.data(), 3, k, k, q.data(), 48, scale.data());
        EXPECT_EQ(q, ref) << isa.name;
        for (int i = 0; i < 3; ++i)
            EXPECT_EQ(std::memcmp(&scale[i], &ref_scale[i], sizeof(float)), 0) << isa.name;
    }
}

TEST(TernaryPack, LayoutIsAsDocumented) {
    // 16 x 16 weights: byte r*4 + j holds, in bits 2s..2s+1, the code (w + 1) of row r, column
    // 4s + j (ternary.hpp). Checked for every position, with the other weights zero.
    std::vector<int8_t> q(16 * 16, 0);
    std::vector<uint8_t> codes(packed_bytes(16, 16));
    for (int r = 0; r < 16; ++r) {
        for (int c = 0; c < 16; ++c) {
            for (int8_t v : {int8_t{-1}, int8_t{1}}) {
                q[r * 16 + c] = v;
                pack_ternary(q.data(), 16, 16, codes.data());
                q[r * 16 + c] = 0;
                const int byte = r * 4 + c % 4, shift = 2 * (c / 4);
                for (int b = 0; b < 64; ++b) {
                    uint8_t expected = 0x55;  // code 1 everywhere
                    if (b == byte)
                        expected =
                            static_cast<uint8_t>((0x55 & ~(3 << shift)) | ((v + 1) << shift));
                    ASSERT_EQ(codes[b], expected) << "r=" << r << " c=" << c;
                }
            }
        }
    }
    // Two row groups x two column blocks: groups outer, blocks inner.
    EXPECT_EQ(packed_byte_index(17, 18, 32), (1 * 2 + 1) * 64 + 1 * 4 + 2);
    EXPECT_EQ(packed_bytes(17, 18), 32 * 32 / 4);
}

TEST(TernaryPack, RoundTripsAndPadsWithZeroWeights) {
    Rng rng(4);
    for (int64_t rows : {1, 3, 17, 255}) {
        for (int64_t cols : {1, 3, 17, 255}) {
            RandomWeights rw(rows, cols, rng);
            std::vector<int8_t> back(rows * cols, 9);
            unpack_ternary(rw.codes.data(), rows, cols, back.data());
            ASSERT_EQ(back, rw.q) << rows << "x" << cols;
            // Padding rows/columns decode to weight 0 (code 1).
            for (int64_t r = 0; r < packed_rows(rows); ++r) {
                for (int64_t c = 0; c < packed_cols(cols); ++c) {
                    if (r < rows && c < cols) continue;
                    ASSERT_EQ((rw.codes[packed_byte_index(r, c, cols)] >> packed_bit_shift(c)) & 3,
                              1);
                }
            }
        }
    }
}

TEST(TernaryMatmul, ScalarMatchesPlainIntegerDotProduct) {
    Rng rng(5);
    for (int64_t rows : {1, 17, 255}) {
        for (int64_t cols : {3, 17, 4097}) {
            const int64_t m = 3, stride = packed_cols(cols) + 5;
            RandomWeights rw(rows, cols, rng);
            RandomActivations act(m, cols, stride, 1, rng);
            std::vector<float> y(m * rows);
            ternary_matmul_scalar(rw.w, act.xq, stride, act.scale.data(), m, y.data(), rows);
            for (int64_t i = 0; i < m; ++i) {
                for (int64_t n = 0; n < rows; ++n) {
                    int64_t dot = 0;
                    for (int64_t k = 0; k < cols; ++k)
                        dot += int64_t{rw.q[n * cols + k]} * act.xq[i * stride + k];
                    const float expected = static_cast<float>(dot) * (rw.w.scale * act.scale[i]);
                    ASSERT_EQ(y[i * rows + n], expected) << rows << "x" << cols << " i=" << i;
                }
            }
        }
    }
}

// Every SIMD kernel equals the scalar reference bit for bit: odd shapes, unaligned activation
// rows (1 byte off 64-byte alignment, stride not a multiple of 16) and output strides.
TEST(TernaryMatmul, EveryIsaIsBitExactAgainstScalar) {
    Rng rng(6);
    const auto isas = simd_kernels();
    if (isas.empty()) GTEST_SKIP() << "no SIMD ISA on this CPU";
    const int64_t sizes[] = {1, 3, 17, 255, 4097};
    for (int64_t rows : sizes) {
        for (int64_t cols : sizes) {
            RandomWeights rw(rows, cols, rng);
            for (int64_t m : {1, 2, 3, 7, 33}) {
                if (rows * cols * m > (int64_t{40} << 20)) continue;  // keeps the scalar side fast
                const int64_t x_stride = packed_cols(cols) + 3, y_stride = rows + 5;
                RandomActivations act(m, cols, x_stride, 1, rng);
                std::vector<float> ref(m * y_stride, -1.0f);
                ternary_matmul_scalar(rw.w, act.xq, x_stride, act.scale.data(), m, ref.data(),
                                      y_stride);
                for (const auto& isa : isas) {
                    std::vector<float> y(m * y_stride, -1.0f);
                    isa.matmul(rw.w, act.xq, x_stride, act.scale.data(), m, y.data(), y_stride);
                    for (size_t j = 0; j < y.size(); ++j) {
                        ASSERT_EQ(std::memcmp(&y[j], &ref[j], sizeof(float)), 0)
                            << isa.name << " rows=" << rows << " cols=" << cols << " m=" << m
                            << " at " << j << ": " << y[j] << " vs " << ref[j];
                    }
                }
            }
        }
    }
}

TEST(TernaryMatmul, LargeTokenCountsAndDispatchAgree) {
    // m = 100 crosses several token tiles of every kernel; the dispatching entry point follows
    // set_active_isa.
    Rng rng(7);
    const int64_t rows = 96, cols = 320, m = 100, stride = packed_cols(cols);
    RandomWeights rw(rows, cols, rng);
    RandomActivations act(m, cols, stride, 0, rng);
    std::vector<float> ref(m * rows);
    ternary_matmul_scalar(rw.w, act.xq, stride, act.scale.data(), m, ref.data(), rows);
    const Isa saved = active_isa();
    for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
        if (isa > detected_isa()) continue;
        set_active_isa(isa);
        std::vector<float> y(m * rows);
        ternary_matmul(rw.w, act.xq, stride, act.scale.data(), m, y.data(), rows);
        EXPECT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0) << isa_name(isa);
    }
    set_active_isa(saved);
}

TEST(TernaryMatmul, EndToEndFromFloatsMatchesDesignFormula) {
    // y = (xq . Wq^T) * beta * gamma / 127 (DESIGN.md §2.1) from float weights and inputs.
    Rng rng(8);
    const int64_t rows = 33, cols = 70, m = 4;
    std::vector<float> wf(rows * cols), x(m * cols);
    for (auto& v : wf) v = 0.05f * rng.normal();
    for (auto& v : x) v = rng.normal();
    const float beta = ternary_scale(wf.data(), rows * cols);
    std::vector<int8_t> q(rows * cols);
    quantize_ternary(wf.data(), rows * cols, beta, q.data());
    AlignedBuffer<uint8_t> codes(packed_bytes(rows, cols));
    pack_ternary(q.data(), rows, cols, codes.data());
    const int64_t stride = packed_cols(cols);
    AlignedBuffer<int8_t> xq(m * stride);
    std::vector<float> scale(m), y(m * rows);
    quantize_activations(x.data(), m, cols, cols, xq.data(), stride, scale.data());
    ternary_matmul({codes.data(), rows, cols, beta}, xq.data(), stride, scale.data(), m, y.data(),
                   rows);
    for (int64_t i = 0; i < m; ++i) {
        std::vector<int8_t> xqi(cols);
        float act_scale;
        naive_quantize(&x[i * cols], cols, xqi.data(), &act_scale);
        for (int64_t n = 0; n < rows; ++n) {
            double dot = 0;
            for (int64_t k = 0; k < cols; ++k) dot += static_cast<double>(q[n * cols + k]) * xqi[k];
            EXPECT_NEAR(y[i * rows + n], dot * beta * act_scale, 1e-6 * (1 + std::fabs(dot)));
        }
    }
}

TEST(TernaryMatmul, RejectsInconsistentArguments) {
    AlignedBuffer<uint8_t> codes(packed_bytes(16, 16));
    AlignedBuffer<int8_t> xq(64);
    float scale[2] = {1, 1}, y[64];
    TernaryWeights w{codes.data(), 16, 16, 1.0f};
    EXPECT_THROW(ternary_matmul(w, xq.data(), 16, scale, -1, y, 16), Error);
    EXPECT_THROW(ternary_matmul(w, xq.data(), 8, scale, 2, y, 16), Error);   // stride < 16
    EXPECT_THROW(ternary_matmul(w, xq.data(), 16, scale, 2, y, 15), Error);  // y stride < rows
    EXPECT_THROW(ternary_matmul(w, nullptr, 16, scale, 1, y, 16), Error);
    EXPECT_THROW(ternary_matmul(w, xq.data(), 16, nullptr, 1, y, 16), Error);
    TernaryWeights bad{codes.data(), -16, 16, 1.0f};
    EXPECT_THROW(ternary_matmul(bad, xq.data(), 16, scale, 1, y, 16), Error);
    EXPECT_THROW(ternary_matmul_f32(bad, y, 16, 1, y, 16), Error);
    EXPECT_THROW(quantize_activations(y, 2, 16, 16, xq.data(), 8, scale), Error);
    EXPECT_NO_THROW(ternary_matmul(w, xq.data(), 16, scale, 0, y, 16));  // no tokens: no-op
}

TEST(TernaryMatmulF32, MatchesIntegerPathOnIntegerInputs) {
    // With integer-valued inputs every float sum is exact, so the float product equals the
    // integer one times beta.
    Rng rng(9);
    const int64_t rows = 37, cols = 101, m = 3;
    RandomWeights rw(rows, cols, rng);
    std::vector<float> x(m * cols);
    std::vector<int8_t> xq(m * packed_cols(cols), 0);
    for (int64_t i = 0; i < m; ++i)
        for (int64_t k = 0; k < cols; ++k) {
            int v = static_cast<int>(rng.below(255)) - 127;
            x[i * cols + k] = static_cast<float>(v);
            xq[i * packed_cols(cols) + k] = static_cast<int8_t>(v);
        }
    std::vector<float> ones(m, 1.0f), yf(m * rows), yi(m * rows);
    ternary_matmul_f32(rw.w, x.data(), cols, m, yf.data(), rows);
    ternary_matmul_scalar(rw.w, xq.data(), packed_cols(cols), ones.data(), m, yi.data(), rows);
    EXPECT_EQ(yf, yi);
}

}  // namespace
}  // namespace bitttt::kernels
