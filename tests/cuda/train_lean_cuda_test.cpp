// The memory-lean training state (kernels/cuda/moment_code.hpp, train_lean_ops.hpp):
//   - host only: the 8-bit moment code against a scalar reference (a decode table built here from
//     the format's definition and a linear search for the neighbouring codes);
//   - GPU: the blockwise quantizer against the same reference (codes, scales, values), its
//     stochastic rounding unbiased; AdamW with int8 moments against train::adamw_update on the
//     decoded moments; bf16 gradient helpers (fp32 stage added into bf16, the atomic-free
//     embedding gradient) against host sums.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <vector>

#include "core/rng.hpp"
#include "cuda_test_util.hpp"
#include "io/safetensors.hpp"
#include "kernels/cuda/moment_code.hpp"
#include "kernels/cuda/train_lean_ops.hpp"
#include "kernels/cuda/train_ops.hpp"
#include "train/optimizer.hpp"

namespace bitttt::cuda::test {
namespace {

namespace mc = moment_code;

// The reference code table: magnitude of every code of a float with a 4-bit exponent (bias 15,
// subnormals) and M mantissa bits, from the definition.
std::vector<double> reference_table(int M, int max_code) {
    std::vector<double> t;
    for (int c = 0; c <= max_code; ++c) {
        const int e = c / (1 << M), f = c % (1 << M);
        t.push_back(e == 0 ? f * std::pow(2.0, -14 - M)
                           : ((1 << M) + f) * std::pow(2.0, e - 15 - M));
    }
    return t;
}

// The reference encoding of magnitude x: the last code <= x, one more with probability
// (x − lo) / (hi − lo) (u below it), clamped to the table.
int reference_encode(const std::vector<double>& t, float x, float u) {
    int lo = 0;
    for (int c = 0; c < static_cast<int>(t.size()); ++c)
        if (t[static_cast<size_t>(c)] <= x) lo = c;
    if (lo + 1 >= static_cast<int>(t.size())) return lo;
    const float d0 = static_cast<float>(t[static_cast<size_t>(lo)]);
    const float d1 = static_cast<float>(t[static_cast<size_t>(lo) + 1]);
    return u < (x - d0) / (d1 - d0) ? lo + 1 : lo;
}

// Values spanning many binades, some blocks all zero, some with a single large outlier.
std::vector<float> moment_like(int64_t n, uint64_t seed, bool non_negative) {
    Rng rng(seed);
    std::vector<float> x(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        const int64_t block = i / mc::kMomentBlock;
        if (block % 7 == 3) continue;  // an all-zero block
        double v = rng.normal() * std::pow(10.0, -8.0 + 6.0 * rng.uniform());
        if (block % 5 == 1 && i % mc::kMomentBlock == 17) v = 1e3;  // an outlier
        x[static_cast<size_t>(i)] = static_cast<float>(non_negative ? v * v : v);
    }
    return x;
}

TEST(MomentCode, MatchesTheReferenceOnTheHost) {
    for (auto [M, max_code] : {std::pair{mc::kMantM, mc::kMaxM}, {mc::kMantV, mc::kMaxV}}) {
        const auto t = reference_table(M, max_code);
        for (int c = 0; c <= max_code; ++c) {
            ASSERT_EQ(mc::decode_mag(c, M), static_cast<float>(t[static_cast<size_t>(c)])) << c;
            if (c > 0) {
                ASSERT_GT(t[static_cast<size_t>(c)], t[static_cast<size_t>(c) - 1]);
            }
            for (float u : {0.0f, 0.5f, 0.999f})  // every code is its own encoding
                ASSERT_EQ(mc::encode_mag(mc::decode_mag(c, M), M, max_code, u), c) << c;
        }
        Rng rng(3);
        for (int k = 0; k < 200000; ++k) {
            const float x = static_cast<float>(
                std::ldexp(rng.uniform(), -static_cast<int>(rng.below(24))) * 2.0);
            const float u = static_cast<float>(rng.uniform());
            ASSERT_EQ(mc::encode_mag(x, M, max_code, u), reference_encode(t, x, u))
                << "x " << x << " u " << u << " M " << M;
        }
        EXPECT_EQ(mc::encode_mag(0.0f, M, max_code, 0.9f), 0);
        EXPECT_EQ(mc::encode_mag(100.0f, M, max_code, 0.0f), max_code);  // clamped
        EXPECT_EQ(mc::encode_mag(NAN, M, max_code, 0.0f), 0);
    }
    // Signs, and the top of a block's range: absmax codes to the top code, exactly back.
    const float s = mc::scale_m(0.75f);
    EXPECT_EQ(mc::encode_m(-0.75f, s, 0.5f), 0x80 | mc::kMaxM);
    EXPECT_FLOAT_EQ(mc::decode_m(mc::encode_m(-0.75f, s, 0.5f), s), -0.75f);
    EXPECT_EQ(mc::encode_m(-0.0f, s, 0.5f), 0);
    const float sv = mc::scale_v(std::sqrt(2.0f));
    EXPECT_FLOAT_EQ(mc::decode_v(mc::encode_v(2.0f, sv, 0.5f), sv), 2.0f);
    // Round to nearest is within half a step: 2^-(M+1) relative above 2^-14 of the scale.
    Rng rng(4);
    for (int k = 0; k < 10000; ++k) {
        const float x = static_cast<float>(rng.uniform()) * 0.75f;
        const float back = mc::decode_m(mc::encode_m(x, s, 0.5f), s);
        ASSERT_LE(std::fabs(back - x), std::max(x * 0.0625f, s * 1e-4f) + 1e-12f) << x;
    }
}

class TrainLeanCuda : public CudaTest {};

TEST_F(TrainLeanCuda, QuantizerMatchesTheScalarReference) {
    for (bool v_code : {false, true}) {
        const int M = v_code ? mc::kMantV : mc::kMantM;
        const int max_code = v_code ? mc::kMaxV : mc::kMaxM;
        const auto table = reference_table(M, max_code);
        const int64_t n = 40 * mc::kMomentBlock + 77;  // a partial last block
        const auto x = moment_like(n, v_code ? 11 : 12, v_code);
        const uint64_t seed = 0x1234567;
        auto d_x = upload(x);
        DeviceBuffer d_codes(static_cast<size_t>(n)), d_scales(train_moment_blocks(n) * 4);
        DeviceBuffer d_back(static_cast<size_t>(n) * 4);
        Stream s;
        train_moment_quantize(d_codes.as<uint8_t>(), d_scales.as<float>(), d_x.as<float>(), n,
                              v_code, seed, s);
        train_moment_dequantize(d_back.as<float>(), d_codes.as<uint8_t>(), d_scales.as<float>(), n,
                                v_code, s);
        s.synchronize();
        const auto codes = download<uint8_t>(d_codes, static_cast<size_t>(n));
        const auto scales = download<float>(d_scales, static_cast<size_t>(train_moment_blocks(n)));
        const auto back = download<float>(d_back, static_cast<size_t>(n));
        int64_t differ = 0;
        for (int64_t b = 0; b < train_moment_blocks(n); ++b) {
            const int64_t i0 = b * mc::kMomentBlock;
            const int64_t i1 = std::min(n, i0 + mc::kMomentBlock);
            float absmax = 0;
            for (int64_t i = i0; i < i1; ++i)
                absmax = std::max(absmax, v_code ? std::sqrt(x[i]) : std::fabs(x[i]));
            const float scale = absmax / static_cast<float>(table.back());
            ASSERT_EQ(scales[b], scale) << "block " << b;
            for (int64_t i = i0; i < i1; ++i) {
                const float mag = v_code ? std::sqrt(x[i]) : std::fabs(x[i]);
                const float u = mc::random_u(seed, i, v_code ? 1 : 0);
                int want = scale > 0 ? reference_encode(table, mag / scale, u) : 0;
                if (!v_code && x[i] < 0 && want != 0) want |= 0x80;
                // The GPU may contract a*b+c into one rounding where the host does not: allow
                // the neighbouring code, rarely.
                const int got = codes[i];
                if (got != want) {
                    ++differ;
                    ASSERT_EQ(got & 0x80, want & 0x80) << i;
                    ASSERT_LE(std::abs((got & 0x7f) - (want & 0x7f)), 1) << i;
                }
                const double ref = v_code ? std::pow(table[got] * scale, 2)
                                          : (got & 0x80 ? -1 : 1) * table[got & 0x7f] * scale;
                ASSERT_NEAR(back[i], ref, 1e-6 * std::fabs(ref)) << i;
                // Within one code step of the value (relative 2^-M, or the subnormal step).
                const double step = std::max(std::fabs(mag) * std::ldexp(1.0, -M + 1),
                                             scale * std::ldexp(1.0, -13 - M));
                const double err =
                    v_code ? std::fabs(std::sqrt(back[i]) - mag) : std::fabs(back[i] - x[i]);
                ASSERT_LE(err, step * 1.0001) << i << " x " << x[i] << " back " << back[i];
            }
        }
        EXPECT_LE(differ, n / 1000) << "codes differing from the reference";
        std::cout << "[moment code] " << (v_code ? "v" : "m") << ": " << differ << " of " << n
                  << " codes one step from the host reference\n";
    }
}

TEST_F(TrainLeanCuda, QuantizerIsUnbiased) {
    // One block of equal values between two codes (plus the block's max): over many seeds the
    // mean decoded value is the value.
    const int64_t n = mc::kMomentBlock;
    std::vector<float> x(n, 0.3f);
    x[0] = 1.0f;
    auto d_x = upload(x);
    DeviceBuffer d_codes(n), d_scales(4), d_back(n * 4);
    Stream s;
    double sum = 0;
    const int seeds = 64;
    for (int k = 0; k < seeds; ++k) {
        train_moment_quantize(d_codes.as<uint8_t>(), d_scales.as<float>(), d_x.as<float>(), n,
                              false, 1000 + k, s);
        train_moment_dequantize(d_back.as<float>(), d_codes.as<uint8_t>(), d_scales.as<float>(), n,
                                false, s);
        const auto back = download<float>(d_back, n);
        for (int64_t i = 1; i < n; ++i) sum += back[i];
    }
    const double mean = sum / (seeds * (n - 1));
    // Neighbouring codes around 0.3 (of a scale where 1.0 is the top) are 1/32 apart relative to
    // 0.25..0.5, i.e. 2^-5 · 0.25 = 0.0078 apart: the mean of 16320 draws is within 1e-4.
    EXPECT_NEAR(mean, 0.3, 1e-4);
    std::cout << "[moment code] 0.3 stored with mean " << mean << "\n";
}

TEST_F(TrainLeanCuda, AdamWInt8MomentsMatchesHostAdamW) {
    const int64_t n = 9 * mc::kMomentBlock + 5;
    Rng rng(21);
    std::vector<float> p(n), g(n), m0 = moment_like(n, 5, false), v0 = moment_like(n, 6, true);
    for (auto& x : p) x = static_cast<float>(rng.normal());
    for (auto& x : g) x = static_cast<float>(rng.normal() * 1e-2);
    // The state as the GPU holds it: coded moments (host coding) and their decoded values.
    std::vector<uint8_t> mq(n), vq(n);
    std::vector<float> ms(train_moment_blocks(n)), vs(train_moment_blocks(n)), m(n), v(n);
    for (int64_t b = 0; b < train_moment_blocks(n); ++b) {
        float am = 0, av = 0;
        for (int64_t i = b * 256; i < std::min(n, b * 256 + 256); ++i)
            am = std::max(am, std::fabs(m0[i])), av = std::max(av, std::sqrt(v0[i]));
        ms[b] = mc::scale_m(am), vs[b] = mc::scale_v(av);
        for (int64_t i = b * 256; i < std::min(n, b * 256 + 256); ++i) {
            mq[i] = mc::encode_m(m0[i], ms[b], 0.5f), vq[i] = mc::encode_v(v0[i], vs[b], 0.5f);
            m[i] = mc::decode_m(mq[i], ms[b]), v[i] = mc::decode_v(vq[i], vs[b]);
        }
    }
    // Decay: every other group of 16 (decay_shift 4).
    std::vector<uint32_t> bits((n / 16 + 32) / 32, 0);
    for (int64_t j = 0; j <= n / 16; ++j)
        if (j % 2) bits[j / 32] |= 1u << (j % 32);
    train::AdamWConfig c;
    const int64_t t = 5;
    const float clip = 0.5f, lr = 1e-3f;
    const double norm = train::global_norm(g.data(), n);
    const float scale = norm > clip ? static_cast<float>(clip / norm) : 1.0f;
    std::vector<float> pr = p, mr = m, vr = v;
    for (int64_t i = 0; i < n; i += 16)
        train::adamw_update(pr.data() + i, g.data() + i, mr.data() + i, vr.data() + i,
                            std::min<int64_t>(16, n - i), lr, scale, t, (i / 16) % 2 == 1, c);
    auto d_p = upload(p), d_g = upload(g), d_mq = upload(mq), d_vq = upload(vq);
    auto d_ms = upload(ms), d_vs = upload(vs), d_bits = upload(bits);
    auto d_norm = upload(std::vector<double>(1));
    auto d_part = upload(std::vector<double>(train_norm_partials(n)));
    const float bc1 = 1.0f - std::pow(c.beta1, static_cast<float>(t));
    const float bc2 = 1.0f - std::pow(c.beta2, static_cast<float>(t));
    Stream s;
    train_global_norm(d_norm.as<double>(), d_part.as<double>(), d_g.as<float>(), n, s);
    train_adamw_int8_moments(d_p.as<float>(), d_g.as<float>(), d_mq.as<uint8_t>(),
                             d_vq.as<uint8_t>(), d_ms.as<float>(), d_vs.as<float>(),
                             d_bits.as<uint32_t>(), n, lr, c.beta1, c.beta2, c.eps, c.weight_decay,
                             bc1, bc2, d_norm.as<double>(), nullptr, clip, 77, s, 4);
    s.synchronize();
    const auto gp = download<float>(d_p, n);
    for (int64_t i = 0; i < n; ++i)
        ASSERT_NEAR(gp[i], pr[i], 1e-6 * std::fabs(pr[i]) + 1e-8) << "param " << i;
    // The stored moments decode to within one code step of the host's fp32 moments.
    const auto gmq = download<uint8_t>(d_mq, n), gvq = download<uint8_t>(d_vq, n);
    const auto gms = download<float>(d_ms, ms.size()), gvs = download<float>(d_vs, vs.size());
    for (int64_t i = 0; i < n; ++i) {
        const int64_t b = i / 256;
        const float mi = mc::decode_m(gmq[i], gms[b]), ri = std::sqrt(mc::decode_v(gvq[i], gvs[b]));
        ASSERT_LE(std::fabs(mi - mr[i]),
                  std::max(std::fabs(mr[i]) / 4.0f, gms[b] * 1e-5f) + 1e-7f * std::fabs(mr[i]))
            << "m " << i;
        ASSERT_LE(std::fabs(ri - std::sqrt(vr[i])),
                  std::max(std::sqrt(vr[i]) / 8.0f, gvs[b] * 1e-5f) * 1.0001f)
            << "v " << i;
    }
    // A non-finite norm leaves everything unchanged.
    const double inf = INFINITY;
    d_norm.copy_from_host(&inf, sizeof inf);
    train_adamw_int8_moments(d_p.as<float>(), d_g.as<float>(), d_mq.as<uint8_t>(),
                             d_vq.as<uint8_t>(), d_ms.as<float>(), d_vs.as<float>(),
                             d_bits.as<uint32_t>(), n, lr, c.beta1, c.beta2, c.eps, c.weight_decay,
                             bc1, bc2, d_norm.as<double>(), nullptr, clip, 78, s, 4);
    s.synchronize();
    EXPECT_EQ(download<float>(d_p, n), gp);
    EXPECT_EQ(download<uint8_t>(d_mq, n), gmq);
}

TEST_F(TrainLeanCuda, Bf16GradientHelpers) {
    Rng rng(8);
    // fp32 stage added into bf16: one rounding of the exact sum of two floats.
    const int64_t n = 1000;
    std::vector<uint16_t> dst(n);
    std::vector<float> src(n);
    for (int64_t i = 0; i < n; ++i)
        dst[i] = io::f32_to_bf16(static_cast<float>(rng.normal())),
        src[i] = static_cast<float>(rng.normal());
    auto d_dst = upload(dst), d_src = upload(src);
    Stream s;
    train_accumulate_bf16(d_dst.as<uint16_t>(), d_src.as<float>(), n, s);
    s.synchronize();
    const auto got = download<uint16_t>(d_dst, n);
    for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(got[i], io::f32_to_bf16(io::bf16_to_f32(dst[i]) + src[i])) << i;

    // The embedding gradient grouped by token: every row = bf16(old + Σ its positions' rows).
    const int64_t V = 37, C = 300, N = 500;
    std::vector<int32_t> tokens(N);
    for (auto& t : tokens) t = static_cast<int32_t>(rng.below(V / 2) * 2);  // odd rows unused
    std::vector<int32_t> order, starts, unique;
    for (int32_t v = 0; v < V; ++v) {
        const auto before = static_cast<int32_t>(order.size());
        for (int64_t k = 0; k < N; ++k)
            if (tokens[k] == v) order.push_back(static_cast<int32_t>(k));
        if (static_cast<int32_t>(order.size()) > before)
            starts.push_back(before), unique.push_back(v);
    }
    starts.push_back(static_cast<int32_t>(N));
    std::vector<float> dout(N * C);
    for (auto& x : dout) x = static_cast<float>(rng.normal());
    std::vector<uint16_t> dwte(V * C);
    for (auto& x : dwte) x = io::f32_to_bf16(static_cast<float>(rng.normal()));
    auto d_dwte = upload(dwte), d_dout = upload(dout), d_order = upload(order);
    auto d_starts = upload(starts), d_unique = upload(unique);
    train_embedding_backward_bf16(d_dwte.as<uint16_t>(), d_dout.as<float>(), d_order.as<int32_t>(),
                                  d_starts.as<int32_t>(), d_unique.as<int32_t>(),
                                  static_cast<int64_t>(unique.size()), C, s);
    s.synchronize();
    const auto gw = download<uint16_t>(d_dwte, V * C);
    for (int64_t v = 0; v < V; ++v)
        for (int64_t c = 0; c < C; ++c) {
            double sum = io::bf16_to_f32(dwte[v * C + c]);
            for (int64_t k = 0; k < N; ++k)
                if (tokens[k] == v) sum += dout[k * C + c];
            // fp32 sums of up to ~30 terms, then one bf16 rounding.
            ASSERT_NEAR(io::bf16_to_f32(gw[v * C + c]), sum, std::fabs(sum) / 256 + 1e-4)
                << v << ", " << c;
            if (v % 2) {
                ASSERT_EQ(gw[v * C + c], dwte[v * C + c]);  // untouched
            }
        }
}

}  // namespace
}  // namespace bitttt::cuda::test
