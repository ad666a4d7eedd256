// `bitttt export`: convert between model formats — a model directory, a .bitt or a training
// checkpoint (.safetensors from `bitttt train`) to one self-contained .bitt file, or to a model
// directory with safetensors master weights that requantize to exactly the same ternary weights.
#include <fmt/format.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "bitttt/model.hpp"
#include "bitttt/tokenizer.hpp"
#include "cli/commands.hpp"
#include "cli/model_options.hpp"
#include "core/error.hpp"
#include "model/loader.hpp"
#include "model/weights.hpp"
#include "train/checkpoint.hpp"

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

// A training checkpoint (a .safetensors file written by `bitttt train`): its fp32 master weights,
// quantized and packed as at the end of training.
ModelWeights checkpoint_weights(const std::string& path,
                                std::optional<std::string>& tokenizer_json) {
    train::Checkpoint ckpt = train::read_checkpoint(path);
    train::ParamLayout layout(ckpt.config);
    std::vector<float> params(static_cast<size_t>(layout.total));
    ckpt.copy_tensors(layout, "param", params.data());
    if (!ckpt.tokenizer_json.empty()) tokenizer_json = ckpt.tokenizer_json;
    size_t next = 0;
    return ModelWeights::from_master(ckpt.config, [&](const ParamSpec& spec) {
        check(next < layout.specs.size() && layout.specs[next].name == spec.name,
              ErrorKind::kInternal, "{}: parameter order mismatch at '{}'", path, spec.name);
        return params.data() + layout.offsets[next++];
    });
}

void run_export(const ExportArgs& a) {
    const io::DType dtype = parse_dtype(a.dtype);
    std::optional<std::string> tokenizer_json;
    std::shared_ptr<const Model> model;
    std::error_code ec;
    if (std::filesystem::is_regular_file(a.input, ec) && ends_with(a.input, ".safetensors")) {
        model = Model::from_weights(checkpoint_weights(a.input, tokenizer_json));
    } else {
        model = open_model(a.input);
        if (const Tokenizer* tok = model->tokenizer()) tokenizer_json = tok->to_json();
    }
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
    cmd->add_option("input", a->input,
                    std::string(kModelHelp) + ", or a training checkpoint (.safetensors)")
        ->required();
    cmd->add_option("output", a->output,
                    "A .bitt file, or a directory for config.json + "
                    "model.safetensors (+ tokenizer.json)")
        ->required();
    cmd->add_option("--dtype", a->dtype, "Floating-point tensors as f32, bf16 or f16")
        ->capture_default_str();
    cmd->callback([a] { run_export(*a); });
}

}  // namespace bitttt::cli
