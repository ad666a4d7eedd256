// `bitttt info`: what a model is — its config, parameter counts, file size, bits per weight.
#include <fmt/format.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "bitttt/model.hpp"
#include "bitttt/tokenizer.hpp"
#include "cli/commands.hpp"
#include "cli/model_options.hpp"
#include "model/config.hpp"
#include "model/weights.hpp"

namespace bitttt::cli {
namespace {

// Bytes on disk: the file, or the files of a model directory (0 for a random model).
uint64_t size_on_disk(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::is_regular_file(path, ec)) return fs::file_size(path, ec);
    if (!fs::is_directory(path, ec)) return 0;
    uint64_t total = 0;
    for (const char* name : {"config.json", "model.safetensors", "tokenizer.json"}) {
        const fs::path p = fs::path(path) / name;
        if (fs::is_regular_file(p, ec)) total += fs::file_size(p, ec);
    }
    return total;
}

std::string human(double n) {
    if (n >= 1e9) return fmt::format("{:.2f} G", n / 1e9);
    if (n >= 1e6) return fmt::format("{:.2f} M", n / 1e6);
    if (n >= 1e3) return fmt::format("{:.2f} k", n / 1e3);
    return fmt::format("{:.0f} ", n);
}

void run_info(const std::string& path) {
    auto model = open_model(path);
    const ModelConfig& c = model->config();
    const ModelWeights& w = model->weights();
    fmt::print("model: {}\n", path);
    fmt::print("config: {}\n", c.to_json().dump(2));

    int64_t ternary = 0, fp = 0, packed_bytes = 0;
    for (const ParamSpec& spec : w.table) {
        if (spec.kind == ParamKind::kBitLinear) {
            ternary += spec.numel();
            packed_bytes += kernels::packed_bytes(spec.shape[0], spec.shape[1]);
        } else {
            fp += spec.numel();
        }
    }
    const int64_t total = ternary + fp;
    fmt::print("parameters: {}({})\n", human(static_cast<double>(total)), total);
    fmt::print(
        "  ternary (BitLinear): {}({}), packed {}B = {:.3f} bits/weight\n",
        human(static_cast<double>(ternary)), ternary, human(static_cast<double>(packed_bytes)),
        ternary ? 8.0 * static_cast<double>(packed_bytes) / static_cast<double>(ternary) : 0.0);
    fmt::print("  floating point (embed, lm_head, norms, step sizes): {}({})\n",
               human(static_cast<double>(fp)), fp);
    const uint64_t disk = size_on_disk(path);
    if (disk > 0)
        fmt::print("file size: {}B ({} bytes), {:.3f} bits per parameter\n",
                   human(static_cast<double>(disk)), disk,
                   8.0 * static_cast<double>(disk) / static_cast<double>(total));
    const int64_t state_floats = c.num_layers * c.ttt_dim * c.head_dim();
    fmt::print("TTT state: {} layers x {} heads x {}x{} = {}B per session\n", c.num_layers,
               c.ttt_heads, c.head_dim(), c.head_dim(),
               human(static_cast<double>(state_floats * 4)));
    if (const Tokenizer* tok = model->tokenizer())
        fmt::print("tokenizer: {} tokens\n", tok->vocab_size());
    else
        fmt::print("tokenizer: none\n");
    fmt::print("identity: {:016x}\n", model->identity_hash());
}

}  // namespace

void register_info(CLI::App& app) {
    auto* cmd = app.add_subcommand("info", "Show a model's config, parameter counts and sizes");
    auto path = std::make_shared<std::string>();
    cmd->add_option("model", *path, kModelHelp)->required();
    cmd->callback([path] { run_info(*path); });
}

}  // namespace bitttt::cli
