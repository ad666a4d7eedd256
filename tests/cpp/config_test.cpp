// config.json parsing (DESIGN.md §2) and the parameter table (§3 tensor names).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "core/error.hpp"
#include "model/config.hpp"

namespace bitttt {
namespace {

std::string error_of(std::string_view text) {
    try {
        ModelConfig::from_json_text(text, "cfg.json");
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST(Config, EmptyObjectGivesDesignDefaults) {
    ModelConfig c = ModelConfig::from_json_text("{}");
    EXPECT_EQ(c.vocab_size, 16384);
    EXPECT_EQ(c.hidden_dim, 256);
    EXPECT_EQ(c.num_layers, 8);
    EXPECT_FLOAT_EQ(c.inner_lr, 0.1f);
    EXPECT_EQ(c.ttt_dim, 64);
    EXPECT_EQ(c.ttt_rule, TttRule::kReconstruct);
    EXPECT_EQ(c.ttt_heads, 1);
    EXPECT_EQ(c.mlp_dim, 1024);
    EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
    EXPECT_EQ(c.act_bits, 8);
}

TEST(Config, DefaultsFollowHiddenDimAndRoundTrip) {
    ModelConfig c = ModelConfig::from_json_text(
        R"({"hidden_dim": 128, "ttt_rule": "delta", "ttt_heads": 4, "act_bits": 0})");
    EXPECT_EQ(c.ttt_dim, 32);
    EXPECT_EQ(c.mlp_dim, 512);
    EXPECT_EQ(c.head_dim(), 8);
    EXPECT_EQ(ModelConfig::from_json(c.to_json()), c);
}

TEST(Config, BadInputIsAnErrorNamingFileAndKey) {
    EXPECT_NE(error_of(R"({"hidden_dims": 3})").find("unknown key 'hidden_dims'"),
              std::string::npos);
    EXPECT_NE(error_of(R"({"hidden_dim": "256"})").find("'hidden_dim' must be an integer"),
              std::string::npos);
    EXPECT_NE(error_of(R"({"hidden_dim": 256.5})").find("hidden_dim"), std::string::npos);
    EXPECT_NE(error_of(R"({"hidden_dim": true})").find("hidden_dim"), std::string::npos);
    EXPECT_NE(error_of(R"({"hidden_dim": 0})").find("out of range"), std::string::npos);
    EXPECT_NE(error_of(R"({"hidden_dim": -5})").find("out of range"), std::string::npos);
    EXPECT_NE(error_of(R"({"vocab_size": 99999999999})").find("vocab_size"), std::string::npos);
    EXPECT_NE(error_of(R"({"ttt_rule": "attention"})").find("unknown TTT rule"), std::string::npos);
    EXPECT_NE(error_of(R"({"ttt_rule": "delta", "ttt_dim": 64, "ttt_heads": 3})").find("divisible"),
              std::string::npos);
    EXPECT_NE(error_of(R"({"ttt_heads": 2})").find("one head"), std::string::npos);
    EXPECT_NE(error_of(R"({"act_bits": 4})").find("act_bits"), std::string::npos);
    EXPECT_NE(error_of(R"({"inner_lr": -1})").find("inner_lr"), std::string::npos);
    EXPECT_NE(error_of(R"({"inner_lr": 2.5})").find("'inner_lr' must be in [0, 2]"),
              std::string::npos);
    EXPECT_NE(error_of(R"({"norm_eps": 0})").find("norm_eps"), std::string::npos);
    EXPECT_NE(error_of(R"([1, 2])").find("JSON object"), std::string::npos);
    EXPECT_NE(error_of(R"({"hidden_dim": )").find("not valid JSON"), std::string::npos);
    EXPECT_EQ(error_of(R"({"hidden_dim": 0})").rfind("cfg.json", 0), 0u);
}

TEST(Config, LoadReportsMissingFile) {
    EXPECT_THROW(ModelConfig::load("/nonexistent/config.json"), Error);
}

TEST(ParameterTable, NamesShapesAndCountsMatchTheDesign) {
    ModelConfig c =
        ModelConfig::from_json_text(R"({"vocab_size": 100, "hidden_dim": 16, "num_layers": 2})");
    auto table = parameter_table(c);
    std::set<std::string> names;
    for (const auto& p : table) EXPECT_TRUE(names.insert(p.name).second) << "duplicate " << p.name;
    EXPECT_EQ(table.size(), 1 + 2 * 7 + 2u);
    EXPECT_TRUE(names.count("layers.1.ttt.down.weight"));
    EXPECT_TRUE(names.count("layers.0.mlp.down_proj.weight"));
    // embed + lm_head + norm_f + per layer (2 norms, down, up, gate, up_proj, down_proj)
    int64_t per_layer = 2 * 16 + 4 * 16 * 2 + 3 * 16 * 64;
    EXPECT_EQ(parameter_count(c), 2 * 100 * 16 + 16 + 2 * per_layer);
    for (const auto& p : table) {
        if (p.name == "layers.0.ttt.up.weight") {
            EXPECT_EQ(p.shape, (std::vector<int64_t>{16, 4}));
        }
        if (p.kind == ParamKind::kNorm) {
            EXPECT_FALSE(p.weight_decay());
        }
    }
}

TEST(ParameterTable, DeltaRuleHasItsProjections) {
    ModelConfig c = ModelConfig::from_json_text(
        R"({"vocab_size": 50, "hidden_dim": 32, "num_layers": 1, "ttt_rule": "delta", "ttt_heads": 2})");
    std::set<std::string> names;
    for (const auto& p : parameter_table(c)) names.insert(p.name);
    for (const char* n :
         {"layers.0.ttt.q.weight", "layers.0.ttt.k.weight", "layers.0.ttt.v.weight",
          "layers.0.ttt.o.weight", "layers.0.ttt.lr.weight", "layers.0.ttt.lr.bias"})
        EXPECT_TRUE(names.count(n)) << n;
    EXPECT_FALSE(names.count("layers.0.ttt.down.weight"));
}

}  // namespace
}  // namespace bitttt
