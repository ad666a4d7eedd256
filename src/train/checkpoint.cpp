#include "train/checkpoint.hpp"

#include <cstring>

#include "core/error.hpp"
#include "io/json_text.hpp"

namespace bitttt::train {

void save_checkpoint(const std::string& path, const CheckpointToWrite& c) {
    const ParamLayout& layout = *c.layout;
    std::vector<io::TensorToWrite> tensors;
    const std::pair<const char*, const float*> groups[] = {
        {"param.", c.params}, {"adam_m.", c.adam_m}, {"adam_v.", c.adam_v}};
    for (const auto& [prefix, base] : groups) {
        for (size_t i = 0; i < layout.specs.size(); ++i) {
            const ParamSpec& s = layout.specs[i];
            io::TensorToWrite t;
            t.name = std::string(prefix) + s.name;
            t.dtype = io::DType::kF32;
            t.shape = s.shape;
            t.bytes = {reinterpret_cast<const uint8_t*>(base + layout.offsets[i]),
                       static_cast<size_t>(s.numel()) * sizeof(float)};
            tensors.push_back(std::move(t));
        }
    }
    std::map<std::string, std::string> metadata = {{"format", kCheckpointFormat},
                                                   {"config", c.config->to_json().dump()},
                                                   {"state", c.state.dump()},
                                                   {"tokenizer", c.tokenizer_json}};
    io::write_safetensors(path, std::move(tensors), metadata, 64);
}

Checkpoint read_checkpoint(const std::string& path) {
    Checkpoint ck{io::SafetensorsFile::open(path), {}, {}, {}};
    const auto& meta = ck.file.view.metadata();
    auto get = [&](const char* key) -> const std::string& {
        auto it = meta.find(key);
        check(it != meta.end(), ErrorKind::kFormat, "{}: not a bitttt checkpoint (no '{}')", path,
              key);
        return it->second;
    };
    check(get("format") == kCheckpointFormat, ErrorKind::kFormat,
          "{}: unsupported checkpoint format '{}'", path, get("format"));
    ck.config = ModelConfig::from_json_text(get("config"), path + ": config");
    ck.state = io::parse_json_checked(get("state"), path + ": state");
    check(ck.state.is_object(), ErrorKind::kFormat, "{}: state must be a JSON object", path);
    ck.tokenizer_json = get("tokenizer");
    return ck;
}

void Checkpoint::copy_tensors(const ParamLayout& layout, const std::string& prefix,
                              float* dst) const {
    for (size_t i = 0; i < layout.specs.size(); ++i) {
        const ParamSpec& s = layout.specs[i];
        const io::TensorView& t = file.view.at(prefix + "." + s.name);
        check(t.dtype == io::DType::kF32 && t.shape == s.shape, ErrorKind::kFormat,
              "{}: tensor '{}.{}' must be F32 of the parameter's shape", file.view.source(), prefix,
              s.name);
        std::memcpy(dst + layout.offsets[i], t.data.data(), t.data.size());
    }
}

}  // namespace bitttt::train
