// The bf16 training products (train/gemm_bf16.hpp): the rounding equals io::f32_to_bf16, packing
// puts every operand pair where the kernels read it (strided and transposed sources, odd depths,
// zero padding), the AVX-512F emulation equals the scalar reference bit for bit, and the
// vdpbf16ps kernel equals it bit for bit too (the same two roundings per pair in the same order)
// where the hardware has it; all of them agree with an fp64 product of the rounded operands to
// the fp32 summation's error bound.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <tuple>
#include <vector>

#include "core/cpu_features.hpp"
#include "core/rng.hpp"
#include "io/safetensors.hpp"
#include "train/fast_ops.hpp"
#include "train/gemm_bf16.hpp"
#include "train/ops.hpp"

namespace bitttt::train {
namespace {

std::vector<float> random_vector(int64_t n, uint64_t seed) {
    Rng rng(seed);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = static_cast<float>(rng.normal());
    return v;
}

float bf16_value(float x) {
    return std::bit_cast<float>(uint32_t{bf16_round(x)} << 16);
}

TEST(TrainBf16, RoundingEqualsTheIoConversion) {
    std::vector<float> xs = random_vector(4096, 1);
    const float inf = std::numeric_limits<float>::infinity();
    for (float x : {0.0f, -0.0f, 1.0f, -1.0f, inf, -inf, std::numeric_limits<float>::quiet_NaN(),
                    std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min(),
                    1.00390625f /* a tie: rounds to even 1.0 */, 1.01171875f /* a tie: up */})
        xs.push_back(x);
    for (float x : xs) ASSERT_EQ(bf16_round(x), io::f32_to_bf16(x)) << x;
    EXPECT_EQ(bf16_round(1.00390625f), 0x3f80);
    EXPECT_EQ(bf16_round(1.01171875f), 0x3f82);
}

TEST(TrainBf16, PackingPlacesEveryPair) {
    // A 7 x 9 source read plainly and transposed, as A (panels of 4 rows) and B (64 columns).
    const int64_t r = 7, k = 9;
    const auto src = random_vector(r * k, 2);
    for (bool transposed : {false, true}) {
        const int64_t rs = transposed ? 1 : k, ks = transposed ? r : 1;
        Bf16Panels a, b;
        pack_bf16_a(a, src.data(), rs, ks, r, k);
        pack_bf16_b(b, src.data(), ks, rs, k, r);
        for (const Bf16Panels* p : {&a, &b}) {
            ASSERT_EQ(p->pairs(), 5);
            for (int64_t e = 0; e < p->panels() * p->width; ++e)
                for (int64_t q = 0; q < p->pairs(); ++q) {
                    const uint32_t w = p->data[static_cast<size_t>(
                        ((e / p->width) * 5 + q) * p->width + e % p->width)];
                    const auto half = [&](int64_t kk) -> uint32_t {
                        return e < r && kk < k ? bf16_round(src[e * rs + kk * ks]) : 0u;
                    };
                    ASSERT_EQ(w, half(2 * q) | (half(2 * q + 1) << 16)) << e << " " << q;
                }
        }
    }
}

TEST(TrainBf16, VectorPackingEqualsScalarPacking) {
    // Both layouts of both operands, odd depths and counts, NaN and infinities among the values.
    for (auto [r, k] : {std::pair<int64_t, int64_t>{1, 1}, {7, 9}, {33, 70}, {130, 31}, {5, 260}}) {
        auto src = random_vector(r * k, 4 + r);
        src[0] = std::numeric_limits<float>::quiet_NaN();
        src.back() = -std::numeric_limits<float>::infinity();
        for (bool transposed : {false, true}) {
            const int64_t rs = transposed ? 1 : k, ks = transposed ? r : 1;
            Bf16Panels a[2], b[2];
            for (int v = 0; v < 2; ++v) {
                pack_bf16_a(a[v], src.data(), rs, ks, r, k, v == 1);
                pack_bf16_b(b[v], src.data(), ks, rs, k, r, v == 1);
            }
            ASSERT_EQ(0, std::memcmp(a[0].data.data(), a[1].data.data(), 4 * a[0].data.size()))
                << r << "x" << k << " transposed " << transposed;
            ASSERT_EQ(0, std::memcmp(b[0].data.data(), b[1].data.data(), 4 * b[0].data.size()))
                << r << "x" << k << " transposed " << transposed;
        }
    }
}

// C = alpha · A·B (+ C) by every kernel on this CPU; A read transposed or not.
struct Case {
    int64_t m, n, k;
};
const Case kCases[] = {{1, 1, 1},     {5, 67, 3},     {4, 64, 2},     {13, 129, 37},
                       {37, 70, 515}, {64, 200, 512}, {3, 300, 1031}, {130, 64, 64}};

std::vector<float> run(Bf16Kernel kernel, const Case& s, bool transposed, bool accumulate,
                       float alpha) {
    const auto a = random_vector(s.m * s.k, 10 + s.k);
    const auto b = random_vector(s.k * s.n, 20 + s.n);
    std::vector<float> c = random_vector(s.m * s.n, 30 + s.m);
    Bf16Panels pa, pb;
    pack_bf16_a(pa, a.data(), transposed ? 1 : s.k, transposed ? s.m : 1, s.m, s.k);
    pack_bf16_b(pb, b.data(), s.n, 1, s.k, s.n);
    gemm_bf16(c.data(), pa, pb, alpha, accumulate, kernel);
    return c;
}

TEST(TrainBf16, KernelsEqualTheScalarReferenceBitForBit) {
    const Bf16Kernel best = bf16_kernel_available();
    if (best == Bf16Kernel::kScalar) GTEST_SKIP() << "no AVX-512: only the reference runs";
    std::vector<Bf16Kernel> kernels = {Bf16Kernel::kEmulated};
    if (best == Bf16Kernel::kNative) kernels.push_back(Bf16Kernel::kNative);
    for (const Case& s : kCases)
        for (bool transposed : {false, true})
            for (bool accumulate : {false, true}) {
                const float alpha = accumulate ? 0.75f : 1.0f;
                const auto ref = run(Bf16Kernel::kScalar, s, transposed, accumulate, alpha);
                for (Bf16Kernel kernel : kernels) {
                    const auto c = run(kernel, s, transposed, accumulate, alpha);
                    EXPECT_EQ(0, std::memcmp(c.data(), ref.data(), sizeof(float) * ref.size()))
                        << bf16_kernel_name(kernel) << " " << s.m << "x" << s.n << "x" << s.k
                        << " transposed " << transposed << " accumulate " << accumulate;
                }
            }
}

TEST(TrainBf16, AgreesWithTheExactProductOfTheRoundedOperands) {
    // |fp32 sum − exact| ≤ k·2⁻²⁴·Σ|a·b| (one rounding per addition), plus the final c + alpha·s.
    for (const Case& s : kCases) {
        const auto a = random_vector(s.m * s.k, 10 + s.k);
        const auto b = random_vector(s.k * s.n, 20 + s.n);
        const auto c = run(Bf16Kernel::kAuto, s, false, false, 1.0f);
        for (int64_t i = 0; i < s.m; ++i)
            for (int64_t j = 0; j < s.n; ++j) {
                double exact = 0, mag = 0;
                for (int64_t p = 0; p < s.k; ++p) {
                    const double t =
                        double(bf16_value(a[i * s.k + p])) * bf16_value(b[p * s.n + j]);
                    exact += t, mag += std::fabs(t);
                }
                ASSERT_NEAR(c[i * s.n + j], exact, (s.k + 2) * 0x1p-24 * mag + 1e-30)
                    << s.m << "x" << s.n << "x" << s.k << " at " << i << "," << j;
            }
    }
}

// Panels keep their (larger) buffer across packs of other sizes (gemm_bf16.cpp: grow only): a
// product packed into reused panels, after larger operands with other values, gives the bits of
// one packed into fresh panels.
TEST(TrainBf16, ReusedPanelsGiveTheBitsOfFreshOnes) {
    Bf16Panels a, b;
    const auto big = random_vector(300 * 77, 21);
    pack_bf16_a(a, big.data(), 77, 1, 300, 77);
    pack_bf16_b(b, big.data(), 1, 77, 77, 300);
    const int64_t m = 9, n = 70, k = 13;  // odd: padding rows, columns and the last pair's half
    const auto x = random_vector(m * k, 22), y = random_vector(k * n, 23);
    Bf16Panels fa, fb;
    for (bool transposed : {false, true}) {
        pack_bf16_a(a, x.data(), transposed ? 1 : k, transposed ? m : 1, m, k);
        pack_bf16_a(fa, x.data(), transposed ? 1 : k, transposed ? m : 1, m, k);
        pack_bf16_b(b, y.data(), n, 1, k, n);
        pack_bf16_b(fb, y.data(), n, 1, k, n);
        std::vector<float> c1(m * n), c2(m * n);
        gemm_bf16(c1.data(), a, b, 1.0f, false);
        gemm_bf16(c2.data(), fa, fb, 1.0f, false);
        ASSERT_EQ(0, std::memcmp(c1.data(), c2.data(), 4 * c1.size())) << transposed;
        gemm_bf16(c1.data(), a, b, 1.0f, false, Bf16Kernel::kScalar);
        gemm_bf16(c2.data(), fa, fb, 1.0f, false, Bf16Kernel::kScalar);
        ASSERT_EQ(0, std::memcmp(c1.data(), c2.data(), 4 * c1.size())) << transposed;
        fa = Bf16Panels{}, fb = Bf16Panels{};
    }
}

TEST(TrainBf16, RejectsMismatchedOperandsAndMissingFeatures) {
    const auto x = random_vector(64, 3);
    Bf16Panels a, b;
    pack_bf16_a(a, x.data(), 8, 1, 8, 8);
    pack_bf16_b(b, x.data(), 8, 1, 7, 8);  // depth 7 against A's 8
    std::vector<float> c(64);
    EXPECT_THROW(gemm_bf16(c.data(), a, b, 1.0f, false), Error);
    EXPECT_THROW(gemm_bf16(c.data(), b, a, 1.0f, false), Error);  // widths swapped
    EXPECT_THROW(pack_bf16_a(a, x.data(), 8, 1, 0, 8), Error);
    if (bf16_kernel_available() != Bf16Kernel::kNative) {
        pack_bf16_b(b, x.data(), 8, 1, 8, 8);
        EXPECT_THROW(gemm_bf16(c.data(), a, b, 1.0f, false, Bf16Kernel::kNative), Error);
    }
}

// The vectorized exp of the bf16 path's elementwise passes (fast_ops.hpp) against std::exp: a
// dense sweep of the range, the edges (underflow to denormals and 0, overflow to inf), the
// specials and an odd length (the masked tail).
TEST(TrainFastOps, ExpWithinFourTenthsOfAMillionthOfStdExp) {
    std::vector<float> x;
    for (float v = -110.0f; v <= 90.0f; v += 0.00731f) x.push_back(v);
    const float inf = std::numeric_limits<float>::infinity();
    for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 88.72f, 88.73f, -87.33f, -103.9f, -104.5f, inf,
                    -inf, 0.34657359f, -0.34657359f})
        x.push_back(v);
    std::vector<float> y(x.size());
    exp_fast(y.data(), x.data(), static_cast<int64_t>(x.size()));
    for (size_t i = 0; i < x.size(); ++i) {
        const float ref = std::exp(x[i]);
        if (std::isinf(ref) || ref == 0.0f) {
            ASSERT_EQ(y[i], ref) << x[i];
        } else {  // relative, plus two denormal steps (1.4e-45 each) for gradual underflow
            ASSERT_NEAR(y[i], ref, 4e-7f * ref + 3e-45f) << x[i];
        }
    }
    const float nan = std::numeric_limits<float>::quiet_NaN();
    float out = 0.0f;
    exp_fast(&out, &nan, 1);
    EXPECT_TRUE(std::isnan(out));
}

TEST(TrainFastOps, CrossEntropyCloseToTheExactOne) {
    for (int64_t V : {int64_t{1}, int64_t{17}, int64_t{1000}, int64_t{3001}}) {
        const int64_t N = 9;
        std::vector<float> logits = random_vector(N * V, 7 + V);
        for (auto& z : logits) z *= 6.0f;  // a wide spread: many probabilities near underflow
        logits[3] = 80.0f, logits[V + 1] = -200.0f;  // a dominant and a vanishing logit
        std::vector<int32_t> targets(static_cast<size_t>(N));
        for (int64_t n = 0; n < N; ++n) targets[static_cast<size_t>(n)] = int32_t((n * 37) % V);
        std::vector<float> ref = logits, fast = logits, lr(N), lf(N);
        const double mr = crossentropy_forward(lr.data(), ref.data(), targets.data(), N, V);
        const double mf = crossentropy_forward_fast(lf.data(), fast.data(), targets.data(), N, V);
        EXPECT_NEAR(mf, mr, 1e-6 * (std::fabs(mr) + 1.0)) << V;
        for (int64_t n = 0; n < N; ++n)
            EXPECT_NEAR(lf[n], lr[n], 1e-6f * (std::fabs(lr[n]) + 1.0f)) << V << " row " << n;
        for (size_t i = 0; i < ref.size(); ++i)
            ASSERT_NEAR(fast[i], ref[i], 1e-6f * ref[i] + 1e-44f) << V << " at " << i;
    }
}

TEST(TrainFastOps, SwigluForwardAndBackwardCloseToTheExactOnes) {
    const int64_t n = 16 * 37 + 5;  // a masked tail
    std::vector<float> g = random_vector(n, 11), u = random_vector(n, 12), d = random_vector(n, 13);
    for (auto& v : g) v *= 8.0f;  // σ near 0 and 1 too
    g[0] = 100.0f, g[1] = -100.0f, g[2] = 0.0f;
    std::vector<float> yr(n), yf(n), dgr = random_vector(n, 14), dur = random_vector(n, 15);
    std::vector<float> dgf = dgr, duf = dur;  // both accumulate onto the same values
    swiglu_forward(yr.data(), g.data(), u.data(), n);
    swiglu_forward_fast(yf.data(), g.data(), u.data(), n);
    swiglu_backward(dgr.data(), dur.data(), d.data(), g.data(), u.data(), n);
    swiglu_backward_fast(dgf.data(), duf.data(), d.data(), g.data(), u.data(), n);
    for (int64_t i = 0; i < n; ++i) {
        // The terms' magnitudes bound the rounding (a few ulps of each, sums included).
        const float s = 1.0f / (1.0f + std::exp(-g[i]));
        const float scale_y = std::fabs(g[i] * u[i]) + 1e-30f;
        const float scale_g = std::fabs(d[i] * u[i]) * (1.0f + std::fabs(g[i])) + std::fabs(dgr[i]);
        const float scale_u = std::fabs(d[i] * g[i] * s) + std::fabs(dur[i]);
        ASSERT_NEAR(yf[i], yr[i], 1e-6f * scale_y) << i;
        ASSERT_NEAR(dgf[i], dgr[i], 2e-6f * scale_g + 1e-30f) << i;
        ASSERT_NEAR(duf[i], dur[i], 2e-6f * scale_u + 1e-30f) << i;
    }
}

}  // namespace
}  // namespace bitttt::train
