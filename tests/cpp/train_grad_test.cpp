// Gradient checks of every training op and of the whole model against central finite differences
// in double precision (the ops are templates; fp64 makes the finite differences exact to ~1e-9).
//
// Each op is checked through a scalar loss L = Σ out · R with a fixed random R: its backward
// called with dout = R must give ∂L/∂input, which central differences (L(x+ε) − L(x−ε)) / 2ε
// estimate to O(ε²).
//
// The straight-through estimator (STE): BitLinear's forward uses round() twice (weights and
// activations), whose true derivative is 0 almost everywhere; the STE defines the backward as
// if each rounding were the identity. That is exactly the gradient of the *surrogate*
//     out(x, W) = (x + c_x) · (W + c_W)ᵀ,   c_x = Q_act(x₀) − x₀,  c_W = Q_w(W₀) − W₀  (constants),
// which equals the quantized forward at the point (x₀, W₀) and moves like the unquantized one
// around it (PyTorch's `x + (q(x) − x).detach()`). So the STE test takes finite differences of
// that surrogate and compares them with our backward (matmul_backward fed the quantized operands),
// and separately checks that the quantized forward equals the inference kernels' quantization.
// The whole-model checks run (a) with quantization off, where the model is smooth and every
// parameter is checked, and (b) with weight quantization on and act_bits = 0, checking the
// parameters that the weight roundings do not depend on (embed, norms, lm_head, ttt.lr), where
// the quantized model is smooth too.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <tuple>
#include <vector>

#include "core/cpu_features.hpp"
#include "core/rng.hpp"
#include "kernels/cpu/ternary.hpp"
#include "kernels/cpu/ttt_scan.hpp"
#include "train/gemm.hpp"
#include "train/model.hpp"
#include "train/ops.hpp"
#include "train/ttt_bptt.hpp"

namespace bitttt::train {
namespace {

using Vec = std::vector<double>;

Vec random_vec(Rng& rng, size_t n, double scale = 1.0) {
    Vec v(n);
    for (auto& x : v) x = scale * rng.normal();
    return v;
}

double dot(const Vec& a, const Vec& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
}

// Compares grad with central differences of loss() w.r.t. every element of x (restored after).
void expect_grad(const char* what, Vec& x, const Vec& grad, const std::function<double()>& loss,
                 double eps = 1e-5, double tol = 1e-6) {
    ASSERT_EQ(x.size(), grad.size()) << what;
    for (size_t i = 0; i < x.size(); ++i) {
        const double saved = x[i];
        x[i] = saved + eps;
        const double lp = loss();
        x[i] = saved - eps;
        const double lm = loss();
        x[i] = saved;
        const double fd = (lp - lm) / (2 * eps);
        ASSERT_NEAR(grad[i], fd, tol * std::max(1.0, std::fabs(fd))) << what << " element " << i;
    }
}

// Every ISA's fp32 GEMM against the triple loop, on shapes with full and partial tiles.
TEST(TrainGrad, GemmMatchesReferenceOnOddShapes) {
    Rng rng(1);
    const Isa saved = active_isa();
    for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
        if (isa > detected_isa()) continue;
        set_active_isa(isa);
        for (auto [m, n, k] : {std::tuple{1, 1, 1},
                               {5, 130, 7},
                               {9, 3, 33},
                               {4, 128, 2},
                               {13, 257, 5},
                               {8, 192, 70},
                               {7, 64, 300}}) {
            std::vector<float> a(m * k), b(k * n), c(m * n), ref(m * n);
            for (auto& v : a) v = rng.normal();
            for (auto& v : b) v = rng.normal();
            for (auto& v : c) v = rng.normal();
            ref = c;
            const float tol = 1e-5f * k + 1e-5f;
            // Row-major A, accumulating, alpha 0.5.
            gemm(c.data(), a.data(), k, int64_t{1}, b.data(), m, n, k, 0.5f, true);
            gemm_reference(ref.data(), a.data(), k, int64_t{1}, b.data(), m, n, k, 0.5f, true);
            for (int i = 0; i < m * n; ++i) ASSERT_NEAR(c[i], ref[i], tol) << m << "x" << n;
            // Transposed A (a holds [k, m]), overwriting.
            gemm(c.data(), a.data(), int64_t{1}, m, b.data(), m, n, k, 1.0f, false);
            gemm_reference(ref.data(), a.data(), int64_t{1}, m, b.data(), m, n, k, 1.0f, false);
            for (int i = 0; i < m * n; ++i) ASSERT_NEAR(c[i], ref[i], tol) << m << "x" << n;
        }
    }
    set_active_isa(saved);
}

// The AVX-512 GEMM with its packed B strips and transposed-A blocks gives the bits of the
// unpacked loop (the same sums in the same order), on shapes with partial row groups and tiles.
TEST(TrainGrad, GemmPackingIsBitIdentical) {
    if (detected_isa() < Isa::kAvx512) GTEST_SKIP() << "no AVX-512";
    Rng rng(2);
    for (auto [m, n, k] :
         {std::tuple{37, 200, 300}, {64, 130, 257}, {21, 64, 40}, {40, 520, 300}}) {
        std::vector<float> a(m * k), b(k * n), c0(m * n), c[2];
        for (auto& v : a) v = rng.normal();
        for (auto& v : b) v = rng.normal();
        for (auto& v : c0) v = rng.normal();
        for (bool transposed : {false, true})
            for (bool accumulate : {false, true}) {
                for (int packing = 0; packing < 2; ++packing) {
                    set_gemm_packing(packing == 1);
                    c[packing] = c0;
                    gemm(c[packing].data(), a.data(), transposed ? 1 : k,
                         transposed ? int64_t{m} : 1, b.data(), m, n, k, 0.75f, accumulate);
                }
                set_gemm_packing(true);
                EXPECT_EQ(0, std::memcmp(c[0].data(), c[1].data(), sizeof(float) * c0.size()))
                    << m << "x" << n << "x" << k << " transposed " << transposed;
            }
    }
}

TEST(TrainGrad, RmsNorm) {
    const int64_t N = 3, C = 7;
    Rng rng(2);
    Vec x = random_vec(rng, N * C), w = random_vec(rng, C), r = random_vec(rng, N * C);
    for (bool with_weight : {true, false}) {
        auto loss = [&] {
            Vec out(N * C), rstd(N);
            rmsnorm_forward(out.data(), rstd.data(), x.data(), with_weight ? w.data() : nullptr, N,
                            C, 1e-5);
            return dot(out, r);
        };
        Vec out(N * C), rstd(N), dx(N * C, 0.0), dw(C, 0.0);
        const double* wp = with_weight ? w.data() : nullptr;
        rmsnorm_forward(out.data(), rstd.data(), x.data(), wp, N, C, 1e-5);
        rmsnorm_backward(dx.data(), with_weight ? dw.data() : nullptr, r.data(), x.data(), wp,
                         rstd.data(), N, C);
        expect_grad("rmsnorm dinp", x, dx, loss);
        if (with_weight) expect_grad("rmsnorm dweight", w, dw, loss);
    }
}

TEST(TrainGrad, L2Norm) {
    const int64_t N = 4, C = 5;
    Rng rng(3);
    Vec x = random_vec(rng, N * C), r = random_vec(rng, N * C);
    auto loss = [&] {
        Vec out(N * C), nrm(N);
        l2norm_forward(out.data(), nrm.data(), x.data(), N, C);
        return dot(out, r);
    };
    Vec out(N * C), nrm(N), dx(N * C, 0.0);
    l2norm_forward(out.data(), nrm.data(), x.data(), N, C);
    l2norm_backward(dx.data(), r.data(), x.data(), nrm.data(), N, C);
    expect_grad("l2norm dinp", x, dx, loss);
}

TEST(TrainGrad, MatmulWithBias) {
    const int64_t N = 5, C = 6, OC = 3;
    Rng rng(4);
    Vec x = random_vec(rng, N * C), w = random_vec(rng, OC * C), b = random_vec(rng, OC);
    Vec r = random_vec(rng, N * OC), scratch(C * OC);
    auto loss = [&] {
        Vec out(N * OC);
        matmul_forward(out.data(), x.data(), w.data(), b.data(), N, C, OC, scratch.data());
        return dot(out, r);
    };
    Vec dx(N * C, 0.0), dw(OC * C, 0.0), db(OC, 0.0);
    matmul_backward(dx.data(), dw.data(), db.data(), r.data(), x.data(), w.data(), N, C, OC);
    expect_grad("matmul dinp", x, dx, loss);
    expect_grad("matmul dweight", w, dw, loss);
    expect_grad("matmul dbias", b, db, loss);
}

TEST(TrainGrad, SwigluAndSigmoidScale) {
    const int64_t n = 17;
    Rng rng(5);
    Vec g = random_vec(rng, n, 2.0), u = random_vec(rng, n), r = random_vec(rng, n);
    auto loss = [&] {
        Vec out(n);
        swiglu_forward(out.data(), g.data(), u.data(), n);
        return dot(out, r);
    };
    Vec dg(n, 0.0), du(n, 0.0);
    swiglu_backward(dg.data(), du.data(), r.data(), g.data(), u.data(), n);
    expect_grad("swiglu dgate", g, dg, loss);
    expect_grad("swiglu dup", u, du, loss);

    auto loss2 = [&] {
        Vec out(n);
        sigmoid_scale_forward(out.data(), g.data(), n, 0.3);
        return dot(out, r);
    };
    Vec dx(n, 0.0);
    sigmoid_scale_backward(dx.data(), r.data(), g.data(), n, 0.3);
    expect_grad("sigmoid_scale dinp", g, dx, loss2);
}

TEST(TrainGrad, CrossEntropyAndEmbedding) {
    const int64_t N = 4, V = 9, C = 3;
    Rng rng(6);
    Vec z = random_vec(rng, N * V, 3.0);
    std::vector<int32_t> t = {0, 8, 3, 3};
    auto loss = [&] {
        Vec probs = z, losses(N);
        return crossentropy_forward(losses.data(), probs.data(), t.data(), N, V);
    };
    Vec probs = z, losses(N), dz(N * V);
    const double mean = crossentropy_forward(losses.data(), probs.data(), t.data(), N, V);
    // Independent value: −log softmax computed directly.
    double expect = 0;
    for (int64_t n = 0; n < N; ++n) {
        double s = 0;
        for (int64_t v = 0; v < V; ++v) s += std::exp(z[n * V + v]);
        expect += std::log(s) - z[n * V + t[n]];
    }
    EXPECT_NEAR(mean, expect / N, 1e-12);
    crossentropy_backward(dz.data(), probs.data(), t.data(), N, V, 1.0 / N);
    expect_grad("crossentropy dlogits", z, dz, loss);

    Vec wte = random_vec(rng, V * C), r = random_vec(rng, N * C);
    auto loss2 = [&] {
        Vec out(N * C);
        embedding_forward(out.data(), t.data(), wte.data(), N, C);
        return dot(out, r);
    };
    Vec dwte(V * C, 0.0);
    embedding_backward(dwte.data(), r.data(), t.data(), N, C);
    expect_grad("embedding dwte", wte, dwte, loss2);
}

// The STE check described at the top of the file.
TEST(TrainGrad, BitLinearStraightThroughEstimator) {
    const int64_t N = 4, C = 19, OC = 6;
    Rng rng(7);
    Vec x0 = random_vec(rng, N * C), w0 = random_vec(rng, OC * C), r = random_vec(rng, N * OC);
    Vec xq(N * C), wq(OC * C), scratch(C * OC);
    act_quant_forward(xq.data(), x0.data(), N, C, 8);
    weight_quant_forward(wq.data(), w0.data(), OC * C);
    Vec cx(N * C), cw(OC * C);
    for (size_t i = 0; i < cx.size(); ++i) cx[i] = xq[i] - x0[i];
    for (size_t i = 0; i < cw.size(); ++i) cw[i] = wq[i] - w0[i];
    Vec x = x0, w = w0;
    auto surrogate = [&] {
        Vec xs(N * C), ws(OC * C), out(N * OC);
        for (size_t i = 0; i < xs.size(); ++i) xs[i] = x[i] + cx[i];
        for (size_t i = 0; i < ws.size(); ++i) ws[i] = w[i] + cw[i];
        matmul_forward(out.data(), xs.data(), ws.data(), static_cast<double*>(nullptr), N, C, OC,
                       scratch.data());
        return dot(out, r);
    };
    // What the model does: the matmul's backward on the quantized operands, gradients passed to
    // x and W unchanged.
    Vec dx(N * C, 0.0), dw(OC * C, 0.0);
    matmul_backward(dx.data(), dw.data(), static_cast<double*>(nullptr), r.data(), xq.data(),
                    wq.data(), N, C, OC);
    expect_grad("bitlinear STE dx", x, dx, surrogate);
    expect_grad("bitlinear STE dW", w, dw, surrogate);
    // The surrogate at the base point is the quantized forward itself, and the quantization is
    // the inference kernels' (fp32, bit for bit).
    std::vector<float> xf(x0.begin(), x0.end()), wf(w0.begin(), w0.end());
    std::vector<float> xqf(N * C), wqf(OC * C);
    act_quant_forward(xqf.data(), xf.data(), N, C, 8);
    const float beta = weight_quant_forward(wqf.data(), wf.data(), OC * C);
    std::vector<int8_t> kq(OC * C), ka(N * kernels::packed_cols(C));
    std::vector<float> ks(N);
    EXPECT_EQ(beta, kernels::ternary_scale(wf.data(), OC * C));
    kernels::quantize_ternary(wf.data(), OC * C, beta, kq.data());
    for (int64_t i = 0; i < OC * C; ++i) ASSERT_EQ(wqf[i], kq[i] * beta) << i;
    kernels::quantize_activations(xf.data(), N, C, C, ka.data(), kernels::packed_cols(C),
                                  ks.data());
    for (int64_t n = 0; n < N; ++n)
        for (int64_t c = 0; c < C; ++c)
            ASSERT_EQ(xqf[n * C + c], ka[n * kernels::packed_cols(C) + c] * ks[n]);
}

// BPTT through the whole recurrence: chunked backward over several chunks (one partial).
TEST(TrainGrad, TttScanBothRules) {
    Rng rng(8);
    for (bool reconstruct : {true, false}) {
        TttScanShape s{2, 11, reconstruct ? 1 : 2, 3, reconstruct, 4};
        const size_t rows = s.B * s.T, width = s.H * s.Dh;
        Vec q = random_vec(rng, rows * width, 0.6), k = random_vec(rng, rows * width, 0.6);
        Vec v = random_vec(rng, rows * width), eta(rows * s.H), r = random_vec(rng, rows * width);
        for (auto& e : eta) e = 0.2 + 0.8 * rng.uniform_double();
        Vec ckpt(s.checkpoint_floats());
        // reconstruct: q = k = v (one buffer), constant η.
        const double eta_const = 0.7;
        auto run = [&](Vec& y) {
            if (reconstruct)
                ttt_scan_forward(y.data(), ckpt.data(), q.data(), q.data(), q.data(),
                                 static_cast<double*>(nullptr), eta_const, s);
            else
                ttt_scan_forward(y.data(), ckpt.data(), q.data(), k.data(), v.data(), eta.data(),
                                 0.0, s);
        };
        auto loss = [&] {
            Vec y(rows * width);
            run(y);
            return dot(y, r);
        };
        Vec y(rows * width), dq(rows * width, 0.0), dk(rows * width, 0.0), dv(rows * width, 0.0);
        Vec deta(rows * s.H, 0.0);
        run(y);
        if (reconstruct) {
            ttt_scan_backward(dq.data(), dq.data(), dq.data(), static_cast<double*>(nullptr),
                              r.data(), ckpt.data(), q.data(), q.data(), q.data(),
                              static_cast<double*>(nullptr), eta_const, s);
            expect_grad("scan reconstruct df", q, dq, loss);
            // The forward agrees with the inference kernel's scalar reference (fp32), which takes
            // the raw features and normalizes them itself.
            Vec fhat(rows * width), nrm(rows), z64(rows * width);
            l2norm_forward(fhat.data(), nrm.data(), q.data(), int64_t(rows), s.Dh);
            ttt_scan_forward(z64.data(), ckpt.data(), fhat.data(), fhat.data(), fhat.data(),
                             static_cast<double*>(nullptr), eta_const, s);
            std::vector<float> f(q.begin(), q.begin() + s.T * s.Dh), z(s.T * s.Dh);
            std::vector<float> state(s.Dh * s.Dh, 0.0f);
            kernels::ttt_scan_reconstruct_scalar(state.data(), s.Dh, 0.7f, f.data(), s.Dh, s.T,
                                                 z.data(), s.Dh);
            for (int64_t i = 0; i < s.T * s.Dh; ++i) ASSERT_NEAR(z[i], z64[i], 1e-5) << i;
        } else {
            ttt_scan_backward(dq.data(), dk.data(), dv.data(), deta.data(), r.data(), ckpt.data(),
                              q.data(), k.data(), v.data(), eta.data(), 0.0, s);
            expect_grad("scan delta dq", q, dq, loss);
            expect_grad("scan delta dk", k, dk, loss);
            expect_grad("scan delta dv", v, dv, loss);
            expect_grad("scan delta deta", eta, deta, loss);
        }
    }
}

// The whole model against finite differences of its loss, for both TTT rules.
void check_model(TttRule rule, bool quantize) {
    ModelConfig c;
    c.vocab_size = 11, c.hidden_dim = 8, c.num_layers = 2, c.ttt_dim = 4, c.mlp_dim = 12;
    c.ttt_rule = rule, c.ttt_heads = rule == TttRule::kDelta ? 2 : 1, c.inner_lr = 0.8f;
    c.act_bits = 0;
    TrainModel<double> m(c);
    m.quantize_weights = quantize;
    Rng rng(9);
    for (size_t i = 0; i < m.layout().specs.size(); ++i) {
        const ParamSpec& s = m.layout().specs[i];
        for (int64_t j = 0; j < s.numel(); ++j)
            m.param(i)[j] = (s.kind == ParamKind::kNorm ? 1.0 : 0.0) + 0.5 * rng.normal();
    }
    const int64_t B = 2, T = 5;
    std::vector<int32_t> in(B * T), tgt(B * T);
    for (auto& t : in) t = static_cast<int32_t>(rng.below(11));
    for (auto& t : tgt) t = static_cast<int32_t>(rng.below(11));
    m.forward(in.data(), tgt.data(), B, T);
    m.zero_grad();
    m.backward();
    int checked = 0;
    for (size_t i = 0; i < m.layout().specs.size(); ++i) {
        const ParamSpec& s = m.layout().specs[i];
        if (quantize && s.kind == ParamKind::kBitLinear) continue;
        Vec x(m.param(i), m.param(i) + s.numel()), g(m.grad(i), m.grad(i) + s.numel());
        auto loss = [&] {
            std::copy(x.begin(), x.end(), m.param(i));
            return m.forward(in.data(), tgt.data(), B, T);
        };
        expect_grad(s.name.c_str(), x, g, loss);
        std::copy(x.begin(), x.end(), m.param(i));
        ++checked;
    }
    EXPECT_GE(checked, 5);
}

TEST(TrainGrad, WholeModelReconstruct) {
    check_model(TttRule::kReconstruct, false);
}
TEST(TrainGrad, WholeModelDelta) {
    check_model(TttRule::kDelta, false);
}
TEST(TrainGrad, WholeModelQuantizedWeightsReconstruct) {
    check_model(TttRule::kReconstruct, true);
}
TEST(TrainGrad, WholeModelQuantizedWeightsDelta) {
    check_model(TttRule::kDelta, true);
}

}  // namespace
}  // namespace bitttt::train
