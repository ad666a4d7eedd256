// The weights of a loaded model, as the inference forward reads them (llama2.c's
// TransformerWeights): floating-point tensors as float pointers and BitLinear tensors as packed
// ternary views. The pointers point into a memory-mapped .bitt file where possible, or into
// buffers this object owns; `storage` keeps either alive.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cpu/int8_matmul.hpp"
#include "kernels/cpu/ternary.hpp"
#include "model/config.hpp"

namespace bitttt {

struct LayerWeights {
    const float* norm1 = nullptr;  // [D]
    const float* norm2 = nullptr;  // [D]
    // reconstruct rule
    kernels::TernaryWeights ttt_down;  // [Dt, D]
    kernels::TernaryWeights ttt_up;    // [D, Dt]
    // delta rule
    kernels::TernaryWeights ttt_q, ttt_k, ttt_v;  // [Dt, D]
    kernels::TernaryWeights ttt_o;                // [D, Dt]
    const float* ttt_lr_weight = nullptr;         // [heads, D]
    const float* ttt_lr_bias = nullptr;           // [heads]
    // SwiGLU MLP
    kernels::TernaryWeights gate_proj, up_proj;  // [M, D]
    kernels::TernaryWeights down_proj;           // [D, M]
};

// One entry per ParamSpec of parameter_table(config), same order.
struct TensorRef {
    const float* f32 = nullptr;       // floating-point tensors (kind != kBitLinear)
    kernels::TernaryWeights ternary;  // BitLinear tensors
};

class ModelWeights {
  public:
    ModelConfig config;
    std::vector<ParamSpec> table;    // parameter_table(config)
    std::vector<TensorRef> tensors;  // parallel to table
    const float* embed = nullptr;    // [V, D]
    const float* norm_f = nullptr;   // [D]
    const float* lm_head = nullptr;  // [V, D]
    // lm_head rounded to bf16 (round to nearest even): what the inference forward reads. At the
    // default config the fp32 lm_head (16 MiB) is most of the bytes a decoded token streams;
    // bf16 halves them and keeps the logits within 2⁻⁸ Σ|w x| of the fp32 product
    // (kernels/cpu/bf16_matmul.hpp). link() makes it, or it points into a .bitt file that
    // stores lm_head as BF16 (the same values then, with nothing converted).
    const uint16_t* lm_head_bf16 = nullptr;  // [V, D]
    // lm_head as per-row absmax int8 (kernels/cpu/int8_matmul.hpp), made by
    // quantize_lm_head_int8() when a model is placed with the opt-in int8 lm_head
    // (DeviceOptions::lm_head); rows == 0 otherwise.
    kernels::Int8Weights lm_head_int8;
    std::vector<LayerWeights> layers;
    // Whatever the pointers point into (a file mapping, owned buffers).
    std::vector<std::shared_ptr<const void>> storage;

    // Builds from floating-point master weights (as training holds them): `lookup` returns the
    // fp32 data of each ParamSpec (numel() floats, row-major). BitLinear tensors are quantized
    // (absmean, DESIGN.md §2.1) and packed; the others are copied.
    static ModelWeights from_master(const ModelConfig& config,
                                    const std::function<const float*(const ParamSpec&)>& lookup);
    // A model with random weights (normal, std 1/sqrt(fan_in); norms 1) for tests and benchmarks.
    static ModelWeights random(const ModelConfig& config, uint64_t seed);
    // Random weights generated directly in packed form, for benchmarks of large shapes (a
    // 7B-class model in seconds, without fp32 master weights): uniform random codes (weights -1,
    // 0, +1 with probabilities 1/4, 1/2, 1/4) with the absmean scale of a normal(0, 1/fan_in)
    // tensor, fp tensors uniform with std 1/sqrt(fan_in), norms 1. Filled in parallel
    // (weights_random_packed.cpp).
    static ModelWeights random_packed(const ModelConfig& config, uint64_t seed);

    // Fills embed/norm_f/lm_head/layers from `tensors` (call after filling tensors), and
    // lm_head_bf16 unless it is already set.
    void link();
    // Fills lm_head_int8 from the fp32 lm_head (an Error for a non-finite weight).
    void quantize_lm_head_int8();
    // Looks a tensor up by name; throws Error if there is none.
    const TensorRef& tensor(const std::string& name) const;
};

}  // namespace bitttt
