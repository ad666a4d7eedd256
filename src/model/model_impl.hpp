// Model::Impl (internal): the weights, the tokenizer, the placement and, for a model on the GPU,
// the device copy of its weights.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>

#include "bitttt/model.hpp"
#include "model/gpu_model.hpp"
#include "model/weights.hpp"

namespace bitttt {

struct Model::Impl {
    ModelWeights weights;
    std::shared_ptr<const Tokenizer> tokenizer;
    DeviceOptions device;                 // gpu_layers resolved to [0, num_layers]
    std::shared_ptr<const GpuModel> gpu;  // blocks [0, device.gpu_layers) on the GPU; null if none
    mutable std::once_flag hash_once;
    mutable uint64_t hash = 0;
};

}  // namespace bitttt
