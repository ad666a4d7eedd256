// The forward BitLinear products of training on integer codes (train/bitlinear.hpp): the int8
// path (the inference kernel) equals the fp32 path (the training GEMM on the codes) bit for bit
// on odd shapes, both equal the fake-quantized product to float tolerance, the codes' fake
// quantization equals act_quant_forward bit for bit, and a whole training forward + backward
// gives the same loss and gradients on both paths (both rules, 1 and 2 threads).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/aligned_buffer.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "core/threads.hpp"
#include "train/bitlinear.hpp"
#include "train/model.hpp"
#include "train/ops.hpp"

namespace bitttt::train {
namespace {

std::vector<float> random_vector(int64_t n, uint64_t seed, float scale) {
    Rng rng(seed);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = scale * static_cast<float>(rng.normal());
    return v;
}

bool same_bits(const float* a, const float* b, int64_t n) {
    return std::memcmp(a, b, sizeof(float) * static_cast<size_t>(n)) == 0;
}

struct Shape {
    int64_t n, k, oc;
};

TEST(TrainBitLinear, Int8PathEqualsFp32PathBitForBit) {
    // Odd shapes (padding in both the row groups and the column blocks), one token, more tokens
    // than a tile, and a depth past the GEMM's k block.
    for (const Shape s : {Shape{1, 1, 1}, Shape{13, 37, 29}, Shape{29, 100, 17}, Shape{7, 300, 48},
                          Shape{33, 64, 130}}) {
        const auto x = random_vector(s.n * s.k, 1 + s.k, 1.5f);
        const auto w = random_vector(s.oc * s.k, 2 + s.oc, 0.02f);
        std::vector<float> xq(x.size());
        ActCodes codes;
        act_quant_codes(xq.data(), codes, x.data(), s.n, s.k);
        // The codes' fake quantization is act_quant_forward's, bit for bit.
        std::vector<float> xq_ref(x.size());
        act_quant_forward(xq_ref.data(), x.data(), s.n, s.k, 8);
        EXPECT_TRUE(same_bits(xq.data(), xq_ref.data(), s.n * s.k)) << s.n << "x" << s.k;

        std::vector<float> wq(w.size());
        const float beta = weight_quant_forward(wq.data(), w.data(), s.oc * s.k);
        AlignedBuffer<uint8_t> packed(static_cast<size_t>(kernels::packed_bytes(s.oc, s.k)));
        pack_weight_codes(packed.data(), w.data(), s.oc, s.k, beta);
        const kernels::TernaryWeights tw{packed.data(), s.oc, s.k, beta};

        std::vector<float> y8(static_cast<size_t>(s.n * s.oc)), y32(y8.size()), yf(y8.size());
        bitlinear_forward(y8.data(), codes, tw, BitLinearPath::kInt8);
        bitlinear_forward(y32.data(), codes, tw, BitLinearPath::kFp32);
        EXPECT_TRUE(same_bits(y8.data(), y32.data(), s.n * s.oc))
            << s.n << "x" << s.k << "x" << s.oc;
        // And both are the fake-quantized product (x_q · W_qᵀ in double) to float rounding.
        for (int64_t n = 0; n < s.n; ++n)
            for (int64_t o = 0; o < s.oc; ++o) {
                double ref = 0, mag = 0;
                for (int64_t k = 0; k < s.k; ++k) {
                    ref += static_cast<double>(xq_ref[n * s.k + k]) * wq[o * s.k + k];
                    mag += std::fabs(static_cast<double>(xq_ref[n * s.k + k]) * wq[o * s.k + k]);
                }
                ASSERT_NEAR(y8[n * s.oc + o], ref, 1e-6 * mag + 1e-30) << n << "," << o;
            }
    }
}

TEST(TrainBitLinear, RejectsMismatchedShapes) {
    ActCodes codes;
    std::vector<float> x(6, 1.0f), xq(6);
    act_quant_codes(xq.data(), codes, x.data(), 2, 3);
    AlignedBuffer<uint8_t> packed(static_cast<size_t>(kernels::packed_bytes(4, 5)));
    const kernels::TernaryWeights tw{packed.data(), 4, 5, 1.0f};
    std::vector<float> y(8);
    EXPECT_THROW(bitlinear_forward(y.data(), codes, tw, BitLinearPath::kInt8), Error);
    EXPECT_THROW(bitlinear_forward(y.data(), codes, tw, BitLinearPath::kFp32), Error);
}

// A NaN input gives a NaN fake-quantized value (as act_quant_forward) and a NaN product row on
// both paths, as the fake-quantized product would: a non-finite loss stays detectable.
TEST(TrainBitLinear, NonFiniteInputRowsGiveNaNRows) {
    const int64_t n = 4, k = 20, oc = 5;
    auto x = random_vector(n * k, 4, 1.0f);
    x[1 * k + 7] = NAN;                                                   // row 1: one NaN
    x[2 * k + 3] = INFINITY;                                              // row 2: γ infinite
    for (int64_t c = 0; c < k; ++c) x[3 * k + c] = c % 2 ? 0.0f : -0.0f;  // row 3: zeros
    const auto w = random_vector(oc * k, 5, 0.02f);
    std::vector<float> xq(x.size()), xq_ref(x.size()), wq(w.size());
    ActCodes codes;
    act_quant_codes(xq.data(), codes, x.data(), n, k);
    act_quant_forward(xq_ref.data(), x.data(), n, k, 8);
    for (int64_t i = 0; i < n * k; ++i)  // NaN where act_quant_forward has NaN, else its bits
        EXPECT_TRUE(std::isnan(xq_ref[i]) ? std::isnan(xq[i]) : same_bits(&xq[i], &xq_ref[i], 1))
            << i;
    EXPECT_TRUE(std::isnan(xq[1 * k + 7]));
    const float beta = weight_quant_forward(wq.data(), w.data(), oc * k);
    AlignedBuffer<uint8_t> packed(static_cast<size_t>(kernels::packed_bytes(oc, k)));
    pack_weight_codes(packed.data(), w.data(), oc, k, beta);
    const kernels::TernaryWeights tw{packed.data(), oc, k, beta};
    for (BitLinearPath path : {BitLinearPath::kInt8, BitLinearPath::kFp32}) {
        std::vector<float> y(static_cast<size_t>(n * oc));
        bitlinear_forward(y.data(), codes, tw, path);
        for (int64_t i = 0; i < n; ++i)
            for (int64_t o = 0; o < oc; ++o)
                EXPECT_EQ(std::isnan(y[i * oc + o]), i == 1 || i == 2) << i << "," << o;
    }
}

// A whole training forward + backward on both paths: the same loss and gradients, bit for bit.
void expect_paths_equal(TttRule rule, int threads) {
    ModelConfig c;
    c.vocab_size = 97, c.hidden_dim = 40, c.num_layers = 2, c.ttt_rule = rule;
    c.ttt_dim = 24, c.mlp_dim = 72, c.ttt_heads = rule == TttRule::kDelta ? 2 : 1;
    c.resolve_and_validate();
    const int64_t B = 3, T = 11;
    Rng rng(7);
    std::vector<int32_t> in(B * T), tgt(B * T);
    for (auto& t : in) t = static_cast<int32_t>(rng.below(c.vocab_size));
    for (auto& t : tgt) t = static_cast<int32_t>(rng.below(c.vocab_size));
    set_num_threads(threads);
    double loss[2];
    std::vector<float> grads[2];
    for (int p = 0; p < 2; ++p) {
        TrainModel<float> m(c);
        m.init_random(3);
        m.bitlinear_path = p == 0 ? BitLinearPath::kInt8 : BitLinearPath::kFp32;
        EXPECT_TRUE(m.integer_products());
        loss[p] = m.forward(in.data(), tgt.data(), B, T);
        m.zero_grad();
        m.backward();
        grads[p].assign(m.grads.data(), m.grads.data() + m.grads.size());
    }
    set_num_threads(0);
    EXPECT_EQ(loss[0], loss[1]);
    EXPECT_TRUE(std::isfinite(loss[0]));
    ASSERT_EQ(grads[0].size(), grads[1].size());
    EXPECT_TRUE(same_bits(grads[0].data(), grads[1].data(), static_cast<int64_t>(grads[0].size())));
}

TEST(TrainBitLinear, TrainerLossAndGradientsSameOnBothPaths) {
    for (TttRule rule : {TttRule::kReconstruct, TttRule::kDelta})
        for (int threads : {1, 2}) expect_paths_equal(rule, threads);
}

}  // namespace
}  // namespace bitttt::train
