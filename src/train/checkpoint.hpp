// Training checkpoints: everything needed to resume bit for bit, in one safetensors file written
// atomically (temp file, fsync, rename: a crash mid-save leaves the previous checkpoint intact).
//
// Tensors: `param.<name>`, `adam_m.<name>`, `adam_v.<name>` (F32, the ParamSpec's shape) for
// every entry of parameter_table(config). __metadata__ (strings): "format" = "bitttt-checkpoint-1",
// "config" (config.json), "state" (JSON: step, sampler RNG state, training options, data paths),
// "tokenizer" (tokenizer.json). The file loads with the Python `safetensors` package.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "io/safetensors.hpp"
#include "model/config.hpp"
#include "train/model.hpp"

namespace bitttt::train {

inline constexpr const char* kCheckpointFormat = "bitttt-checkpoint-1";

struct CheckpointToWrite {
    const ParamLayout* layout = nullptr;
    const ModelConfig* config = nullptr;
    const float* params = nullptr;  // layout.total floats each
    const float* adam_m = nullptr;
    const float* adam_v = nullptr;
    nlohmann::json state;
    std::string tokenizer_json;
};
void save_checkpoint(const std::string& path, const CheckpointToWrite& checkpoint);

struct Checkpoint {
    io::SafetensorsFile file;
    ModelConfig config;
    nlohmann::json state;
    std::string tokenizer_json;
    // Copies `<prefix>.<name>` of every ParamSpec into dst (laid out by `layout`); checks dtype
    // and shape and names the tensor on any mismatch.
    void copy_tensors(const ParamLayout& layout, const std::string& prefix, float* dst) const;
};
// Opens and validates a checkpoint (format, config, state JSON); errors name the path.
Checkpoint read_checkpoint(const std::string& path);

}  // namespace bitttt::train
