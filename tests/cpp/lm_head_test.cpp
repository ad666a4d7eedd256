// The CPU's lm_head options (DeviceOptions::lm_head): names and errors; with each of bf16, f32 and
// int8 a batched prompt gives the logits of token-by-token decode and of the per-kernel path bit
// for bit; the f32 lm_head gives the fp32 product of RMSNorm(x); the int8 lm_head on the shipped
// default model stays within a stated distance of the f32 logits and mostly picks the same
// greedy tokens.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "bitttt/model.hpp"
#include "bitttt/tokenizer.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "model/config.hpp"
#include "model/session_impl.hpp"
#include "model/weights.hpp"

namespace bitttt {
namespace {

const LmHead kHeads[] = {LmHead::kBf16, LmHead::kF32, LmHead::kInt8};

DeviceOptions cpu_with(LmHead head) {
    DeviceOptions o;
    o.lm_head = head;
    return o;
}

TEST(LmHead, NamesAndBadNames) {
    EXPECT_EQ(parse_lm_head("bf16"), LmHead::kBf16);
    EXPECT_EQ(parse_lm_head("f32"), LmHead::kF32);
    EXPECT_EQ(parse_lm_head("fp32"), LmHead::kF32);
    EXPECT_EQ(parse_lm_head("int8"), LmHead::kInt8);
    for (LmHead h : kHeads) EXPECT_EQ(parse_lm_head(lm_head_name(h)), h);
    for (const char* bad : {"", "int4", "INT8", "bf16 "}) {
        try {
            parse_lm_head(bad);
            FAIL() << "no error for '" << bad << "'";
        } catch (const Error& e) {
            EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
            EXPECT_NE(std::string(e.what()).find("'" + std::string(bad) + "'"), std::string::npos)
                << e.what();
        }
    }
    ModelConfig c;
    c.vocab_size = 50;
    c.hidden_dim = 32;
    c.num_layers = 1;
    c.mlp_dim = 64;
    c.resolve_and_validate();
    DeviceOptions o;
    o.lm_head = static_cast<LmHead>(7);
    EXPECT_THROW(Model::from_weights(ModelWeights::random(c, 1), nullptr, o), Error);
}

// A small random model with odd sizes (V = 1001, D = 80: neither a multiple of 16 nor of 64).
ModelConfig odd_config() {
    ModelConfig c;
    c.vocab_size = 1001;
    c.hidden_dim = 80;
    c.num_layers = 2;
    c.ttt_dim = 40;
    c.mlp_dim = 112;
    c.ttt_rule = parse_ttt_rule("delta");
    c.ttt_heads = 2;
    c.inner_lr = 0.5f;
    c.resolve_and_validate();
    return c;
}

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
    Rng rng(seed);
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (auto& id : ids) id = static_cast<int32_t>(rng.below(static_cast<uint64_t>(vocab)));
    return ids;
}

// Batched prompt = token by token, and the thread team = one region per kernel, bit for bit.
TEST(LmHead, EveryHeadBatchedEqualsDecodeAndTeamEqualsPerKernel) {
    const ModelConfig c = odd_config();
    const int64_t V = c.vocab_size;
    const auto ids = random_ids(11, V, 3);
    const int64_t saved_serial = set_serial_layer_bytes(0);  // split even these small layers
    for (LmHead head : kHeads) {
        auto model = Model::from_weights(ModelWeights::random(c, 4), nullptr, cpu_with(head));
        std::vector<std::vector<float>> runs;
        for (bool team : {true, false}) {
            set_cpu_team(team);
            Session batched(model, 4);
            std::vector<float> all(ids.size() * V);
            batched.forward(ids, all);
            Session single(model, 4);
            for (size_t t = 0; t < ids.size(); ++t) {
                auto logits = single.forward_token(ids[t]);
                for (int64_t n = 0; n < V; ++n)
                    ASSERT_EQ(logits[n], all[t * V + n])
                        << lm_head_name(head) << " team " << team << " token " << t;
            }
            runs.push_back(all);
        }
        set_cpu_team(true);
        EXPECT_EQ(runs[0], runs[1]) << lm_head_name(head);
    }
    set_serial_layer_bytes(saved_serial);
}

// Logits of one model under each head: bf16 and int8 near f32; int8 is not bf16 (the option
// takes effect) and the quantized copy exists only when asked for.
TEST(LmHead, HeadsAgreeWithinTheirRounding) {
    const ModelConfig c = odd_config();
    const auto ids = random_ids(9, c.vocab_size, 8);
    std::vector<std::vector<float>> logits;
    for (LmHead head : kHeads) {
        auto model = Model::from_weights(ModelWeights::random(c, 5), nullptr, cpu_with(head));
        EXPECT_EQ(model->weights().lm_head_int8.rows, head == LmHead::kInt8 ? c.vocab_size : 0);
        EXPECT_EQ(model->device_options().lm_head, head);
        Session s(model);
        auto l = s.forward(ids);
        logits.emplace_back(l.begin(), l.end());
    }
    const auto& bf16 = logits[0];
    const auto& f32 = logits[1];
    const auto& int8 = logits[2];
    double max_f32 = 0, d_bf16 = 0, d_int8 = 0;
    for (size_t n = 0; n < f32.size(); ++n) {
        max_f32 = std::max(max_f32, std::fabs(static_cast<double>(f32[n])));
        d_bf16 = std::max(d_bf16, std::fabs(static_cast<double>(bf16[n]) - f32[n]));
        d_int8 = std::max(d_int8, std::fabs(static_cast<double>(int8[n]) - f32[n]));
    }
    EXPECT_GT(max_f32, 0.5);
    EXPECT_LE(d_bf16, 1e-2 * max_f32);
    EXPECT_LE(d_int8, 3e-2 * max_f32);
    EXPECT_GT(d_int8, 0.0);
}

// The shipped default model on a teacher-forced text: the int8 lm_head's logits within 2% of the
// largest |logit| of the f32 lm_head's (measured: 0.28 of 19.6, 1.4%; the per-token int8
// activation's step is most of it), a mean KL(p_f32 || p_int8) below 1e-3 nats, the same argmax
// at >= 97% of positions (measured: all), and greedy generation starting the same.
TEST(LmHead, DefaultModelInt8StaysNearF32) {
    const std::string path = std::string(BITTTT_SOURCE_DIR) + "/models/default.bitt";
    if (!std::filesystem::exists(path)) GTEST_SKIP() << "no " << path;
    auto f32 = Model::load(path, cpu_with(LmHead::kF32));
    auto int8 = Model::load(path, cpu_with(LmHead::kInt8));
    const Tokenizer* tok = f32->tokenizer();
    ASSERT_NE(tok, nullptr);
    const std::string text =
        "Once upon a time, there was a little girl named Lily. She loved to play in the park with "
        "her red ball. One day, she saw a big dog near the tree. The dog was sad because it was "
        "lost. Lily said, \"Do not be sad, dog. I will help you find your home.\" They walked and "
        "walked until they found a small house with a blue door. A kind old man opened the door "
        "and smiled. \"Thank you, Lily!\" he said. The dog was happy, and Lily was happy too. "
        "From that day on, Lily and the dog played together every day.";
    std::vector<int32_t> ids;
    for (uint32_t id : tok->encode(text)) ids.push_back(static_cast<int32_t>(id));
    const int64_t V = f32->config().vocab_size, n = static_cast<int64_t>(ids.size());
    ASSERT_GT(n, 100);
    std::vector<float> a(static_cast<size_t>(n * V)), b(a.size());
    Session sa(f32, 64), sb(int8, 64);
    sa.forward(ids, a);
    sb.forward(ids, b);
    double worst = 0, range = 0, kl = 0;
    int64_t same = 0;
    for (int64_t t = 0; t < n; ++t) {
        const float* la = a.data() + t * V;
        const float* lb = b.data() + t * V;
        double za = 0, zb = 0;
        const double ma = *std::max_element(la, la + V), mb = *std::max_element(lb, lb + V);
        for (int64_t v = 0; v < V; ++v) {
            worst = std::max(worst, std::fabs(static_cast<double>(la[v]) - lb[v]));
            range = std::max(range, std::fabs(static_cast<double>(la[v])));
            za += std::exp(la[v] - ma);
            zb += std::exp(lb[v] - mb);
        }
        for (int64_t v = 0; v < V; ++v) {  // Σ p_a (log p_a − log p_b)
            const double lpa = la[v] - ma - std::log(za), lpb = lb[v] - mb - std::log(zb);
            kl += std::exp(lpa) * (lpa - lpb);
        }
        same += std::max_element(la, la + V) - la == std::max_element(lb, lb + V) - lb;
    }
    kl /= static_cast<double>(n);
    std::printf(
        "default model, %lld tokens: max |logit int8 - f32| %.4g (max |logit| %.3g); "
        "mean KL %.3g nats; argmax equal at %lld of %lld positions\n",
        static_cast<long long>(n), worst, range, kl, static_cast<long long>(same),
        static_cast<long long>(n));
    EXPECT_LE(worst, 0.02 * range);
    EXPECT_LE(kl, 1e-3);
    EXPECT_GE(static_cast<double>(same), 0.97 * static_cast<double>(n));

    // Greedy continuation of the first sentence, 64 tokens.
    GenerateOptions g;
    g.max_new_tokens = 64;
    g.stop_at_end_of_text = false;
    g.sampling.temperature = 0;
    const std::vector<int32_t> prompt(ids.begin(), ids.begin() + 12);
    Session ga(f32), gb(int8);
    const auto ra = ga.generate(prompt, g).tokens;
    const auto rb = gb.generate(prompt, g).tokens;
    size_t common = 0;
    while (common < ra.size() && common < rb.size() && ra[common] == rb[common]) ++common;
    std::printf("greedy: the first %zu of %zu tokens equal\n", common, ra.size());
    EXPECT_GE(common, 16u);
}

}  // namespace
}  // namespace bitttt
