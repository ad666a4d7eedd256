// RMSNorm and the SiLU-gated product: the scalar references against the formulas evaluated in
// double here, and every SIMD version against the scalar reference on odd shapes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/cpu_features.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "kernels/cpu/activations.hpp"
#include "kernels/cpu/norms.hpp"

namespace bitttt::kernels {
namespace {

using RmsnormFn = void (*)(const float*, int64_t, int64_t, int64_t, const float*, float, float*,
                           int64_t, float*);
using SiluMulFn = void (*)(const float*, const float*, int64_t, float*);

struct IsaKernels {
    const char* name;
    RmsnormFn rmsnorm;
    SiluMulFn silu_mul;
};
std::vector<IsaKernels> simd_kernels() {
    std::vector<IsaKernels> out;
    if (detected_isa() >= Isa::kAvx2) out.push_back({"avx2", rmsnorm_avx2, silu_mul_avx2});
    if (detected_isa() >= Isa::kAvx512) out.push_back({"avx512", rmsnorm_avx512, silu_mul_avx512});
    return out;
}

// |a - b| <= rel * |b| + abs_tol, and both NaN or neither.
::testing::AssertionResult close(float a, float b, double rel, double abs_tol = 1e-35) {
    if (std::isnan(a) && std::isnan(b)) return ::testing::AssertionSuccess();
    if (a == b) return ::testing::AssertionSuccess();
    const double diff = std::fabs(static_cast<double>(a) - b);
    if (diff <= rel * std::fabs(static_cast<double>(b)) + abs_tol)
        return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << a << " vs " << b << " (diff " << diff << ")";
}

TEST(Rmsnorm, HandComputedRow) {
    // mean(3^2, 4^2) = 12.5, so y = (3, 4) / sqrt(12.5) * (1, 2).
    const float x[2] = {3.0f, 4.0f}, w[2] = {1.0f, 2.0f};
    float y[2], inv;
    rmsnorm_scalar(x, 1, 2, 2, w, 0.0f, y, 2, &inv);
    EXPECT_NEAR(y[0], 3.0 / std::sqrt(12.5), 1e-6);
    EXPECT_NEAR(y[1], 8.0 / std::sqrt(12.5), 1e-6);
    EXPECT_NEAR(inv, 1.0 / std::sqrt(12.5), 1e-7);
    // eps matters when the row is small: x = 0 gives y = 0 and inv_rms = 1/sqrt(eps).
    const float zeros[2] = {0.0f, 0.0f};
    rmsnorm_scalar(zeros, 1, 2, 2, w, 1e-4f, y, 2, &inv);
    EXPECT_EQ(y[0], 0.0f);
    EXPECT_NEAR(inv, 100.0, 1e-3);
}

TEST(Rmsnorm, ScalarMatchesDoubleFormula) {
    Rng rng(1);
    const int64_t m = 4, d = 255;
    std::vector<float> x(m * d), w(d), y(m * d);
    for (auto& v : x) v = 2.0f * rng.normal();
    for (auto& v : w) v = 1.0f + 0.1f * rng.normal();
    rmsnorm_scalar(x.data(), m, d, d, w.data(), 1e-5f, y.data(), d);
    for (int64_t i = 0; i < m; ++i) {
        double ss = 0;
        for (int64_t j = 0; j < d; ++j) ss += double{x[i * d + j]} * x[i * d + j];
        const double inv = 1.0 / std::sqrt(ss / d + 1e-5);
        for (int64_t j = 0; j < d; ++j)
            ASSERT_TRUE(close(y[i * d + j], static_cast<float>(x[i * d + j] * inv * w[j]), 1e-6));
    }
}

TEST(Rmsnorm, EveryIsaMatchesScalarOnOddShapes) {
    Rng rng(2);
    for (int64_t d : {1, 3, 17, 255, 4097}) {
        for (int64_t m : {1, 3, 7}) {
            const int64_t xs = d + 3, ys = d + 5;  // unaligned strides
            std::vector<float> x(m * xs), w(d);
            for (auto& v : x) v = 3.0f * rng.normal();
            for (auto& v : w) v = rng.normal();
            std::vector<float> ref(m * ys, -7.0f), ref_inv(m);
            rmsnorm_scalar(x.data(), m, d, xs, w.data(), 1e-5f, ref.data(), ys, ref_inv.data());
            for (const auto& isa : simd_kernels()) {
                std::vector<float> y(m * ys, -7.0f), inv(m);
                isa.rmsnorm(x.data(), m, d, xs, w.data(), 1e-5f, y.data(), ys, inv.data());
                for (int64_t i = 0; i < m; ++i) {
                    ASSERT_TRUE(close(inv[i], ref_inv[i], 2e-7)) << isa.name << " d=" << d;
                    for (int64_t j = 0; j < ys; ++j)  // the gap between rows stays untouched
                        ASSERT_TRUE(close(y[i * ys + j], ref[i * ys + j], 4e-7))
                            << isa.name << " d=" << d << " m=" << m << " (" << i << "," << j << ")";
                }
            }
        }
    }
}

TEST(Rmsnorm, InPlaceAndDispatchAgree) {
    Rng rng(3);
    const int64_t m = 300, d = 256;  // large enough for the OpenMP path
    std::vector<float> x(m * d), w(d, 1.5f);
    for (auto& v : x) v = rng.normal();
    std::vector<float> ref(m * d);
    rmsnorm_scalar(x.data(), m, d, d, w.data(), 1e-5f, ref.data(), d);
    const Isa saved = active_isa();
    for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
        if (isa > detected_isa()) continue;
        set_active_isa(isa);
        std::vector<float> y = x;
        rmsnorm(y.data(), m, d, d, w.data(), 1e-5f, y.data(), d);  // y aliases x
        for (size_t j = 0; j < y.size(); ++j)
            ASSERT_TRUE(close(y[j], ref[j], 4e-7)) << isa_name(isa);
    }
    set_active_isa(saved);
}

TEST(Rmsnorm, RejectsInconsistentArguments) {
    float x[8] = {}, w[4] = {}, y[8];
    EXPECT_THROW(rmsnorm(x, -1, 4, 4, w, 1e-5f, y, 4), Error);
    EXPECT_THROW(rmsnorm(x, 2, 4, 3, w, 1e-5f, y, 4), Error);  // rows would overlap
    EXPECT_THROW(rmsnorm(x, 2, 4, 4, nullptr, 1e-5f, y, 4), Error);
    EXPECT_NO_THROW(rmsnorm(x, 0, 4, 4, w, 1e-5f, y, 4));
}

TEST(SiluMul, ScalarMatchesDoubleFormula) {
    const std::vector<float> g = {0.0f, 1.0f, -1.0f, 2.5f, -3.0f, 20.0f, -20.0f, 1e-4f};
    std::vector<float> up(g.size(), 1.5f), out(g.size());
    silu_mul_scalar(g.data(), up.data(), static_cast<int64_t>(g.size()), out.data());
    for (size_t i = 0; i < g.size(); ++i) {
        const double expected = g[i] / (1.0 + std::exp(-double{g[i]})) * 1.5;
        EXPECT_TRUE(close(out[i], static_cast<float>(expected), 3e-7)) << g[i];
    }
    EXPECT_NEAR(out[1], 1.5 * 0.7310585786300049, 1e-6);  // silu(1) = 1 / (1 + 1/e)
}

TEST(SiluMul, EveryIsaMatchesScalar) {
    Rng rng(4);
    for (int64_t n : {1, 3, 17, 255, 4097, 70001}) {
        std::vector<float> g(n), up(n);
        for (int64_t i = 0; i < n; ++i) {
            // Mostly moderate values, some far into the tails where exp over/underflows.
            g[i] = (i % 10 == 0) ? 120.0f * (rng.uniform() - 0.5f) * 2 : 4.0f * rng.normal();
            up[i] = rng.normal();
        }
        if (n > 8) {
            g[0] = 88.7f, g[1] = -88.7f, g[2] = 87.4f, g[3] = -87.4f, g[4] = -0.0f;
            g[5] = 100.0f, g[6] = -100.0f, g[7] = 1e-30f;
        }
        std::vector<float> ref(n);
        silu_mul_scalar(g.data(), up.data(), n, ref.data());
        for (const auto& isa : simd_kernels()) {
            std::vector<float> out(n);
            isa.silu_mul(g.data(), up.data(), n, out.data());
            for (int64_t i = 0; i < n; ++i)
                ASSERT_TRUE(close(out[i], ref[i], 1e-6)) << isa.name << " n=" << n << " g=" << g[i];
            // out may alias gate.
            std::vector<float> inplace = g;
            isa.silu_mul(inplace.data(), up.data(), n, inplace.data());
            for (int64_t i = 0; i < n; ++i) ASSERT_EQ(inplace[i], out[i]) << isa.name;
        }
    }
}

TEST(SiluMul, RejectsInconsistentArguments) {
    float a[4] = {};
    EXPECT_THROW(silu_mul(a, a, -1, a), Error);
    EXPECT_THROW(silu_mul(nullptr, a, 4, a), Error);
    EXPECT_NO_THROW(silu_mul(nullptr, nullptr, 0, nullptr));
}

}  // namespace
}  // namespace bitttt::kernels
