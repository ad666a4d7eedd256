// Test-only driver for tests/python/test_files.py: reads and writes safetensors, .bitt files and
// model directories with the engine's own code, so that pytest can check them against the Python
// `safetensors` package and an independent NumPy reading of the formats.
//
//   st_tool dump FILE                    tensors of a .safetensors file as JSON (dtype, shape,
//                                        xxh3_64 of the bytes, fp32 values of float tensors)
//   st_tool roundtrip IN OUT             read IN, write every tensor and the metadata to OUT
//   st_tool convert IN OUT DTYPE         as roundtrip, float tensors converted to DTYPE
//   st_tool save-bitt MODEL OUT [DTYPE]  load a model (directory or .bitt), write it as .bitt
//   st_tool export MODEL DIR             load a model, write a model directory (dequantized)
//   st_tool model-dump MODEL             config, tokenizer and tensors of a loaded model as JSON
//                                        (BitLinear: scale and codes as -1/0/1)
#include <xxhash.h>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "io/safetensors.hpp"
#include "kernels/cpu/ternary.hpp"
#include "model/loader.hpp"

namespace {

using namespace bitttt;
using io::DType;

DType dtype_arg(const std::string& name) {
    auto d = io::parse_dtype(name);
    check(d.has_value(), ErrorKind::kInvalidArgument, "unknown dtype '{}'", name);
    return *d;
}

int dump(const std::string& path) {
    io::SafetensorsFile f = io::SafetensorsFile::open(path);
    nlohmann::ordered_json out;
    out["metadata"] = f.view.metadata();
    out["tensors"] = nlohmann::ordered_json::object();
    for (const io::TensorView& t : f.view.tensors()) {
        nlohmann::ordered_json e;
        e["dtype"] = io::dtype_name(t.dtype);
        e["shape"] = t.shape;
        e["xxh3_64"] = fmt::format("{:016x}", XXH3_64bits(t.data.data(), t.data.size()));
        if (t.dtype != DType::kU8) {
            std::vector<float> v(static_cast<size_t>(t.numel));
            io::tensor_to_f32(t, v.data(), path);
            e["f32"] = v;
        }
        out["tensors"][t.name] = e;
    }
    std::cout << out.dump() << "\n";
    return 0;
}

int roundtrip(const std::string& in, const std::string& out, std::optional<DType> to) {
    io::SafetensorsFile f = io::SafetensorsFile::open(in);
    std::vector<io::TensorToWrite> ts;
    for (const io::TensorView& t : f.view.tensors()) {
        if (!to || t.dtype == DType::kU8) {
            ts.push_back({t.name, t.dtype, t.shape, t.data, {}});
            continue;
        }
        ts.push_back({t.name, *to, t.shape, {}, [&t, &in, to](uint8_t* dst) {
                          std::vector<float> v(static_cast<size_t>(t.numel));
                          io::tensor_to_f32(t, v.data(), in);
                          io::f32_to_dtype(v.data(), v.size(), *to, dst);
                      }});
    }
    io::write_safetensors(out, std::move(ts), f.view.metadata());
    return 0;
}

int model_dump(const std::string& path) {
    LoadedModel m = load_model(path);
    nlohmann::ordered_json out;
    out["config"] = m.weights.config.to_json();
    out["tokenizer"] = m.tokenizer_json ? nlohmann::json::parse(*m.tokenizer_json) : nullptr;
    out["tensors"] = nlohmann::ordered_json::object();
    for (size_t i = 0; i < m.weights.table.size(); ++i) {
        const ParamSpec& spec = m.weights.table[i];
        nlohmann::ordered_json e;
        e["shape"] = spec.shape;
        if (spec.kind == ParamKind::kBitLinear) {
            const kernels::TernaryWeights& t = m.weights.tensors[i].ternary;
            std::vector<int8_t> q(static_cast<size_t>(t.rows * t.cols));
            kernels::unpack_ternary(t.codes, t.rows, t.cols, q.data());
            e["scale"] = t.scale;
            e["codes"] = q;
        } else {
            const float* p = m.weights.tensors[i].f32;
            e["f32"] = std::vector<float>(p, p + spec.numel());
        }
        out["tensors"][spec.name] = e;
    }
    std::cout << out.dump() << "\n";
    return 0;
}

int run(const std::vector<std::string>& a) {
    const std::string cmd = a.empty() ? "" : a[0];
    if (cmd == "dump" && a.size() == 2) return dump(a[1]);
    if (cmd == "roundtrip" && a.size() == 3) return roundtrip(a[1], a[2], std::nullopt);
    if (cmd == "convert" && a.size() == 4) return roundtrip(a[1], a[2], dtype_arg(a[3]));
    if (cmd == "save-bitt" && (a.size() == 3 || a.size() == 4)) {
        LoadedModel m = load_model(a[1]);
        save_bitt(a[2], m.weights, m.tokenizer_json, a.size() == 4 ? dtype_arg(a[3]) : DType::kF32);
        return 0;
    }
    if (cmd == "export" && a.size() == 3) {
        LoadedModel m = load_model(a[1]);
        save_model_dir(a[2], m.weights, m.tokenizer_json);
        return 0;
    }
    if (cmd == "model-dump" && a.size() == 2) return model_dump(a[1]);
    std::cerr << "usage: st_tool dump|roundtrip|convert|save-bitt|export|model-dump ARGS\n";
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(std::vector<std::string>(argv + 1, argv + argc));
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
}
