// Every CUDA training op (kernels/cuda/train_ops.hpp) against its CPU reference in
// src/train/ops.hpp / optimizer.hpp, on random data and odd shapes (1 column, sizes that are not
// multiples of a warp, rows longer than a block). Tolerances: the activation quantization and
// weight codes are bit-exact (same float operations); everything else agrees to a few float ulps
// (relative 2e-6 plus 1e-6 absolute; reductions run in another order).
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <utility>
#include <vector>

#include "core/rng.hpp"
#include "cuda_test_util.hpp"
#include "io/safetensors.hpp"
#include "kernels/cuda/train_ops.hpp"
#include "train/ops.hpp"
#include "train/optimizer.hpp"

namespace bitttt::cuda::test {
namespace {

class TrainOpsCuda : public CudaTest {};

// (64, 256), (130, 512) and (5, 1000) take the RMSNorm kernels that hold rows in registers (130
// rows: several blocks of the backward's column sums), the others the general ones.
const std::vector<std::pair<int64_t, int64_t>> kShapes = {
    {1, 1}, {3, 7}, {17, 33}, {64, 256}, {130, 512}, {5, 1000}, {3, 2048}, {2, 4099}};

std::vector<float> random_vec(size_t n, uint64_t seed, float scale = 1.0f) {
    Rng rng(seed);
    std::vector<float> v(n);
    for (auto& x : v) x = scale * static_cast<float>(rng.normal());
    return v;
}

void expect_close(const std::vector<float>& want, const std::vector<float>& got, double rel,
                  double abs, const char* what) {
    ASSERT_EQ(want.size(), got.size()) << what;
    for (size_t i = 0; i < want.size(); ++i)
        ASSERT_NEAR(got[i], want[i], abs + rel * std::fabs(want[i])) << what << " at " << i;
}

// The per-element decay flags as train_adamw reads them: one bit per element.
std::vector<uint32_t> decay_bits(const std::vector<uint8_t>& mask) {
    std::vector<uint32_t> words((mask.size() + 31) / 32, 0);
    for (size_t i = 0; i < mask.size(); ++i)
        if (mask[i]) words[i / 32] |= 1u << (i % 32);
    return words;
}

TEST_F(TrainOpsCuda, Embedding) {
    const int64_t V = 11;
    for (auto [N, C] : kShapes) {
        auto wte = random_vec(V * C, 1);
        std::vector<int32_t> tokens(N);
        for (int64_t n = 0; n < N; ++n) tokens[n] = static_cast<int32_t>((n * 7) % V);  // repeats
        auto dout = random_vec(N * C, 2);
        std::vector<float> out(N * C), dwte = random_vec(V * C, 3);
        train::embedding_forward(out.data(), tokens.data(), wte.data(), N, C);
        auto d_wte = upload(wte), d_tok = upload(tokens), d_out = upload(std::vector<float>(N * C));
        auto d_dout = upload(dout), d_dwte = upload(dwte);
        train::embedding_backward(dwte.data(), dout.data(), tokens.data(), N, C);
        Stream s;
        train_embedding_forward(d_out.as<float>(), d_tok.as<int32_t>(), d_wte.as<float>(), N, C, s);
        train_embedding_backward(d_dwte.as<float>(), d_dout.as<float>(), d_tok.as<int32_t>(), N, C,
                                 s);
        s.synchronize();
        expect_close(out, download<float>(d_out, N * C), 0, 0, "embedding forward");
        expect_close(dwte, download<float>(d_dwte, V * C), 2e-6, 1e-6, "embedding backward");
    }
}

TEST_F(TrainOpsCuda, RmsNormForwardBackward) {
    for (auto [N, C] : kShapes)
        for (bool with_weight : {true, false}) {
            auto x = random_vec(N * C, 4), w = random_vec(C, 5), dy = random_vec(N * C, 6);
            auto dx = random_vec(N * C, 7), dw = random_vec(C, 8);
            std::vector<float> y(N * C), rstd(N);
            const float* wp = with_weight ? w.data() : nullptr;
            train::rmsnorm_forward(y.data(), rstd.data(), x.data(), wp, N, C, 1e-5f);
            auto d_x = upload(x), d_w = upload(w), d_dy = upload(dy), d_dx = upload(dx);
            auto d_dw = upload(dw), d_y = upload(y), d_r = upload(rstd);
            train::rmsnorm_backward(dx.data(), with_weight ? dw.data() : nullptr, dy.data(),
                                    x.data(), wp, rstd.data(), N, C);
            Stream s;
            const float* dwp = with_weight ? d_w.as<float>() : nullptr;
            train_rmsnorm_forward(d_y.as<float>(), d_r.as<float>(), d_x.as<float>(), dwp, N, C,
                                  1e-5f, s);
            train_rmsnorm_backward(d_dx.as<float>(), with_weight ? d_dw.as<float>() : nullptr,
                                   d_dy.as<float>(), d_x.as<float>(), dwp, d_r.as<float>(), N, C,
                                   s);
            s.synchronize();
            expect_close(y, download<float>(d_y, N * C), 2e-6, 1e-6, "rmsnorm y");
            expect_close(rstd, download<float>(d_r, N), 2e-6, 0, "rmsnorm rstd");
            expect_close(dx, download<float>(d_dx, N * C), 2e-5, 2e-5, "rmsnorm dx");
            expect_close(dw, download<float>(d_dw, C), 2e-5, 1e-5 * N, "rmsnorm dweight");
        }
}

// The fused RMSNorm + quantization against train_rmsnorm_forward + train_act_quant_forward: the
// same rstd, codes and scales, bit for bit (with and without weight, 8 bits and none).
TEST_F(TrainOpsCuda, RmsNormQuantMatchesUnfused) {
    for (auto [N, C] : kShapes)
        for (bool with_weight : {true, false})
            for (int act_bits : {8, 0}) {
                auto x = random_vec(N * C, 60, 2.0f), w = random_vec(C, 61);
                auto d_x = upload(x), d_w = upload(w);
                const float* wp = with_weight ? d_w.as<float>() : nullptr;
                auto d_r = upload(std::vector<float>(N)), d_r2 = upload(std::vector<float>(N));
                auto d_c = upload(std::vector<uint16_t>(N * C)),
                     d_c2 = upload(std::vector<uint16_t>(N * C));
                auto d_s = upload(std::vector<float>(N)), d_s2 = upload(std::vector<float>(N));
                auto d_y = upload(std::vector<float>(N * C));
                Stream s;
                train_rmsnorm_quant_forward(d_r.as<float>(), d_c.as<uint16_t>(), d_s.as<float>(),
                                            d_x.as<float>(), wp, N, C, 1e-5f, act_bits, s);
                train_rmsnorm_forward(d_y.as<float>(), d_r2.as<float>(), d_x.as<float>(), wp, N, C,
                                      1e-5f, s);
                train_act_quant_forward(nullptr, d_c2.as<uint16_t>(), d_s2.as<float>(),
                                        d_y.as<float>(), N, C, act_bits, s);
                s.synchronize();
                const auto r = download<float>(d_r, N), r2 = download<float>(d_r2, N);
                const auto sc = download<float>(d_s, N), sc2 = download<float>(d_s2, N);
                const auto c = download<uint16_t>(d_c, N * C), c2 = download<uint16_t>(d_c2, N * C);
                for (int64_t n = 0; n < N; ++n) {
                    ASSERT_EQ(bits(r[n]), bits(r2[n])) << "rstd of row " << n << " of " << C;
                    ASSERT_EQ(bits(sc[n]), bits(sc2[n])) << "scale of row " << n;
                }
                for (int64_t i = 0; i < N * C; ++i)
                    ASSERT_EQ(c[i], c2[i]) << "code " << i << " of " << N << "x" << C;
            }
}

// The residual add + RMSNorm + quantization in one pass against train_residual_scaled_forward
// followed by train_rmsnorm_quant_forward: h, rstd, codes and scales bit for bit.
TEST_F(TrainOpsCuda, ResidualNormQuantMatchesUnfused) {
    for (auto [N, C] : kShapes)
        for (bool with_weight : {true, false}) {
            auto a = random_vec(N * C, 70), b = random_vec(N * C, 71, 30.0f);
            auto w = random_vec(C, 72), rs = random_vec(N, 73, 0.02f);
            auto d_a = upload(a), d_b = upload(b), d_w = upload(w), d_rs = upload(rs);
            auto d_beta = upload(std::vector<float>{0.43f});
            const float* wp = with_weight ? d_w.as<float>() : nullptr;
            auto d_h = upload(std::vector<float>(N * C)), d_h2 = upload(std::vector<float>(N * C));
            auto d_r = upload(std::vector<float>(N)), d_r2 = upload(std::vector<float>(N));
            auto d_c = upload(std::vector<uint16_t>(N * C)),
                 d_c2 = upload(std::vector<uint16_t>(N * C));
            auto d_s = upload(std::vector<float>(N)), d_s2 = upload(std::vector<float>(N));
            Stream s;
            train_residual_norm_quant(d_h.as<float>(), d_a.as<float>(), d_b.as<float>(),
                                      d_rs.as<float>(), d_beta.as<float>(), d_r.as<float>(),
                                      d_c.as<uint16_t>(), d_s.as<float>(), wp, N, C, 1e-5f, 8, s);
            train_residual_scaled_forward(d_h2.as<float>(), d_a.as<float>(), d_b.as<float>(),
                                          d_rs.as<float>(), d_beta.as<float>(), N, C, s);
            train_rmsnorm_quant_forward(d_r2.as<float>(), d_c2.as<uint16_t>(), d_s2.as<float>(),
                                        d_h2.as<float>(), wp, N, C, 1e-5f, 8, s);
            s.synchronize();
            const auto h = download<float>(d_h, N * C), h2 = download<float>(d_h2, N * C);
            const auto c = download<uint16_t>(d_c, N * C), c2 = download<uint16_t>(d_c2, N * C);
            const auto r = download<float>(d_r, N), r2 = download<float>(d_r2, N);
            const auto sc = download<float>(d_s, N), sc2 = download<float>(d_s2, N);
            for (int64_t i = 0; i < N * C; ++i) {
                ASSERT_EQ(bits(h[i]), bits(h2[i])) << "h at " << i << " of " << N << "x" << C;
                ASSERT_EQ(c[i], c2[i]) << "code at " << i;
            }
            for (int64_t n = 0; n < N; ++n) {
                ASSERT_EQ(bits(r[n]), bits(r2[n])) << "rstd of row " << n;
                ASSERT_EQ(bits(sc[n]), bits(sc2[n])) << "scale of row " << n;
            }
        }
}

// The RMSNorm backward that also writes dinp's bf16 forms against train_rmsnorm_backward +
// train_to_bf16_pair: dinp and both bf16 arrays bit for bit, dweight to rounding (float atomics).
TEST_F(TrainOpsCuda, RmsNormBackwardPairMatchesUnfused) {
    for (auto [N, C] : kShapes) {
        auto x = random_vec(N * C, 80), w = random_vec(C, 81), dy = random_vec(N * C, 82);
        auto dx = random_vec(N * C, 83), dw = random_vec(C, 84), rs = random_vec(N, 85);
        std::vector<float> rstd(N);
        for (int64_t n = 0; n < N; ++n) rstd[n] = 0.5f + 0.01f * static_cast<float>(n % 7);
        auto d_x = upload(x), d_w = upload(w), d_dy = upload(dy), d_r = upload(rstd);
        auto d_rs = upload(rs);
        auto d_dx = upload(dx), d_dx2 = upload(dx), d_dw = upload(dw), d_dw2 = upload(dw);
        auto d_p = upload(std::vector<uint16_t>(N * C)), d_s = upload(std::vector<uint16_t>(N * C));
        auto d_p2 = upload(std::vector<uint16_t>(N * C)),
             d_s2 = upload(std::vector<uint16_t>(N * C));
        Stream s;
        train_rmsnorm_backward_pair(d_dx.as<float>(), d_dw.as<float>(), d_p.as<uint16_t>(),
                                    d_s.as<uint16_t>(), d_rs.as<float>(), d_dy.as<float>(),
                                    d_x.as<float>(), d_w.as<float>(), d_r.as<float>(), N, C, s);
        train_rmsnorm_backward(d_dx2.as<float>(), d_dw2.as<float>(), d_dy.as<float>(),
                               d_x.as<float>(), d_w.as<float>(), d_r.as<float>(), N, C, s);
        train_to_bf16_pair(d_p2.as<uint16_t>(), d_s2.as<uint16_t>(), d_dx2.as<float>(),
                           d_rs.as<float>(), N, C, s);
        s.synchronize();
        const auto a = download<float>(d_dx, N * C), b = download<float>(d_dx2, N * C);
        const auto p = download<uint16_t>(d_p, N * C), p2 = download<uint16_t>(d_p2, N * C);
        const auto q = download<uint16_t>(d_s, N * C), q2 = download<uint16_t>(d_s2, N * C);
        for (int64_t i = 0; i < N * C; ++i) {
            ASSERT_EQ(bits(a[i]), bits(b[i])) << "dinp at " << i << " of " << N << "x" << C;
            ASSERT_EQ(p[i], p2[i]) << "plain at " << i;
            ASSERT_EQ(q[i], q2[i]) << "scaled at " << i;
        }
        expect_close(download<float>(d_dw2, C), download<float>(d_dw, C), 2e-5, 1e-5 * N,
                     "dweight");
    }
}

TEST_F(TrainOpsCuda, L2NormForwardBackward) {
    for (auto [N, C] : kShapes) {
        auto x = random_vec(N * C, 9), dy = random_vec(N * C, 10), dx = random_vec(N * C, 11);
        for (int64_t c = 0; c < C; ++c) x[c] = 0.0f;  // a zero row (the gradient's special case)
        std::vector<float> y(N * C), nrm(N);
        train::l2norm_forward(y.data(), nrm.data(), x.data(), N, C);
        auto d_x = upload(x), d_dy = upload(dy), d_dx = upload(dx), d_y = upload(y);
        auto d_n = upload(nrm);
        train::l2norm_backward(dx.data(), dy.data(), x.data(), nrm.data(), N, C);
        Stream s;
        train_l2norm_forward(d_y.as<float>(), d_n.as<float>(), d_x.as<float>(), N, C, s);
        train_l2norm_backward(d_dx.as<float>(), d_dy.as<float>(), d_x.as<float>(), d_n.as<float>(),
                              N, C, s);
        s.synchronize();
        expect_close(y, download<float>(d_y, N * C), 2e-6, 1e-6, "l2norm y");
        expect_close(nrm, download<float>(d_n, N), 2e-6, 0, "l2norm norm");
        expect_close(dx, download<float>(d_dx, N * C), 2e-5, 2e-5, "l2norm dx");
    }
}

TEST_F(TrainOpsCuda, ActQuantIsBitExact) {
    for (auto [N, C] : kShapes)
        for (int act_bits : {8, 0}) {
            auto x = random_vec(N * C, 12, 3.0f);
            x[0] = 0.5f * 127.0f / 127.0f;  // a value exactly between two codes in some row scales
            std::vector<float> y(N * C);
            train::act_quant_forward(y.data(), x.data(), N, C, act_bits);
            auto d_x = upload(x), d_y = upload(std::vector<float>(N * C));
            auto d_c = upload(std::vector<uint16_t>(N * C)), d_s = upload(std::vector<float>(N));
            Stream s;
            train_act_quant_forward(d_y.as<float>(), d_c.as<uint16_t>(), d_s.as<float>(),
                                    d_x.as<float>(), N, C, act_bits, s);
            s.synchronize();
            const auto gy = download<float>(d_y, N * C);
            const auto gc = download<uint16_t>(d_c, N * C);
            const auto gs = download<float>(d_s, N);
            for (int64_t i = 0; i < N * C; ++i) {
                ASSERT_EQ(bits(y[i]), bits(gy[i])) << "act quant at " << i;
                // codes · scale is the fake-quantized value; codes are integers for 8 bits.
                const float code = io::bf16_to_f32(gc[i]);
                if (act_bits == 8) {
                    ASSERT_EQ(code, std::nearbyint(code));
                    ASSERT_LE(std::fabs(code), 127.0f);
                    ASSERT_EQ(bits(code * gs[i / C]), bits(y[i])) << "codes x scale at " << i;
                } else {
                    ASSERT_NEAR(code, x[i], std::fabs(x[i]) / 128.0f);
                }
            }
        }
}

TEST_F(TrainOpsCuda, WeightQuantSeveralTensors) {
    // Three tensors of one flat buffer, one of them odd-sized, one tiny.
    // (200003: several chunks of the scales' partial sums.)
    const std::vector<int64_t> sizes = {1000, 7, 200003};
    std::vector<int64_t> offsets;
    int64_t total = 0, max_size = 0;
    for (int64_t n : sizes)
        offsets.push_back(total), total += (n + 15) / 16 * 16, max_size = std::max(max_size, n);
    auto w = random_vec(total, 13, 0.02f);
    std::vector<float> want(total, 0.0f), want_beta;
    for (size_t i = 0; i < sizes.size(); ++i)
        want_beta.push_back(
            train::weight_quant_forward(want.data() + offsets[i], w.data() + offsets[i], sizes[i]));
    auto d_w = upload(w), d_out = upload(std::vector<float>(total, 0.0f));
    auto d_codes = upload(std::vector<uint16_t>(total)), d_beta = upload(std::vector<float>(3));
    auto d_off = upload(offsets), d_sz = upload(sizes);
    Stream s;
    auto d_part = upload(std::vector<double>(train_weight_beta_partials(3, max_size)));
    train_weight_quant_forward(d_out.as<float>(), d_codes.as<uint16_t>(), d_beta.as<float>(),
                               d_part.as<double>(), d_w.as<float>(), d_off.as<int64_t>(),
                               d_sz.as<int64_t>(), 3, max_size, true, s);
    s.synchronize();
    const auto out = download<float>(d_out, total);
    const auto codes = download<uint16_t>(d_codes, total);
    const auto beta = download<float>(d_beta, 3);
    for (size_t i = 0; i < sizes.size(); ++i) {
        EXPECT_NEAR(beta[i], want_beta[i], 1e-6 * want_beta[i]);
        for (int64_t j = 0; j < sizes[i]; ++j) {
            const int64_t k = offsets[i] + j;
            ASSERT_NEAR(out[k], want[k], 1e-6 * want_beta[i]) << "tensor " << i << " at " << j;
            ASSERT_EQ(io::bf16_to_f32(codes[k]) * beta[i], out[k]);
        }
    }
}

TEST_F(TrainOpsCuda, WeightQuantApplyPerRun) {
    // The betas of all tensors, then the codes of one run (tensors 1..2) into a buffer of that
    // run's span: the same codes as the whole call writes at the run's offsets.
    const std::vector<int64_t> sizes = {1000, 7, 4096 * 3 + 5, 33};
    std::vector<int64_t> offsets;
    int64_t total = 0, max_size = 0;
    for (int64_t n : sizes)
        offsets.push_back(total), total += (n + 15) / 16 * 16, max_size = std::max(max_size, n);
    const int count = static_cast<int>(sizes.size());
    auto w = random_vec(total, 31, 0.02f);
    auto d_w = upload(w), d_off = upload(offsets), d_sz = upload(sizes);
    auto d_codes = upload(std::vector<uint16_t>(total)), d_out = upload(std::vector<float>(total));
    auto d_beta = upload(std::vector<float>(count)), d_beta2 = upload(std::vector<float>(count));
    const int64_t base = offsets[1], span = offsets[2] + sizes[2] - base;
    auto d_run_codes = upload(std::vector<uint16_t>(span, 0xffff));
    auto d_run_out = upload(std::vector<float>(span, -7.0f));
    Stream s;
    auto d_part = upload(std::vector<double>(train_weight_beta_partials(count, max_size)));
    train_weight_quant_forward(d_out.as<float>(), d_codes.as<uint16_t>(), d_beta.as<float>(),
                               d_part.as<double>(), d_w.as<float>(), d_off.as<int64_t>(),
                               d_sz.as<int64_t>(), count, max_size, true, s);
    train_weight_beta(d_beta2.as<float>(), d_part.as<double>(), d_w.as<float>(),
                      d_off.as<int64_t>(), d_sz.as<int64_t>(), count, max_size, true, s);
    train_weight_quant_apply(d_run_out.as<float>(), d_run_codes.as<uint16_t>(),
                             d_beta2.as<float>() + 1, d_w.as<float>(), d_off.as<int64_t>() + 1,
                             d_sz.as<int64_t>() + 1, 2, sizes[2], base, true, s);
    s.synchronize();
    const auto codes = download<uint16_t>(d_codes, total);
    const auto out = download<float>(d_out, total);
    const auto run_codes = download<uint16_t>(d_run_codes, span);
    const auto run_out = download<float>(d_run_out, span);
    const auto beta = download<float>(d_beta, count), beta2 = download<float>(d_beta2, count);
    for (int i = 0; i < count; ++i) EXPECT_EQ(bits(beta[i]), bits(beta2[i])) << i;
    for (int i = 1; i <= 2; ++i)
        for (int64_t j = 0; j < sizes[i]; ++j) {
            const int64_t k = offsets[i] + j;
            ASSERT_EQ(run_codes[k - base], codes[k]) << "tensor " << i << " at " << j;
            ASSERT_EQ(bits(run_out[k - base]), bits(out[k])) << "tensor " << i << " at " << j;
        }
    // The padding between the run's tensors is not written.
    for (int64_t k = offsets[1] + sizes[1]; k < offsets[2]; ++k)
        EXPECT_EQ(run_codes[k - base], 0xffff) << k;
}

TEST_F(TrainOpsCuda, Pointwise) {
    for (int64_t n : {1, 7, 1000, 100003}) {
        auto g = random_vec(n, 14, 3.0f), u = random_vec(n, 15), dout = random_vec(n, 16);
        auto dg = random_vec(n, 17), du = random_vec(n, 18);
        std::vector<float> sw(n), sig(n), res(n);
        train::swiglu_forward(sw.data(), g.data(), u.data(), n);
        train::sigmoid_scale_forward(sig.data(), g.data(), n, 0.3f);
        train::residual_forward(res.data(), g.data(), u.data(), n);
        auto d_g = upload(g), d_u = upload(u), d_do = upload(dout), d_dg = upload(dg);
        auto d_du = upload(du), d_sw = upload(sw), d_sig = upload(sig), d_res = upload(res);
        auto d_dsig = upload(dg);
        std::vector<float> dsig = dg;
        train::swiglu_backward(dg.data(), du.data(), dout.data(), g.data(), u.data(), n);
        train::sigmoid_scale_backward(dsig.data(), dout.data(), g.data(), n, 0.3f);
        Stream s;
        train_swiglu_forward(d_sw.as<float>(), d_g.as<float>(), d_u.as<float>(), n, s);
        train_swiglu_backward(d_dg.as<float>(), d_du.as<float>(), d_do.as<float>(), d_g.as<float>(),
                              d_u.as<float>(), n, s);
        train_sigmoid_scale_forward(d_sig.as<float>(), d_g.as<float>(), n, 0.3f, s);
        train_sigmoid_scale_backward(d_dsig.as<float>(), d_do.as<float>(), d_g.as<float>(), n, 0.3f,
                                     s);
        train_residual_forward(d_res.as<float>(), d_g.as<float>(), d_u.as<float>(), n, s);
        s.synchronize();
        expect_close(sw, download<float>(d_sw, n), 4e-6, 1e-6, "swiglu");
        expect_close(dg, download<float>(d_dg, n), 4e-6, 1e-6, "swiglu dgate");
        expect_close(du, download<float>(d_du, n), 4e-6, 1e-6, "swiglu dup");
        expect_close(sig, download<float>(d_sig, n), 4e-6, 1e-7, "sigmoid_scale");
        expect_close(dsig, download<float>(d_dsig, n), 4e-6, 1e-6, "sigmoid_scale backward");
        expect_close(res, download<float>(d_res, n), 0, 0, "residual");
    }
}

TEST_F(TrainOpsCuda, BiasScaleColumnSumBf16) {
    for (auto [N, C] : kShapes) {
        auto x = random_vec(N * C, 19), b = random_vec(C, 20), rs = random_vec(N, 21);
        auto dst = random_vec(C, 22);
        const float scalar = 0.37f;
        auto d_x = upload(x), d_b = upload(b), d_rs = upload(rs), d_dst = upload(dst);
        auto d_sc = upload(std::vector<float>{scalar});
        auto d_h = upload(std::vector<uint16_t>(N * C)),
             d_h2 = upload(std::vector<uint16_t>(N * C));
        Stream s;
        train_to_bf16(d_h.as<uint16_t>(), d_x.as<float>(), N * C, s);
        train_to_bf16_rows(d_h2.as<uint16_t>(), d_x.as<float>(), d_rs.as<float>(), N, C, s);
        train_column_sum_accumulate(d_dst.as<float>(), d_x.as<float>(), N, C, s);
        train_scale_rows(d_x.as<float>(), d_rs.as<float>(), d_sc.as<float>(), N, C, s);
        train_add_bias(d_x.as<float>(), d_b.as<float>(), N, C, s);
        s.synchronize();
        const auto h = download<uint16_t>(d_h, N * C), h2 = download<uint16_t>(d_h2, N * C);
        std::vector<float> want = x, want_dst = dst;
        for (int64_t n = 0; n < N; ++n)
            for (int64_t c = 0; c < C; ++c) {
                const float v = x[n * C + c];
                ASSERT_NEAR(io::bf16_to_f32(h[n * C + c]), v, std::fabs(v) / 256.0f);
                ASSERT_NEAR(io::bf16_to_f32(h2[n * C + c]), v * rs[n],
                            std::fabs(v * rs[n]) / 256.0f);
                want[n * C + c] = v * rs[n] * scalar + b[c];
                want_dst[c] += v;
            }
        expect_close(want, download<float>(d_x, N * C), 2e-6, 1e-6, "scale_rows + add_bias");
        expect_close(want_dst, download<float>(d_dst, C), 1e-5, 1e-5 * N, "column sum");
    }
}

// The MLP's fused kernels against the unfused GPU ops they replace, bit for bit: rescale gate and
// up (train_scale_rows), SwiGLU, quantize; and the bf16 backward from the raw products against
// the fp32 backward on the rescaled ones, rounded to bf16 plain and times the row scale. Shapes
// with odd widths, a width too long for the shared-memory path (13000), and buffers one float
// off 16-byte alignment (the scalar path of the row kernels).
TEST_F(TrainOpsCuda, SwigluFusedMatchesUnfused) {
    auto shapes = kShapes;
    shapes.push_back({3, 13000});
    for (auto [N, M] : shapes)
        for (int64_t skew : {0, 1}) {
            const int64_t n = N * M;
            auto g = random_vec(n + skew, 40, 40.0f), u = random_vec(n + skew, 41, 40.0f);
            auto dout = random_vec(n + skew, 42), rs = random_vec(N, 43, 0.1f);
            const float bg = 0.61f, bu = 0.37f;
            auto d_g = upload(g), d_u = upload(u), d_do = upload(dout), d_rs = upload(rs);
            auto d_bg = upload(std::vector<float>{bg}), d_bu = upload(std::vector<float>{bu});
            const float* gp = d_g.as<float>() + skew;
            const float* up = d_u.as<float>() + skew;
            const float* dop = d_do.as<float>() + skew;
            Stream s;
            // Fused, from the raw products.
            auto d_codes = upload(std::vector<uint16_t>(n)), d_sc = upload(std::vector<float>(N));
            auto d_q = upload(std::vector<float>(n));
            train_swiglu_quant_forward(gp, up, d_rs.as<float>(), d_bg.as<float>(), d_bu.as<float>(),
                                       d_q.as<float>(), d_codes.as<uint16_t>(), d_sc.as<float>(), N,
                                       M, 8, s);
            std::vector<DeviceBuffer> bf;
            for (int i = 0; i < 4; ++i) bf.push_back(upload(std::vector<uint16_t>(n + 4)));
            train_swiglu_backward_bf16(bf[0].as<uint16_t>() + skew, bf[1].as<uint16_t>() + skew,
                                       bf[2].as<uint16_t>() + skew, bf[3].as<uint16_t>() + skew,
                                       d_rs.as<float>(), d_bg.as<float>(), d_bu.as<float>(), dop,
                                       gp, up, N, M, s);
            // Unfused: rescale in place, then the plain ops.
            auto d_g2 = upload(std::vector<float>(g.begin() + skew, g.end()));
            auto d_u2 = upload(std::vector<float>(u.begin() + skew, u.end()));
            train_scale_rows(d_g2.as<float>(), d_rs.as<float>(), d_bg.as<float>(), N, M, s);
            train_scale_rows(d_u2.as<float>(), d_rs.as<float>(), d_bu.as<float>(), N, M, s);
            auto d_sw = upload(std::vector<float>(n)), d_q2 = upload(std::vector<float>(n));
            auto d_codes2 = upload(std::vector<uint16_t>(n)), d_sc2 = upload(std::vector<float>(N));
            train_swiglu_forward(d_sw.as<float>(), d_g2.as<float>(), d_u2.as<float>(), n, s);
            train_act_quant_forward(d_q2.as<float>(), d_codes2.as<uint16_t>(), d_sc2.as<float>(),
                                    d_sw.as<float>(), N, M, 8, s);
            auto d_dg = upload(std::vector<float>(n)), d_du = upload(std::vector<float>(n));
            train_swiglu_backward(d_dg.as<float>(), d_du.as<float>(), dop, d_g2.as<float>(),
                                  d_u2.as<float>(), n, s);
            std::vector<DeviceBuffer> bf2;
            for (int i = 0; i < 4; ++i) bf2.push_back(upload(std::vector<uint16_t>(n)));
            train_to_bf16(bf2[0].as<uint16_t>(), d_dg.as<float>(), n, s);
            train_to_bf16_rows(bf2[1].as<uint16_t>(), d_dg.as<float>(), d_rs.as<float>(), N, M, s);
            train_to_bf16(bf2[2].as<uint16_t>(), d_du.as<float>(), n, s);
            train_to_bf16_rows(bf2[3].as<uint16_t>(), d_du.as<float>(), d_rs.as<float>(), N, M, s);
            s.synchronize();
            // The raw products are left as they were.
            const auto g_after = download<float>(d_g, n + skew);
            for (int64_t i = 0; i < n + skew; ++i) ASSERT_EQ(bits(g_after[i]), bits(g[i]));
            const auto q = download<float>(d_q, n), q2 = download<float>(d_q2, n);
            const auto c = download<uint16_t>(d_codes, n), c2 = download<uint16_t>(d_codes2, n);
            const auto sc = download<float>(d_sc, N), sc2 = download<float>(d_sc2, N);
            for (int64_t i = 0; i < n; ++i) {
                ASSERT_EQ(bits(q[i]), bits(q2[i]))
                    << "swiglu_quant at " << i << " of " << N << "x" << M;
                ASSERT_EQ(c[i], c2[i]) << "codes at " << i;
            }
            for (int64_t r = 0; r < N; ++r) ASSERT_EQ(bits(sc[r]), bits(sc2[r]));
            for (int k = 0; k < 4; ++k) {
                const auto a = download<uint16_t>(bf[static_cast<size_t>(k)], n + skew);
                const auto b = download<uint16_t>(bf2[static_cast<size_t>(k)], n);
                for (int64_t i = 0; i < n; ++i)
                    ASSERT_EQ(a[static_cast<size_t>(i + skew)], b[static_cast<size_t>(i)])
                        << "swiglu backward output " << k << " at " << i << " of " << N << "x" << M;
            }
        }
}

// The SwiGLU backward from a bf16 dout (GpuMemoryOptions::bf16_dx) gives the bits it gives from
// the same values in fp32 (aligned and one element off: the 8-byte and the scalar loads).
TEST_F(TrainOpsCuda, SwigluBackwardReadsBf16Dout) {
    for (auto [N, M] : kShapes)
        for (int64_t skew : {0, 1}) {
            const int64_t n = N * M;
            auto g = random_vec(n + skew, 60, 40.0f), u = random_vec(n + skew, 61, 40.0f);
            auto dout = random_vec(n + skew, 62), rs = random_vec(N, 63, 0.1f);
            std::vector<uint16_t> d16(static_cast<size_t>(n + skew));
            for (size_t i = 0; i < d16.size(); ++i) {
                d16[i] = io::f32_to_bf16(dout[i]);
                dout[i] = io::bf16_to_f32(d16[i]);
            }
            auto d_g = upload(g), d_u = upload(u), d_do = upload(dout), d_d16 = upload(d16);
            auto d_rs = upload(rs), d_bg = upload(std::vector<float>{0.61f});
            auto d_bu = upload(std::vector<float>{0.37f});
            Stream s;
            std::vector<std::vector<uint16_t>> out[2];
            for (int from16 = 0; from16 < 2; ++from16) {
                std::vector<DeviceBuffer> bf;
                for (int i = 0; i < 4; ++i) bf.push_back(upload(std::vector<uint16_t>(n + skew)));
                train_swiglu_backward_bf16(bf[0].as<uint16_t>() + skew, bf[1].as<uint16_t>() + skew,
                                           bf[2].as<uint16_t>() + skew, bf[3].as<uint16_t>() + skew,
                                           d_rs.as<float>(), d_bg.as<float>(), d_bu.as<float>(),
                                           from16 ? nullptr : d_do.as<float>() + skew,
                                           d_g.as<float>() + skew, d_u.as<float>() + skew, N, M, s,
                                           false, from16 ? d_d16.as<uint16_t>() + skew : nullptr);
                s.synchronize();
                for (int i = 0; i < 4; ++i)
                    out[from16].push_back(download<uint16_t>(bf[static_cast<size_t>(i)], n + skew));
            }
            for (int i = 0; i < 4; ++i)
                EXPECT_EQ(out[0][static_cast<size_t>(i)], out[1][static_cast<size_t>(i)])
                    << "output " << i << " of " << N << "x" << M << " skew " << skew;
        }
}

// train_to_bf16_pair = train_to_bf16 + train_to_bf16_rows; train_residual_scaled_forward against
// the CPU formula (a + b · r · s), aligned and one float off.
TEST_F(TrainOpsCuda, Bf16PairAndResidualScaled) {
    for (auto [N, C] : kShapes)
        for (int64_t skew : {0, 1}) {
            const int64_t n = N * C;
            auto x = random_vec(n + skew, 50), a = random_vec(n + skew, 51);
            auto rs = random_vec(N, 52);
            const float scalar = 0.29f;
            auto d_x = upload(x), d_a = upload(a), d_rs = upload(rs);
            auto d_sc = upload(std::vector<float>{scalar});
            auto d_p = upload(std::vector<uint16_t>(n + skew)),
                 d_s = upload(std::vector<uint16_t>(n + skew));
            auto d_p2 = upload(std::vector<uint16_t>(n)), d_s2 = upload(std::vector<uint16_t>(n));
            auto d_out = upload(std::vector<float>(n + skew));
            const float* xp = d_x.as<float>() + skew;
            Stream s;
            train_to_bf16_pair(d_p.as<uint16_t>() + skew, d_s.as<uint16_t>() + skew, xp,
                               d_rs.as<float>(), N, C, s);
            train_to_bf16(d_p2.as<uint16_t>(), xp, n, s);
            train_to_bf16_rows(d_s2.as<uint16_t>(), xp, d_rs.as<float>(), N, C, s);
            train_residual_scaled_forward(d_out.as<float>() + skew, d_a.as<float>() + skew, xp,
                                          d_rs.as<float>(), d_sc.as<float>(), N, C, s);
            s.synchronize();
            const auto p = download<uint16_t>(d_p, n + skew), p2 = download<uint16_t>(d_p2, n);
            const auto sb = download<uint16_t>(d_s, n + skew), sb2 = download<uint16_t>(d_s2, n);
            const auto out = download<float>(d_out, n + skew);
            for (int64_t r = 0; r < N; ++r)
                for (int64_t c = 0; c < C; ++c) {
                    const size_t i = static_cast<size_t>(r * C + c), j = i + skew;
                    ASSERT_EQ(p[j], p2[i]) << "plain at " << i;
                    ASSERT_EQ(sb[j], sb2[i]) << "scaled at " << i;
                    ASSERT_NEAR(io::bf16_to_f32(p[j]), x[j], std::fabs(x[j]) / 256.0f);
                    const float want = a[j] + x[j] * rs[r] * scalar;
                    ASSERT_NEAR(out[j], want, 1e-6 + 2e-6 * std::fabs(want)) << "residual " << i;
                }
        }
}

// The delta rule's ttt.lr projection kernels against the formulas in double: logit = x · Wᵀ + b,
// η = scale · σ(logit), dx = dlogit · W; one head and several, odd widths, both row paths.
TEST_F(TrainOpsCuda, LrGateForwardAndDx) {
    for (auto [N, D] : kShapes)
        for (int64_t H : {1, 3}) {
            auto x = random_vec(N * D, 90), w = random_vec(H * D, 91, 0.1f), b = random_vec(H, 92);
            auto dl = random_vec(N * H, 93);
            const float scale = 0.7f;
            auto d_x = upload(x), d_w = upload(w), d_b = upload(b), d_dl = upload(dl);
            auto d_lg = upload(std::vector<float>(N * H)),
                 d_eta = upload(std::vector<float>(N * H));
            auto d_dx = upload(std::vector<float>(N * D, 5.0f));
            Stream s;
            train_lr_gate_forward(d_lg.as<float>(), d_eta.as<float>(), d_x.as<float>(),
                                  d_w.as<float>(), d_b.as<float>(), N, D, H, scale, s);
            train_lr_gate_dx(d_dx.as<float>(), d_dl.as<float>(), d_w.as<float>(), N, D, H, s);
            s.synchronize();
            const auto lg = download<float>(d_lg, N * H), eta = download<float>(d_eta, N * H);
            const auto dx = download<float>(d_dx, N * D);
            for (int64_t n = 0; n < N; ++n) {
                for (int64_t h = 0; h < H; ++h) {
                    double z = b[h], mag = std::fabs(b[h]);
                    for (int64_t c = 0; c < D; ++c) {
                        z += static_cast<double>(x[n * D + c]) * w[h * D + c];
                        mag += std::fabs(static_cast<double>(x[n * D + c]) * w[h * D + c]);
                    }
                    ASSERT_NEAR(lg[n * H + h], z, 1e-5 * mag + 1e-7) << n << "," << h;
                    ASSERT_NEAR(eta[n * H + h], scale / (1.0 + std::exp(-z)), 1e-5 * (1 + mag));
                }
                for (int64_t c = 0; c < D; ++c) {
                    double want = 0, mag = 0;
                    for (int64_t h = 0; h < H; ++h) {
                        want += static_cast<double>(dl[n * H + h]) * w[h * D + c];
                        mag += std::fabs(static_cast<double>(dl[n * H + h]) * w[h * D + c]);
                    }
                    ASSERT_NEAR(dx[n * D + c], want, 1e-6 * mag + 1e-8) << n << "," << c;
                }
            }
        }
}

TEST_F(TrainOpsCuda, CrossEntropyFused) {
    for (auto [N, V] : std::vector<std::pair<int64_t, int64_t>>{
             {1, 1}, {3, 7}, {17, 257}, {9, 16384}, {2, 40000}}) {
        auto z = random_vec(N * V, 23, 4.0f);
        std::vector<int32_t> t(N);
        for (int64_t n = 0; n < N; ++n) t[n] = static_cast<int32_t>((n * 13 + 5) % V);
        std::vector<float> probs = z, losses(N);
        const double mean =
            train::crossentropy_forward(losses.data(), probs.data(), t.data(), N, V);
        const float dloss = 1.0f / static_cast<float>(N);
        std::vector<float> dz(N * V);
        train::crossentropy_backward(dz.data(), probs.data(), t.data(), N, V, dloss);
        auto d_z = upload(z), d_t = upload(t), d_l = upload(std::vector<float>(N));
        auto d_bf = upload(std::vector<uint16_t>(N * V)), d_mean = upload(std::vector<double>(1));
        auto d_z2 = upload(z);
        Stream s;
        // bf16 gradient from an unchanged logits buffer, then fp32 in place.
        train_crossentropy_fused(d_l.as<float>(), nullptr, d_bf.as<uint16_t>(), d_z.as<float>(),
                                 d_t.as<int32_t>(), N, V, dloss, s);
        train_crossentropy_fused(d_l.as<float>(), d_z2.as<float>(), nullptr, d_z2.as<float>(),
                                 d_t.as<int32_t>(), N, V, dloss, s);
        train_mean(d_mean.as<double>(), d_l.as<float>(), N, s);
        s.synchronize();
        expect_close(losses, download<float>(d_l, N), 1e-5, 1e-5, "cross-entropy losses");
        EXPECT_NEAR(download<double>(d_mean, 1)[0], mean, 1e-5 * std::fabs(mean));
        expect_close(dz, download<float>(d_z2, N * V), 1e-5, 1e-9, "cross-entropy dlogits");
        const auto bf = download<uint16_t>(d_bf, N * V);
        for (int64_t i = 0; i < N * V; ++i)
            ASSERT_NEAR(io::bf16_to_f32(bf[i]), dz[i], std::fabs(dz[i]) / 128.0f + 1e-9) << i;
    }
}

TEST_F(TrainOpsCuda, GlobalNormAndAdamW) {
    for (int64_t n : {1, 1000, 8192 * 3 + 17})
        for (float clip : {1e-3f, 1e6f}) {  // clipping active and not
            auto p = random_vec(n, 24), g = random_vec(n, 25), m = random_vec(n, 26, 0.1f);
            auto v = random_vec(n, 27, 0.1f);
            for (auto& x : v) x = x * x;
            std::vector<uint8_t> mask(n);
            for (int64_t i = 0; i < n; ++i) mask[i] = (i / 100) % 2;
            const double norm = train::global_norm(g.data(), n);
            const float scale = norm > clip ? static_cast<float>(clip / norm) : 1.0f;
            train::AdamWConfig c;
            const int64_t t = 7;
            auto d_p = upload(p), d_g = upload(g), d_m = upload(m), d_v = upload(v);
            auto d_mask = upload(decay_bits(mask)), d_norm = upload(std::vector<double>(1));
            auto d_part = upload(std::vector<double>(train_norm_partials(n)));
            // The CPU step per run of equal decay flags (as the Trainer does per tensor).
            for (int64_t i = 0; i < n; i += 100) {
                const int64_t len = std::min<int64_t>(100, n - i);
                train::adamw_update(p.data() + i, g.data() + i, m.data() + i, v.data() + i, len,
                                    1e-3f, scale, t, mask[i] != 0, c);
            }
            const float bc1 = 1.0f - std::pow(c.beta1, static_cast<float>(t));
            const float bc2 = 1.0f - std::pow(c.beta2, static_cast<float>(t));
            Stream s;
            train_global_norm(d_norm.as<double>(), d_part.as<double>(), d_g.as<float>(), n, s);
            train_adamw(d_p.as<float>(), d_g.as<float>(), d_m.as<float>(), d_v.as<float>(),
                        d_mask.as<uint32_t>(), n, 1e-3f, c.beta1, c.beta2, c.eps, c.weight_decay,
                        bc1, bc2, d_norm.as<double>(), nullptr, clip, s);
            s.synchronize();
            EXPECT_NEAR(download<double>(d_norm, 1)[0], norm, 1e-12 * norm);
            expect_close(p, download<float>(d_p, n), 1e-6, 1e-7, "adamw params");
            // m = β1 m + (1 − β1) g cancels when the terms have opposite signs: an absolute bound
            // at the terms' scale (the GPU contracts to FMA, the CPU may not).
            expect_close(m, download<float>(d_m, n), 1e-6, 1e-7, "adamw m");
            expect_close(v, download<float>(d_v, n), 1e-6, 1e-12, "adamw v");
        }
}

TEST_F(TrainOpsCuda, AdamWSkipsNonFiniteSteps) {
    const int64_t n = 100;
    auto p = random_vec(n, 28), g = random_vec(n, 29);
    auto d_p = upload(p), d_g = upload(g), d_m = upload(std::vector<float>(n));
    auto d_v = upload(std::vector<float>(n));
    auto d_mask = upload(decay_bits(std::vector<uint8_t>(n, 1)));
    auto d_norm = upload(std::vector<double>{1.0}), d_loss = upload(std::vector<double>{NAN});
    Stream s;
    train_adamw(d_p.as<float>(), d_g.as<float>(), d_m.as<float>(), d_v.as<float>(),
                d_mask.as<uint32_t>(), n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.1f, 0.05f,
                d_norm.as<double>(), d_loss.as<double>(), 1.0f, s);
    s.synchronize();
    expect_close(p, download<float>(d_p, n), 0, 0, "parameters after a NaN loss");
}

TEST_F(TrainOpsCuda, AdamWBf16Moments) {
    // Moments that start in bf16: the fp32 step of the CPU on the same values gives the same
    // parameters (the update uses this step's fp32 moments), and each stored moment is its fp32
    // value rounded down or up to a neighbouring bf16 value.
    const int64_t n = 8192 * 3 + 17;
    auto p = random_vec(n, 40), g = random_vec(n, 41), m = random_vec(n, 42, 0.1f);
    auto v = random_vec(n, 43, 0.1f);
    std::vector<uint16_t> mb(n), vb(n);
    for (int64_t i = 0; i < n; ++i) {
        v[i] = v[i] * v[i];
        mb[i] = io::f32_to_bf16(m[i]), vb[i] = io::f32_to_bf16(v[i]);
        m[i] = io::bf16_to_f32(mb[i]), v[i] = io::bf16_to_f32(vb[i]);
    }
    std::vector<uint8_t> mask(n);
    for (int64_t i = 0; i < n; ++i) mask[i] = (i / 100) % 2;
    train::AdamWConfig c;
    const int64_t t = 7;
    const float clip = 1e-3f;
    const double norm = train::global_norm(g.data(), n);
    const float scale = norm > clip ? static_cast<float>(clip / norm) : 1.0f;
    auto d_p = upload(p), d_g = upload(g), d_m = upload(mb), d_v = upload(vb);
    auto d_mask = upload(decay_bits(mask)), d_norm = upload(std::vector<double>(1));
    auto d_part = upload(std::vector<double>(train_norm_partials(n)));
    for (int64_t i = 0; i < n; i += 100) {
        const int64_t len = std::min<int64_t>(100, n - i);
        train::adamw_update(p.data() + i, g.data() + i, m.data() + i, v.data() + i, len, 1e-3f,
                            scale, t, mask[i] != 0, c);
    }
    const float bc1 = 1.0f - std::pow(c.beta1, static_cast<float>(t));
    const float bc2 = 1.0f - std::pow(c.beta2, static_cast<float>(t));
    Stream s;
    train_global_norm(d_norm.as<double>(), d_part.as<double>(), d_g.as<float>(), n, s);
    train_adamw_bf16_moments(d_p.as<float>(), d_g.as<float>(), d_m.as<uint16_t>(),
                             d_v.as<uint16_t>(), d_mask.as<uint32_t>(), n, 1e-3f, c.beta1, c.beta2,
                             c.eps, c.weight_decay, bc1, bc2, d_norm.as<double>(), nullptr, clip,
                             12345, s);
    s.synchronize();
    expect_close(p, download<float>(d_p, n), 1e-6, 1e-7, "adamw params (bf16 moments)");
    const auto gm = download<uint16_t>(d_m, n), gv = download<uint16_t>(d_v, n);
    for (int64_t i = 0; i < n; ++i) {
        // One bf16 ulp of the value's binade (2^-7 relative to its leading power of two), plus
        // the fp32 tolerance of the step itself.
        for (auto [want, got] :
             {std::pair{m[i], io::bf16_to_f32(gm[i])}, {v[i], io::bf16_to_f32(gv[i])}}) {
            const float ulp = std::ldexp(1.0f, std::ilogb(want) - 7);
            ASSERT_LE(std::fabs(got - want), ulp + 1e-6f * std::fabs(want) + 1e-30f)
                << i << ": " << want << " stored as " << got;
        }
    }
}

TEST_F(TrainOpsCuda, AdamWBf16MomentsRoundWithoutBias) {
    // Every element gets the same step from zero moments: m = (1 − β1) g exactly in fp32, a value
    // between two bf16 neighbours. Stochastic rounding stores both neighbours, with a mean equal
    // to the fp32 value (round-to-nearest would store one neighbour everywhere).
    const int64_t n = 1 << 16;
    const float g0 = 1.2345f;  // under the clip, so the scale is 1
    std::vector<float> g(n, g0), p(n, 0.5f);
    auto d_p = upload(p), d_g = upload(g);
    auto d_m = upload(std::vector<uint16_t>(n, 0)), d_v = upload(std::vector<uint16_t>(n, 0));
    auto d_mask = upload(decay_bits(std::vector<uint8_t>(n, 0)));
    const double norm = 1.0;
    auto d_norm = upload(std::vector<double>{norm});
    Stream s;
    train_adamw_bf16_moments(d_p.as<float>(), d_g.as<float>(), d_m.as<uint16_t>(),
                             d_v.as<uint16_t>(), d_mask.as<uint32_t>(), n, 1e-3f, 0.9f, 0.95f,
                             1e-8f, 0.0f, 0.1f, 0.05f, d_norm.as<double>(), nullptr, 1e9f, 99, s);
    s.synchronize();
    const float want = (1.0f - 0.9f) * g0;
    const auto gm = download<uint16_t>(d_m, n);
    double sum = 0;
    float lo = INFINITY, hi = -INFINITY;
    for (uint16_t b : gm) {
        const float x = io::bf16_to_f32(b);
        sum += x, lo = std::min(lo, x), hi = std::max(hi, x);
    }
    const float ulp = std::ldexp(1.0f, std::ilogb(want) - 7);
    EXPECT_LT(lo, want);
    EXPECT_GT(hi, want);
    EXPECT_LE(hi - lo, ulp * 1.0001f);
    // The mean's standard deviation is at most ulp / (2 √n) = ulp / 512.
    EXPECT_NEAR(sum / n, want, ulp / 50.0) << "ulp " << ulp;
    std::cout << "[bf16 moments] m = " << want << ": mean stored " << sum / n << " (ulp " << ulp
              << ")\n";
}

}  // namespace
}  // namespace bitttt::cuda::test
