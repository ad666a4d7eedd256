// Loading a bare model.safetensors of fp32/bf16/f16 master weights with a config given by the
// caller (the original `cortex_rust.BitLlama(config, "model.safetensors")` API), where the model
// directory loader would read the config from config.json.
#pragma once

#include <string>

#include "model/config.hpp"
#include "model/weights.hpp"

namespace bitttt::python {

// Every tensor of parameter_table(config) must be present with its shape and a floating-point
// dtype, and nothing else; BitLinear tensors are quantized and packed. Errors name the file and
// the tensor.
ModelWeights load_master_safetensors(const std::string& path, const ModelConfig& config);

}  // namespace bitttt::python
