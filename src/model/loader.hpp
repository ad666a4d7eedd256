// Loading and saving whole models (DESIGN.md §3):
//   - a .bitt file: mapped, checked, and the packed ternary weights (and 64-byte aligned fp32
//     tensors) used in place in the mapping, without a copy;
//   - a model directory: config.json + model.safetensors (fp32/bf16/f16 master weights, BitLinear
//     tensors quantized and packed at load) [+ tokenizer.json].
// Every tensor the config's parameter table expects must be present with its shape and a
// suitable dtype, and nothing else may be; errors name the file and the tensor.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "io/safetensors.hpp"
#include "model/config.hpp"
#include "model/weights.hpp"

namespace bitttt {

struct LoadOptions {
    // .bitt: hash the body and check it against the header, and check that every packed code is
    // a valid ternary code (reads every byte once; turn off for speed on trusted huge files).
    bool verify = true;
};

struct LoadedModel {
    ModelWeights weights;
    std::optional<std::string> tokenizer_json;  // tokenizer.json text, when the model has one
};

// `path` is a .bitt file or a model directory.
LoadedModel load_model(const std::string& path, const LoadOptions& options = {});
ModelWeights load_model_weights(const std::string& path,
                                std::optional<std::string>* tokenizer_json = nullptr);
// A bare safetensors file of fp32/bf16/f16 master weights with a config given by the caller (a
// model directory's model.safetensors; the original `cortex_rust.BitLlama(config, path)` API).
// Every tensor of parameter_table(config) must be present with its shape and a floating-point
// dtype, and nothing else; BitLinear tensors are quantized and packed. Errors name the file and
// the tensor.
ModelWeights load_master_safetensors(const std::string& path, const ModelConfig& config);

// Writes `weights` as a .bitt file (atomically). Floating-point tensors are stored as
// `float_dtype` (F32, or BF16/F16 to halve them; the loader converts those back to fp32).
void save_bitt(const std::string& path, const ModelWeights& weights,
               const std::optional<std::string>& tokenizer_json,
               io::DType float_dtype = io::DType::kF32);

// Writes fp32 master weights (as training holds them: `lookup` gives each ParamSpec's data) as a
// safetensors file with the tensor names of DESIGN.md §3, stored as `dtype` (F32, BF16, F16).
void save_safetensors_master(const std::string& path, const ModelConfig& config,
                             const std::function<const float*(const ParamSpec&)>& lookup,
                             io::DType dtype = io::DType::kF32);

// Writes loaded (packed) weights back as master weights W whose absmean quantization (§2.1)
// gives back exactly the codes q and the scale beta. Plain beta * q would not: its absmean is
// beta * nnz / n (n elements, nnz of them non-zero). So the non-zero weights get the magnitude
// s = beta * n / nnz, and because fp32 cannot always hit mean |W| == beta with one magnitude,
// the first `high_count` of them get the next float up (see DequantScale). Exact for F32;
// BF16/F16 round the magnitudes, so their scales come back only approximately. (Scales near
// the quantizer's 1e-8 epsilon cannot round-trip at all; real ones are many orders above it.)
void save_safetensors_dequantized(const std::string& path, const ModelWeights& weights,
                                  io::DType dtype = io::DType::kF32);

// Magnitudes of the dequantized non-zero weights: `high_count` of them are `high` (the float
// after `low`), the others `low`, so that mean |W| rounds to beta in fp32 as
// kernels::ternary_scale computes it (the double sum of such values is exact for nnz < 2^28).
struct DequantScale {
    float low = 0.0f;
    float high = 0.0f;
    int64_t high_count = 0;
};
DequantScale dequantization_scale(float beta, int64_t n, int64_t nonzero);

// Writes a model directory: config.json, model.safetensors (save_safetensors_dequantized) and
// tokenizer.json when there is one. The directory is created if needed.
void save_model_dir(const std::string& dir, const ModelWeights& weights,
                    const std::optional<std::string>& tokenizer_json,
                    io::DType dtype = io::DType::kF32);

}  // namespace bitttt
