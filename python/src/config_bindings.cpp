// ModelConfig (config.json, DESIGN.md §2) as an immutable, validated Python value.
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "bindings.hpp"
#include "model/config.hpp"

namespace bitttt::python {

void bind_config(nb::module_& m) {
    nb::class_<ModelConfig>(m, "ModelConfig",
                            "Model configuration (config.json). Immutable once made: every value "
                            "is checked at construction, and ttt_dim / mlp_dim of 0 take their "
                            "defaults (hidden_dim / 4 and 4 * hidden_dim).")
        .def(
            "__init__",
            [](ModelConfig* self, int64_t vocab_size, int64_t hidden_dim, int64_t num_layers,
               float inner_lr, int64_t ttt_dim, const std::string& ttt_rule, int64_t ttt_heads,
               int64_t mlp_dim, float norm_eps, int act_bits) {
                ModelConfig c;
                c.vocab_size = vocab_size;
                c.hidden_dim = hidden_dim;
                c.num_layers = num_layers;
                c.inner_lr = inner_lr;
                c.ttt_dim = ttt_dim;
                c.ttt_rule = parse_ttt_rule(ttt_rule);
                c.ttt_heads = ttt_heads;
                c.mlp_dim = mlp_dim;
                c.norm_eps = norm_eps;
                c.act_bits = act_bits;
                c.resolve_and_validate("ModelConfig");
                new (self) ModelConfig(c);
            },
            nb::arg("vocab_size") = 16384, nb::arg("hidden_dim") = 256, nb::arg("num_layers") = 8,
            nb::arg("inner_lr") = 0.1, nb::kw_only(), nb::arg("ttt_dim") = 0,
            nb::arg("ttt_rule") = "reconstruct", nb::arg("ttt_heads") = 1, nb::arg("mlp_dim") = 0,
            nb::arg("norm_eps") = 1e-5, nb::arg("act_bits") = 8,
            "Makes and checks a configuration; raises ValueError naming a bad value.")
        .def_static(
            "from_json",
            [](const std::string& text) { return ModelConfig::from_json_text(text, "config"); },
            nb::arg("text"),
            "Parses config.json text (unknown keys and bad values raise ValueError).")
        .def_static(
            "load", [](const Path& path) { return ModelConfig::load(path.string()); },
            nb::arg("path"), "Reads a config.json file.")
        .def(
            "to_json", [](const ModelConfig& c) { return c.to_json().dump(2); },
            "The config.json text, every key present with defaults resolved.")
        .def_ro("vocab_size", &ModelConfig::vocab_size, "Tokens; <|endoftext|> is id 0.")
        .def_ro("hidden_dim", &ModelConfig::hidden_dim, "D, the width of the residual stream.")
        .def_ro("num_layers", &ModelConfig::num_layers, "L, the number of blocks.")
        .def_ro("inner_lr", &ModelConfig::inner_lr, "eta, the TTT step size.")
        .def_ro("ttt_dim", &ModelConfig::ttt_dim, "Dt, the width of the TTT state W (Dt x Dt).")
        .def_prop_ro(
            "ttt_rule", [](const ModelConfig& c) { return std::string(ttt_rule_name(c.ttt_rule)); },
            "'reconstruct' (the original rule) or 'delta'.")
        .def_ro("ttt_heads", &ModelConfig::ttt_heads, "Heads of the delta rule.")
        .def_ro("mlp_dim", &ModelConfig::mlp_dim, "SwiGLU inner width.")
        .def_ro("norm_eps", &ModelConfig::norm_eps, "RMSNorm epsilon.")
        .def_ro("act_bits", &ModelConfig::act_bits,
                "BitLinear input quantization: 8 (per-token int8) or 0 (none).")
        .def_prop_ro("head_dim", &ModelConfig::head_dim, "Dt / ttt_heads.")
        .def_prop_ro(
            "parameter_count", [](const ModelConfig& c) { return parameter_count(c); },
            "Number of parameters (floats of the master weights).")
        .def(
            "parameter_shapes",
            [](const ModelConfig& c) {
                std::vector<std::pair<std::string, std::vector<int64_t>>> out;
                for (const ParamSpec& spec : parameter_table(c))
                    out.emplace_back(spec.name, spec.shape);
                return out;
            },
            "Every tensor of model.safetensors as (name, shape), in the file's order; linear "
            "weights are [out, in] as in PyTorch.")
        .def(
            "__eq__", [](const ModelConfig& a, const ModelConfig& b) { return a == b; },
            nb::is_operator(), "Whether every value is the same.")
        .def("__repr__",
             [](const ModelConfig& c) { return "ModelConfig(" + c.to_json().dump() + ")"; });
}

}  // namespace bitttt::python
