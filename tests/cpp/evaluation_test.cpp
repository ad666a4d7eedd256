// The loss measurements of `bitttt eval` (model/evaluation.hpp) against the same quantities
// computed independently here (token by token with forward_token and a log-softmax written in
// the test), on small random models; the property that defines the memory effect (a model
// without TTT memory has ratio 1); and every rejected argument.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "model/config.hpp"
#include "model/evaluation.hpp"
#include "model/weights.hpp"

namespace bitttt {
namespace {

ModelConfig small_config(const std::string& rule, float inner_lr) {
    ModelConfig c;
    c.vocab_size = 53;
    c.hidden_dim = 32;
    c.num_layers = 2;
    c.ttt_dim = 16;
    c.mlp_dim = 48;
    c.ttt_rule = parse_ttt_rule(rule);
    c.ttt_heads = rule == "delta" ? 2 : 1;
    c.inner_lr = inner_lr;
    c.resolve_and_validate();
    return c;
}

std::shared_ptr<const Model> random_model(const ModelConfig& c) {
    return Model::from_weights(ModelWeights::random(c, 9));
}

// −log p(target) from logits, in long double, max-shifted.
double reference_loss(std::span<const float> logits, int32_t target) {
    const long double max = *std::max_element(logits.begin(), logits.end());
    long double sum = 0;
    for (float l : logits) sum += std::exp(static_cast<long double>(l) - max);
    return static_cast<double>(std::log(sum) - (static_cast<long double>(logits[target]) - max));
}

// Loss at each position 0 .. ids.size()−2 of a fresh session, one token at a time.
std::vector<double> losses_token_by_token(const std::shared_ptr<const Model>& model,
                                          const std::vector<int32_t>& ids) {
    Session s(model, 1);
    std::vector<double> out;
    for (size_t p = 0; p + 1 < ids.size(); ++p)
        out.push_back(reference_loss(s.forward_token(ids[p]), ids[p + 1]));
    return out;
}

TEST(MemoryEffect, MatchesTokenByTokenLosses) {
    for (const char* rule : {"reconstruct", "delta"}) {
        auto model = random_model(small_config(rule, 1.0f));
        MemoryEffectOptions o;
        o.length = 11;
        o.sequences = 3;
        o.seed = 77;
        o.chunk = 4;  // chunks that straddle the two copies
        const MemoryEffect m = measure_memory_effect(model, o);
        // The documented sequences: uniform ids 1 .. V−1 from Rng(seed), each read twice.
        Rng rng(o.seed);
        double c1 = 0, c2 = 0;
        for (int64_t s = 0; s < o.sequences; ++s) {
            std::vector<int32_t> ids(static_cast<size_t>(2 * o.length));
            for (int64_t i = 0; i < o.length; ++i)
                ids[i] = ids[o.length + i] = static_cast<int32_t>(1 + rng.below(52));
            const std::vector<double> loss = losses_token_by_token(model, ids);
            for (int64_t j = 0; j + 1 < o.length; ++j) {
                c1 += loss[j];             // predicts copy 1's token j + 1
                c2 += loss[o.length + j];  // predicts copy 2's token j + 1
            }
        }
        const double n = static_cast<double>(o.sequences * (o.length - 1));
        EXPECT_EQ(m.copy1.tokens, o.sequences * (o.length - 1));
        EXPECT_EQ(m.copy2.tokens, m.copy1.tokens);
        EXPECT_NEAR(m.copy1.mean(), c1 / n, 1e-9) << rule;
        EXPECT_NEAR(m.copy2.mean(), c2 / n, 1e-9) << rule;
        EXPECT_NEAR(m.ratio(), (c2 / n) / (c1 / n), 1e-9) << rule;
        // With this large step the random model's memory is visible: the copies differ.
        EXPECT_GT(std::fabs(m.ratio() - 1.0), 1e-3) << rule;
    }
}

TEST(MemoryEffect, NoMemoryMeansRatioOne) {
    // inner_lr 0: W stays 0, each prediction depends on its own token only, so the second copy
    // is predicted exactly as the first.
    for (const char* rule : {"reconstruct", "delta"}) {
        auto model = random_model(small_config(rule, 0.0f));
        MemoryEffectOptions o;
        o.length = 20;
        o.sequences = 4;
        o.chunk = 7;
        const MemoryEffect m = measure_memory_effect(model, o);
        EXPECT_GT(m.copy1.mean(), 1.0) << rule;
        EXPECT_NEAR(m.ratio(), 1.0, 1e-12) << rule;
    }
}

TEST(MemoryEffect, ProgressAndSeed) {
    auto model = random_model(small_config("reconstruct", 1.0f));
    MemoryEffectOptions o;
    o.length = 5;
    o.sequences = 3;
    std::vector<int64_t> seen;
    const MemoryEffect a = measure_memory_effect(model, o, [&](int64_t done, int64_t total) {
        EXPECT_EQ(total, 3);
        seen.push_back(done);
    });
    EXPECT_EQ(seen, (std::vector<int64_t>{1, 2, 3}));
    EXPECT_EQ(measure_memory_effect(model, o).copy2.nats, a.copy2.nats);  // reproducible
    o.seed = 2;
    EXPECT_NE(measure_memory_effect(model, o).copy2.nats, a.copy2.nats);
}

TEST(PositionLoss, MatchesTokenByTokenLosses) {
    auto model = random_model(small_config("delta", 1.0f));
    Rng rng(4);
    std::vector<int32_t> ids(100);
    for (auto& id : ids) id = static_cast<int32_t>(rng.below(53));
    PositionLossOptions o;
    o.near = {0, 5};
    o.far = {12, 20};
    o.chunk = 3;
    const PositionLoss p = measure_position_loss(model, ids, o);
    EXPECT_EQ(p.window_tokens, 21);
    EXPECT_EQ(p.windows, 4);  // 100 / 21
    double near = 0, far = 0;
    for (int64_t w = 0; w < 4; ++w) {
        const std::vector<int32_t> window(ids.begin() + w * 21, ids.begin() + (w + 1) * 21);
        const std::vector<double> loss = losses_token_by_token(model, window);
        for (int64_t q = 0; q < 5; ++q) near += loss[q];
        for (int64_t q = 12; q < 20; ++q) far += loss[q];
    }
    EXPECT_EQ(p.near.tokens, 20);
    EXPECT_EQ(p.far.tokens, 32);
    EXPECT_NEAR(p.near.mean(), near / 20, 1e-9);
    EXPECT_NEAR(p.far.mean(), far / 32, 1e-9);
    EXPECT_EQ(p.near.bytes, 0);  // no tokenizer
    EXPECT_EQ(p.near.bits_per_byte(), 0.0);

    o.windows = 2;
    const PositionLoss two = measure_position_loss(model, ids, o);
    EXPECT_EQ(two.windows, 2);
    EXPECT_EQ(two.far.tokens, 16);
}

TEST(Evaluation, BadArgumentsAreErrors) {
    auto model = random_model(small_config("reconstruct", 0.5f));
    MemoryEffectOptions m;
    m.length = 1;
    EXPECT_THROW(measure_memory_effect(model, m), Error);
    m.length = 4;
    m.sequences = 0;
    EXPECT_THROW(measure_memory_effect(model, m), Error);
    m.sequences = 1;
    m.chunk = 0;
    EXPECT_THROW(measure_memory_effect(model, m), Error);
    EXPECT_THROW(measure_memory_effect(nullptr, MemoryEffectOptions{}), Error);

    std::vector<int32_t> ids(50, 3);
    auto expect_error = [&](PositionRange near, PositionRange far, int64_t windows) {
        PositionLossOptions o;
        o.near = near;
        o.far = far;
        o.windows = windows;
        EXPECT_THROW(measure_position_loss(model, ids, o), Error)
            << near.begin << ":" << near.end << " " << far.begin << ":" << far.end << " "
            << windows;
    };
    expect_error({5, 5}, {10, 20}, 0);               // empty
    expect_error({6, 2}, {10, 20}, 0);               // reversed
    expect_error({-1, 2}, {10, 20}, 0);              // negative
    expect_error({0, 2}, {10, 50}, 0);               // a window needs 51 tokens, there are 50
    expect_error({0, 2}, {10, 20}, 3);               // 50 tokens fill 2 windows of 21
    expect_error({0, 2}, {10, 20}, -1);              // negative count
    expect_error({0, 2}, {0, int64_t{1} << 62}, 0);  // absurd end
    PositionLossOptions ok;
    ok.near = {0, 2};
    ok.far = {10, 20};
    ok.windows = 2;
    EXPECT_NO_THROW(measure_position_loss(model, ids, ok));
    std::vector<int32_t> bad = ids;
    bad[3] = 53;  // outside the vocabulary
    EXPECT_THROW(measure_position_loss(model, bad, ok), Error);
}

}  // namespace
}  // namespace bitttt
