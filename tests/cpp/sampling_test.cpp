// Sampler: greedy, temperature, top-k, top-p and the repetition penalty, checked against the
// distributions they must produce (frequencies over many seeded draws).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/error.hpp"
#include "model/sampling.hpp"

namespace bitttt {
namespace {

SamplingOptions opts(float temperature, int64_t top_k, float top_p, float penalty = 1.0f) {
    SamplingOptions o;
    o.temperature = temperature;
    o.top_k = top_k;
    o.top_p = top_p;
    o.repeat_penalty = penalty;
    return o;
}

// Frequencies of each id over `draws` samples.
std::vector<double> frequencies(Sampler& s, const std::vector<float>& logits, int draws) {
    std::vector<double> f(logits.size(), 0.0);
    for (int i = 0; i < draws; ++i) f[static_cast<size_t>(s.sample(logits, {}))] += 1.0 / draws;
    return f;
}

// Logits whose softmax is p (up to a constant).
std::vector<float> log_probs(const std::vector<double>& p) {
    std::vector<float> l;
    for (double v : p) l.push_back(static_cast<float>(std::log(v)));
    return l;
}

TEST(Sampler, GreedyIsArgmaxWithLowestIdOnTies) {
    Sampler s(5);
    s.set_options(opts(0, 0, 1));
    EXPECT_EQ(s.sample(std::vector<float>{1, 3, 2, 3, -1}, {}), 1);
    EXPECT_EQ(s.sample(std::vector<float>{-5, -4, -4.5f, -9, -4.01f}, {}), 1);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    EXPECT_EQ(s.sample(std::vector<float>{nan, 0, 2, nan, 1}, {}), 2);  // NaN never wins
}

TEST(Sampler, TemperatureOneFollowsSoftmax) {
    const std::vector<double> p = {0.5, 0.3, 0.15, 0.05};
    Sampler s(4);
    s.set_options(opts(1.0f, 0, 1.0f));
    auto f = frequencies(s, log_probs(p), 40000);
    for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(f[i], p[i], 0.012) << i;
}

TEST(Sampler, TemperatureSharpensAndFlattens) {
    const std::vector<double> p = {0.6, 0.4};
    Sampler s(2);
    // T = 0.5 squares the odds: 0.36 : 0.16; T = 2 takes their square root.
    s.set_options(opts(0.5f, 0, 1.0f));
    EXPECT_NEAR(frequencies(s, log_probs(p), 40000)[0], 0.36 / 0.52, 0.012);
    s.set_options(opts(2.0f, 0, 1.0f));
    const double a = std::sqrt(0.6), b = std::sqrt(0.4);
    EXPECT_NEAR(frequencies(s, log_probs(p), 40000)[0], a / (a + b), 0.012);
}

TEST(Sampler, TopKKeepsTheKMostLikelyRenormalized) {
    const std::vector<double> p = {0.1, 0.5, 0.15, 0.25};
    Sampler s(4);
    s.set_options(opts(1.0f, 2, 1.0f));
    auto f = frequencies(s, log_probs(p), 40000);
    EXPECT_EQ(f[0], 0.0);
    EXPECT_EQ(f[2], 0.0);
    EXPECT_NEAR(f[1], 0.5 / 0.75, 0.012);
    EXPECT_NEAR(f[3], 0.25 / 0.75, 0.012);
    // top_k = 1 is greedy at any temperature.
    s.set_options(opts(5.0f, 1, 1.0f));
    for (int i = 0; i < 100; ++i) ASSERT_EQ(s.sample(log_probs(p), {}), 1);
}

TEST(Sampler, TopPKeepsTheSmallestNucleus) {
    // Sorted: 0.45 (id 2), 0.3 (id 0), 0.15 (id 3), 0.1 (id 1). top_p = 0.7: 0.45 < 0.7,
    // 0.75 >= 0.7, so ids {2, 0} remain.
    const std::vector<double> p = {0.3, 0.1, 0.45, 0.15};
    Sampler s(4);
    s.set_options(opts(1.0f, 0, 0.7f));
    auto f = frequencies(s, log_probs(p), 40000);
    EXPECT_EQ(f[1], 0.0);
    EXPECT_EQ(f[3], 0.0);
    EXPECT_NEAR(f[2], 0.45 / 0.75, 0.012);
    // A tiny top_p keeps only the most likely token.
    s.set_options(opts(1.0f, 0, 0.01f));
    for (int i = 0; i < 100; ++i) ASSERT_EQ(s.sample(log_probs(p), {}), 2);
}

TEST(Sampler, TopPOverALargeVocabularyBeyondTheFirstTry) {
    // 1000 equally likely tokens: the nucleus of 0.9 needs 900 of them, more than the partial
    // sort's first try; sampling must still reach ids across the whole range.
    const int64_t V = 1000;
    std::vector<float> logits(V, 0.0f);
    Sampler s(V);
    s.set_options(opts(1.0f, 0, 0.9f));
    std::vector<int> hits(V, 0);
    for (int i = 0; i < 20000; ++i) ++hits[static_cast<size_t>(s.sample(logits, {}))];
    int distinct = 0;
    for (int h : hits) distinct += h > 0;
    // Ties sort by id, so the nucleus is ids [0, 900).
    EXPECT_GT(distinct, 880);
    for (int64_t i = 900; i < V; ++i) ASSERT_EQ(hits[i], 0) << i;
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegative) {
    Sampler s(3);
    s.set_options(opts(0, 0, 1, 1.25f));
    // 2.0 / 1.25 = 1.6 < 1.9: the repeated id 0 loses.
    EXPECT_EQ(s.sample(std::vector<float>{2.0f, 1.9f, 0.0f}, std::vector<int32_t>{0}), 1);
    // Negative logits are multiplied: -1 * 1.25 = -1.25 < -1.2.
    EXPECT_EQ(s.sample(std::vector<float>{-1.0f, -1.2f, -3.0f}, std::vector<int32_t>{0, 0}), 1);
    // Only the last repeat_last_n tokens count, and each id once.
    SamplingOptions o = opts(0, 0, 1, 1.25f);
    o.repeat_last_n = 1;
    s.set_options(o);
    EXPECT_EQ(s.sample(std::vector<float>{2.0f, 1.9f, 0.0f}, std::vector<int32_t>{0, 2}), 0);
    // Out-of-range ids in the history are ignored, not a crash.
    EXPECT_EQ(s.sample(std::vector<float>{2.0f, 1.9f, 0.0f}, std::vector<int32_t>{-4, 99}), 0);
}

TEST(Sampler, SeedReproducesAndBadOptionsAreErrors) {
    std::vector<float> logits(50);
    for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(static_cast<float>(i));
    Sampler a(50), b(50);
    a.set_options(opts(1.0f, 0, 1.0f));
    b.set_options(opts(1.0f, 0, 1.0f));
    for (int i = 0; i < 100; ++i) ASSERT_EQ(a.sample(logits, {}), b.sample(logits, {}));
    EXPECT_THROW(a.set_options(opts(-1.0f, 0, 1.0f)), Error);
    EXPECT_THROW(a.set_options(opts(std::nanf(""), 0, 1.0f)), Error);
    EXPECT_THROW(a.set_options(opts(1.0f, -1, 1.0f)), Error);
    EXPECT_THROW(a.set_options(opts(1.0f, 0, 0.0f)), Error);
    EXPECT_THROW(a.set_options(opts(1.0f, 0, 1.5f)), Error);
    EXPECT_THROW(a.set_options(opts(1.0f, 0, 1.0f, 0.0f)), Error);
    EXPECT_THROW(a.sample(std::vector<float>(49), {}), Error);
    EXPECT_THROW(Sampler(0), Error);
}

}  // namespace
}  // namespace bitttt
