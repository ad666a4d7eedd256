// ModelWeights: building from master weights quantizes BitLinear tensors as DESIGN.md §2.1 says.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "model/weights.hpp"

namespace bitttt {
namespace {

TEST(ModelWeights, FromMasterPacksTernaryAndCopiesFloat) {
    ModelConfig c =
        ModelConfig::from_json_text(R"({"vocab_size": 40, "hidden_dim": 24, "num_layers": 2})");
    Rng rng(3);
    std::vector<std::vector<float>> master;
    for (const auto& spec : parameter_table(c)) {
        std::vector<float> t(static_cast<size_t>(spec.numel()));
        for (auto& v : t) v = rng.normal();
        master.push_back(std::move(t));
    }
    size_t next = 0;
    ModelWeights w =
        ModelWeights::from_master(c, [&](const ParamSpec&) { return master[next++].data(); });
    ASSERT_EQ(w.layers.size(), 2u);
    for (size_t i = 0; i < w.table.size(); ++i) {
        const ParamSpec& spec = w.table[i];
        const std::vector<float>& m = master[i];
        if (spec.kind != ParamKind::kBitLinear) {
            for (size_t j = 0; j < m.size(); ++j) ASSERT_EQ(w.tensors[i].f32[j], m[j]);
            continue;
        }
        // Independent check of absmean quantization against the packed codes.
        double mean_abs = 0;
        for (float v : m) mean_abs += std::fabs(v);
        mean_abs /= static_cast<double>(m.size());
        const auto& t = w.tensors[i].ternary;
        EXPECT_NEAR(t.scale, mean_abs, 1e-5 * mean_abs);
        std::vector<int8_t> q(m.size());
        kernels::unpack_ternary(t.codes, t.rows, t.cols, q.data());
        for (size_t j = 0; j < m.size(); ++j) {
            double r = std::nearbyint(m[j] / (t.scale + 1e-8));
            ASSERT_EQ(q[j], static_cast<int8_t>(std::max(-1.0, std::min(1.0, r)))) << spec.name;
        }
    }
    EXPECT_EQ(w.embed, w.tensor("embed.weight").f32);
    EXPECT_EQ(w.layers[1].gate_proj.codes, w.tensor("layers.1.mlp.gate_proj.weight").ternary.codes);
    EXPECT_EQ(w.layers[0].ttt_up.rows, 24);
    EXPECT_THROW(w.tensor("layers.9.norm1.weight"), Error);
}

TEST(ModelWeights, RandomIsDeterministic) {
    ModelConfig c = ModelConfig::from_json_text(
        R"({"vocab_size": 30, "hidden_dim": 16, "num_layers": 1, "ttt_rule": "delta", "ttt_heads": 2})");
    ModelWeights a = ModelWeights::random(c, 5), b = ModelWeights::random(c, 5);
    for (int64_t j = 0; j < 30 * 16; ++j) ASSERT_EQ(a.embed[j], b.embed[j]);
    EXPECT_NE(a.layers[0].ttt_q.codes, nullptr);
    EXPECT_NE(a.layers[0].ttt_lr_bias, nullptr);
    EXPECT_EQ(a.layers[0].norm1[3], 1.0f);
}

}  // namespace
}  // namespace bitttt
