// GpuModel::Impl (internal, CUDA builds only): device pointers of every tensor the GPU blocks read.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu/ternary.hpp"
#include "kernels/cuda/device.hpp"
#include "model/config.hpp"
#include "model/gpu_model.hpp"

namespace bitttt {

// One block's tensors on the device (TernaryWeights::codes are device pointers).
struct GpuLayer {
    const float* norm1 = nullptr;
    const float* norm2 = nullptr;
    kernels::TernaryWeights ttt_down, ttt_up;               // reconstruct
    kernels::TernaryWeights ttt_q, ttt_k, ttt_v, ttt_o;     // delta
    const float* lr_weight = nullptr;                       // delta [heads, D]
    const float* lr_bias = nullptr;                         // delta [heads]
    kernels::TernaryWeights gate_proj, up_proj, down_proj;  // MLP
};

struct GpuModel::Impl {
    ModelConfig config;
    int64_t layers = 0;
    bool has_head = false;
    cuda::DeviceBuffer codes;   // the packed codes of every BitLinear of the GPU blocks
    cuda::DeviceBuffer floats;  // norms, step-size projections, ones, inner_lr, norm_f, fp32 dense
    cuda::DeviceBuffer dense;   // bf16 embedding (and lm_head) when dense_bf16
    std::vector<GpuLayer> layer;
    const void* embed = nullptr;  // [V, D] bf16 (embed_bf16) or fp32
    bool embed_bf16 = false;
    const void* lm_head = nullptr;  // [V, D] bf16 (head_bf16) or fp32; null without the head
    bool head_bf16 = false;
    const float* norm_f = nullptr;
    const float* ones = nullptr;      // [Dt]: the weight of the delta rule's weightless RMSNorm
    const float* inner_lr = nullptr;  // one float: the reconstruct rule's fixed step
    int64_t bytes = 0;
};

}  // namespace bitttt
