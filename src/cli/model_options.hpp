// Options shared by the model commands (generate, chat, info, eval, export): how a model is
// named on the command line, the sampling flags, token-id lists.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "bitttt/model.hpp"

namespace bitttt::cli {

// Help text for the MODEL argument.
inline constexpr const char* kModelHelp =
    "Model: a .bitt file, a model directory (config.json + model.safetensors [+ tokenizer.json]), "
    "or random[:CONFIG.json] (random weights, for tests and benchmarks)";

// Opens a model named as kModelHelp says, placed as `device` says.
std::shared_ptr<const Model> open_model(const std::string& spec, const DeviceOptions& device = {});

// --device cpu|cuda, --n-gpu-layers N, --dense-f32, --lm-head bf16|f32|int8 (DeviceOptions).
struct DeviceFlags {
    std::string device = "cpu";
    int64_t gpu_layers = -1;
    bool dense_f32 = false;
    std::string lm_head = "bf16";
    DeviceOptions options() const;  // checks the values (one-line errors)
};
void add_device_options(CLI::App* cmd, DeviceFlags& flags);
// --lm-head alone (DeviceOptions::lm_head), for commands with their own device flags (bench).
void add_lm_head_option(CLI::App* cmd, std::string& lm_head);

// --temperature, --top-k, --top-p, --repeat-penalty, --repeat-last-n, --seed.
void add_sampling_options(CLI::App* cmd, SamplingOptions& options);

// "1,2,3" or "1 2 3" -> ids; an error naming the bad entry otherwise.
std::vector<int32_t> parse_ids(const std::string& text);

// Sets the kernels' thread count (0: all cores).
void apply_threads(int threads);

}  // namespace bitttt::cli
