// Model configuration (config.json, DESIGN.md §2) and the parameter table: the one list of
// tensors (names, shapes, kinds) shared by weights, gradients, AdamW moments, checkpoints and the
// file writers, in the spirit of llm.c.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace bitttt {

enum class TttRule {
    kReconstruct,  // §2.2: q = k = v = f_hat, fixed step inner_lr, output read before the update
    kDelta,  // §2.3: separate q/k/v, learned per-token step per head, output after the update
};
std::string_view ttt_rule_name(TttRule rule);
TttRule parse_ttt_rule(std::string_view name);  // "reconstruct" | "delta"; throws Error otherwise

struct ModelConfig {
    int64_t vocab_size = 16384;  // <|endoftext|> is id 0
    int64_t hidden_dim = 256;    // D
    int64_t num_layers = 8;      // L
    float inner_lr = 0.1f;       // eta, the TTT step size
    int64_t ttt_dim = 0;         // Dt; 0 in a file means "default" = D/4 (resolved by from_json)
    TttRule ttt_rule = TttRule::kReconstruct;
    int64_t ttt_heads = 1;  // heads of the delta rule (Dt split evenly)
    int64_t mlp_dim = 0;    // SwiGLU inner width; default 4*D (resolved by from_json)
    float norm_eps = 1e-5f;
    int act_bits = 8;  // 8: per-token absmax int8 activations into BitLinear; 0: none

    // Fills the D-dependent defaults (ttt_dim = D/4, mlp_dim = 4*D) where they are 0, then checks
    // every value (positive sizes, heads dividing ttt_dim, act_bits in {0, 8}, finite inner_lr,
    // sizes small enough that no tensor size overflows). Throws Error naming `source`.
    void resolve_and_validate(std::string_view source = "config");

    // Parses config.json contents: unknown keys, wrong types and bad values are errors naming
    // `source` (a file name) and the key; missing keys take the defaults above.
    static ModelConfig from_json(const nlohmann::json& j, std::string_view source = "config.json");
    static ModelConfig from_json_text(std::string_view text,
                                      std::string_view source = "config.json");
    static ModelConfig load(const std::string& path);
    nlohmann::json to_json() const;  // every key, defaults resolved

    int64_t head_dim() const { return ttt_dim / ttt_heads; }
    bool operator==(const ModelConfig&) const = default;
};

enum class ParamKind {
    kEmbedding,  // embed.weight [V, D], floating point
    kNorm,       // RMSNorm weights [D], init 1, no weight decay
    kBitLinear,  // ternary-quantized linear [out, in] (packed in .bitt files)
    kLinear,     // floating-point linear [out, in]: lm_head, the delta rule's ttt.lr
    kBias,       // ttt.lr.bias [heads], no weight decay
};

struct ParamSpec {
    std::string name;            // e.g. "layers.3.mlp.gate_proj.weight" (DESIGN.md §3)
    std::vector<int64_t> shape;  // PyTorch order: [out, in] for linears
    ParamKind kind;
    int layer;  // block index, -1 for embed / norm_f / lm_head
    int64_t numel() const;
    bool weight_decay() const { return kind != ParamKind::kNorm && kind != ParamKind::kBias; }
};

// Every parameter of a model with this config, in a fixed order (embed, then each layer's
// norm1, TTT tensors, norm2, mlp gate/up/down, then norm_f, lm_head). The `reconstruct` rule has
// ttt.down [Dt, D] and ttt.up [D, Dt]; the `delta` rule has instead ttt.q, ttt.k, ttt.v [Dt, D],
// ttt.o [D, Dt], ttt.lr.weight [heads, D] and ttt.lr.bias [heads].
std::vector<ParamSpec> parameter_table(const ModelConfig& config);
int64_t parameter_count(const ModelConfig& config);

}  // namespace bitttt
