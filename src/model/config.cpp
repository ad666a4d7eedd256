#include "model/config.hpp"

#include <fmt/format.h>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.hpp"

namespace bitttt {
namespace {

// Upper bounds keep every tensor size and index far from int64 overflow and reject typos
// (a 70B-class model has D = 8192, vocab 128256, mlp 28672, 80 layers).
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxDim = int64_t{1} << 17;
constexpr int64_t kMaxLayers = 4096;

int64_t get_int(const nlohmann::json& value, std::string_view key, std::string_view source) {
    check(value.is_number_integer(), ErrorKind::kFormat, "{}: '{}' must be an integer, got {}",
          source, key, value.dump());
    return value.get<int64_t>();
}

float get_float(const nlohmann::json& value, std::string_view key, std::string_view source) {
    check(value.is_number(), ErrorKind::kFormat, "{}: '{}' must be a number, got {}", source, key,
          value.dump());
    double v = value.get<double>();
    check(std::isfinite(v), ErrorKind::kFormat, "{}: '{}' must be finite", source, key);
    return static_cast<float>(v);
}

void check_range(int64_t v, int64_t lo, int64_t hi, std::string_view key, std::string_view source) {
    check(v >= lo && v <= hi, ErrorKind::kFormat, "{}: '{}' = {} is out of range [{}, {}]", source,
          key, v, lo, hi);
}

}  // namespace

std::string_view ttt_rule_name(TttRule rule) {
    return rule == TttRule::kDelta ? "delta" : "reconstruct";
}

TttRule parse_ttt_rule(std::string_view name) {
    if (name == "reconstruct") return TttRule::kReconstruct;
    if (name == "delta") return TttRule::kDelta;
    fail(ErrorKind::kInvalidArgument, "unknown TTT rule '{}' (expected reconstruct or delta)",
         name);
}

void ModelConfig::resolve_and_validate(std::string_view source) {
    check_range(hidden_dim, 1, kMaxDim, "hidden_dim", source);
    if (ttt_dim == 0) ttt_dim = std::max<int64_t>(1, hidden_dim / 4);
    if (mlp_dim == 0) mlp_dim = 4 * hidden_dim;
    check_range(vocab_size, 1, kMaxVocab, "vocab_size", source);
    check_range(num_layers, 1, kMaxLayers, "num_layers", source);
    check_range(ttt_dim, 1, kMaxDim, "ttt_dim", source);
    check_range(ttt_heads, 1, ttt_dim, "ttt_heads", source);
    check_range(mlp_dim, 1, 4 * kMaxDim, "mlp_dim", source);
    check(ttt_dim % ttt_heads == 0, ErrorKind::kFormat,
          "{}: ttt_dim {} is not divisible by ttt_heads {}", source, ttt_dim, ttt_heads);
    check(ttt_rule == TttRule::kDelta || ttt_heads == 1, ErrorKind::kFormat,
          "{}: the reconstruct rule has one head (ttt_heads = {})", source, ttt_heads);
    // 0 <= eta <= 2 keeps every TTT step a contraction of W - I (see kernels/cpu/ttt_scan.hpp);
    // larger steps make the state grow without bound.
    check(std::isfinite(inner_lr) && inner_lr >= 0.0f && inner_lr <= 2.0f, ErrorKind::kFormat,
          "{}: 'inner_lr' must be in [0, 2], got {}", source, inner_lr);
    check(std::isfinite(norm_eps) && norm_eps > 0.0f, ErrorKind::kFormat,
          "{}: 'norm_eps' must be finite and > 0, got {}", source, norm_eps);
    check(act_bits == 0 || act_bits == 8, ErrorKind::kFormat,
          "{}: 'act_bits' must be 0 or 8, got {}", source, act_bits);
}

ModelConfig ModelConfig::from_json(const nlohmann::json& j, std::string_view source) {
    check(j.is_object(), ErrorKind::kFormat, "{}: the config must be a JSON object", source);
    ModelConfig c;
    for (const auto& [key, value] : j.items()) {
        if (key == "vocab_size")
            c.vocab_size = get_int(value, key, source);
        else if (key == "hidden_dim")
            c.hidden_dim = get_int(value, key, source);
        else if (key == "num_layers")
            c.num_layers = get_int(value, key, source);
        else if (key == "inner_lr")
            c.inner_lr = get_float(value, key, source);
        else if (key == "ttt_dim") {
            c.ttt_dim = get_int(value, key, source);
            check(c.ttt_dim > 0, ErrorKind::kFormat, "{}: 'ttt_dim' must be positive", source);
        } else if (key == "ttt_rule") {
            check(value.is_string(), ErrorKind::kFormat, "{}: 'ttt_rule' must be a string", source);
            try {
                c.ttt_rule = parse_ttt_rule(value.get<std::string>());
            } catch (const Error& e) {
                fail(ErrorKind::kFormat, "{}: {}", source, e.what());
            }
        } else if (key == "ttt_heads")
            c.ttt_heads = get_int(value, key, source);
        else if (key == "mlp_dim") {
            c.mlp_dim = get_int(value, key, source);
            check(c.mlp_dim > 0, ErrorKind::kFormat, "{}: 'mlp_dim' must be positive", source);
        } else if (key == "norm_eps")
            c.norm_eps = get_float(value, key, source);
        else if (key == "act_bits") {
            int64_t bits = get_int(value, key, source);
            check(bits == 0 || bits == 8, ErrorKind::kFormat,
                  "{}: 'act_bits' must be 0 or 8, got {}", source, bits);
            c.act_bits = static_cast<int>(bits);
        } else {
            fail(ErrorKind::kFormat, "{}: unknown key '{}'", source, key);
        }
    }
    c.resolve_and_validate(source);
    return c;
}

ModelConfig ModelConfig::from_json_text(std::string_view text, std::string_view source) {
    nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    check(!j.is_discarded(), ErrorKind::kFormat, "{}: not valid JSON", source);
    return from_json(j, source);
}

ModelConfig ModelConfig::load(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    check(in.good(), ErrorKind::kIo, "{}: cannot open", path);
    std::ostringstream text;
    text << in.rdbuf();
    check(!in.bad(), ErrorKind::kIo, "{}: read error", path);
    return from_json_text(text.str(), path);
}

// A float as the shortest decimal that reads back as the same float ("0.1", not the
// 0.10000000149011612 of its exact double value), so config.json files stay readable.
static double shortest_decimal(float v) {
    return std::strtod(fmt::format("{}", v).c_str(), nullptr);
}

nlohmann::json ModelConfig::to_json() const {
    return {{"vocab_size", vocab_size},
            {"hidden_dim", hidden_dim},
            {"num_layers", num_layers},
            {"inner_lr", shortest_decimal(inner_lr)},
            {"ttt_dim", ttt_dim},
            {"ttt_rule", std::string(ttt_rule_name(ttt_rule))},
            {"ttt_heads", ttt_heads},
            {"mlp_dim", mlp_dim},
            {"norm_eps", shortest_decimal(norm_eps)},
            {"act_bits", act_bits}};
}

int64_t ParamSpec::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

std::vector<ParamSpec> parameter_table(const ModelConfig& c) {
    const int64_t D = c.hidden_dim, Dt = c.ttt_dim, M = c.mlp_dim, V = c.vocab_size;
    std::vector<ParamSpec> t;
    t.push_back({"embed.weight", {V, D}, ParamKind::kEmbedding, -1});
    for (int i = 0; i < static_cast<int>(c.num_layers); ++i) {
        const std::string p = "layers." + std::to_string(i) + ".";
        t.push_back({p + "norm1.weight", {D}, ParamKind::kNorm, i});
        if (c.ttt_rule == TttRule::kReconstruct) {
            t.push_back({p + "ttt.down.weight", {Dt, D}, ParamKind::kBitLinear, i});
            t.push_back({p + "ttt.up.weight", {D, Dt}, ParamKind::kBitLinear, i});
        } else {
            t.push_back({p + "ttt.q.weight", {Dt, D}, ParamKind::kBitLinear, i});
            t.push_back({p + "ttt.k.weight", {Dt, D}, ParamKind::kBitLinear, i});
            t.push_back({p + "ttt.v.weight", {Dt, D}, ParamKind::kBitLinear, i});
            t.push_back({p + "ttt.o.weight", {D, Dt}, ParamKind::kBitLinear, i});
            t.push_back({p + "ttt.lr.weight", {c.ttt_heads, D}, ParamKind::kLinear, i});
            t.push_back({p + "ttt.lr.bias", {c.ttt_heads}, ParamKind::kBias, i});
        }
        t.push_back({p + "norm2.weight", {D}, ParamKind::kNorm, i});
        t.push_back({p + "mlp.gate_proj.weight", {M, D}, ParamKind::kBitLinear, i});
        t.push_back({p + "mlp.up_proj.weight", {M, D}, ParamKind::kBitLinear, i});
        t.push_back({p + "mlp.down_proj.weight", {D, M}, ParamKind::kBitLinear, i});
    }
    t.push_back({"norm_f.weight", {D}, ParamKind::kNorm, -1});
    t.push_back({"lm_head.weight", {V, D}, ParamKind::kLinear, -1});
    return t;
}

int64_t parameter_count(const ModelConfig& config) {
    int64_t n = 0;
    for (const auto& p : parameter_table(config)) n += p.numel();
    return n;
}

}  // namespace bitttt
