#include "master_weights.hpp"

#include <fmt/ranges.h>

#include <set>
#include <vector>

#include "core/error.hpp"
#include "io/safetensors.hpp"

namespace bitttt::python {

ModelWeights load_master_safetensors(const std::string& path, const ModelConfig& config) {
    const io::SafetensorsFile st = io::SafetensorsFile::open(path);
    const std::vector<ParamSpec> table = parameter_table(config);
    std::set<std::string> expected;
    for (const ParamSpec& spec : table) expected.insert(spec.name);
    for (const io::TensorView& t : st.view.tensors())
        check(expected.count(t.name) == 1, ErrorKind::kFormat,
              "{}: unexpected tensor '{}' (not a parameter of this config)", path, t.name);
    for (const ParamSpec& spec : table) {
        const io::TensorView& t = st.view.at(spec.name);
        check(t.dtype != io::DType::kU8, ErrorKind::kFormat,
              "{}: tensor '{}' has dtype U8, expected F32, BF16 or F16", path, spec.name);
        check(t.shape == spec.shape, ErrorKind::kFormat,
              "{}: tensor '{}' has shape [{}], the config needs [{}]", path, spec.name,
              fmt::join(t.shape, ", "), fmt::join(spec.shape, ", "));
    }
    // from_master copies (or quantizes) each tensor before asking for the next, so one scratch
    // buffer serves every conversion.
    std::vector<float> scratch;
    return ModelWeights::from_master(config, [&](const ParamSpec& spec) -> const float* {
        const io::TensorView& t = st.view.at(spec.name);
        scratch.resize(static_cast<size_t>(t.numel));
        io::tensor_to_f32(t, scratch.data(), path);
        return scratch.data();
    });
}

}  // namespace bitttt::python
