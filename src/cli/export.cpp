// `bitttt export`: convert between model formats — a model directory (or .bitt) to one
// self-contained .bitt file, and a .bitt (or directory) back to a model directory with
// safetensors master weights that requantize to exactly the same ternary weights.
#include <fmt/format.h>

#include <optional>
#include <string>

#include "bitttt/model.hpp"
#include "bitttt/tokenizer.hpp"
#include "cli/commands.hpp"
#include "cli/model_options.hpp"
#include "core/error.hpp"
#include "model/loader.hpp"

namespace bitttt::cli {
namespace {

struct ExportArgs {
    std::string input, output, dtype = "f32";
};

io::DType parse_dtype(const std::string& name) {
    if (name == "f32") return io::DType::kF32;
    if (name == "bf16") return io::DType::kBF16;
    if (name == "f16") return io::DType::kF16;
    fail(ErrorKind::kInvalidArgument, "--dtype: unknown type '{}' (expected f32, bf16 or f16)",
         name);
}

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void run_export(const ExportArgs& a) {
    const io::DType dtype = parse_dtype(a.dtype);
    auto model = open_model(a.input);
    std::optional<std::string> tokenizer_json;
    if (const Tokenizer* tok = model->tokenizer()) tokenizer_json = tok->to_json();
    if (ends_with(a.output, ".bitt")) {
        save_bitt(a.output, model->weights(), tokenizer_json, dtype);
        fmt::print(stderr, "wrote {}\n", a.output);
    } else {
        save_model_dir(a.output, model->weights(), tokenizer_json, dtype);
        fmt::print(stderr, "wrote {}/config.json, model.safetensors{}\n", a.output,
                   tokenizer_json ? ", tokenizer.json" : "");
    }
}

}  // namespace

void register_export(CLI::App& app) {
    auto* cmd = app.add_subcommand(
        "export",
        "Convert a model: to a .bitt file (OUTPUT ends in .bitt) or to a model directory");
    auto a = std::make_shared<ExportArgs>();
    cmd->add_option("input", a->input, kModelHelp)->required();
    cmd->add_option("output", a->output,
                    "A .bitt file, or a directory for config.json + "
                    "model.safetensors (+ tokenizer.json)")
        ->required();
    cmd->add_option("--dtype", a->dtype, "Floating-point tensors as f32, bf16 or f16")
        ->capture_default_str();
    cmd->callback([a] { run_export(*a); });
}

}  // namespace bitttt::cli
