#include "model/loader.hpp"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "core/aligned_buffer.hpp"
#include "core/error.hpp"
#include "io/atomic_file.hpp"
#include "io/bitt.hpp"
#include "io/json_text.hpp"
#include "io/mapped_file.hpp"
#include "kernels/cpu/ternary.hpp"

namespace bitttt {
namespace {

namespace fs = std::filesystem;
using io::DType;
using io::TensorView;

std::string shape_text(const std::vector<int64_t>& shape) {
    return fmt::format("[{}]", fmt::join(shape, ", "));
}

std::string scale_name(const std::string& name) {
    return name + "_scale";
}

// The U8 tensor holding a packed [out, in] BitLinear weight: one row per padded output row.
std::vector<int64_t> packed_shape(const ParamSpec& spec) {
    return {kernels::packed_rows(spec.shape[0]), kernels::packed_cols(spec.shape[1]) / 4};
}

bool is_aligned(const void* p, std::size_t alignment) {
    return reinterpret_cast<std::uintptr_t>(p) % alignment == 0;
}

bool is_float(DType d) {
    return d == DType::kF32 || d == DType::kBF16 || d == DType::kF16;
}

// Index of the first byte holding the 2-bit code 3 (no ternary value), or -1. A field is 3 when
// both its bits are set: w & (w >> 1) has the low bit of such a field set.
int64_t find_invalid_code(const uint8_t* p, std::size_t n) {
    constexpr uint64_t kLowBits = 0x5555555555555555ull;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        std::memcpy(&w, p + i, 8);
        if (w & (w >> 1) & kLowBits) break;
    }
    for (; i < n; ++i)
        if (p[i] & (p[i] >> 1) & 0x55) return static_cast<int64_t>(i);
    return -1;
}

// Checks a floating-point tensor against its spec.
void check_float_tensor(const TensorView& t, const ParamSpec& spec, const std::string& source) {
    check(is_float(t.dtype), ErrorKind::kFormat,
          "{}: tensor '{}' has dtype {}, expected F32, BF16 or F16", source, spec.name,
          io::dtype_name(t.dtype));
    check(t.shape == spec.shape, ErrorKind::kFormat,
          "{}: tensor '{}' has shape {}, the config needs {}", source, spec.name,
          shape_text(t.shape), shape_text(spec.shape));
}

// fp32 data of a floating-point tensor: in place when it is F32 and 64-byte aligned, otherwise
// converted into a buffer that `storage` keeps.
const float* float_data(const TensorView& t, std::vector<std::shared_ptr<const void>>& storage,
                        const std::string& source) {
    if (t.dtype == DType::kF32 && is_aligned(t.data.data(), kAlignment))
        return reinterpret_cast<const float*>(t.data.data());
    auto buffer = std::make_shared<AlignedBuffer<float>>(static_cast<std::size_t>(t.numel));
    io::tensor_to_f32(t, buffer->data(), source);
    storage.push_back(buffer);
    return buffer->data();
}

// Names in `present` that the table does not expect are errors.
void check_no_extra(const std::vector<TensorView>& present, const std::set<std::string>& expected,
                    const std::string& source) {
    for (const TensorView& t : present)
        check(expected.count(t.name) > 0, ErrorKind::kFormat,
              "{}: unexpected tensor '{}' (not a parameter of this config)", source, t.name);
}

LoadedModel load_bitt(const std::string& path, const LoadOptions& options) {
    io::BittFile b = io::read_bitt(path, {.verify_checksum = options.verify});
    LoadedModel out;
    ModelWeights& w = out.weights;
    w.config = b.config;
    w.table = parameter_table(b.config);
    w.tensors.resize(w.table.size());
    w.storage.push_back(b.file);
    out.tokenizer_json = b.tokenizer_json;

    std::set<std::string> expected, bitlinear;
    for (const ParamSpec& spec : w.table) {
        expected.insert(spec.name);
        if (spec.kind == ParamKind::kBitLinear) {
            expected.insert(scale_name(spec.name));
            bitlinear.insert(spec.name);
        }
    }
    check_no_extra(b.body.tensors(), expected, path);
    for (const auto& [name, shape] : b.ternary_shapes)
        check(bitlinear.count(name) > 0, ErrorKind::kFormat,
              "{}: ternary.shapes names '{}', which is not a BitLinear tensor of this config", path,
              name);

    for (std::size_t i = 0; i < w.table.size(); ++i) {
        const ParamSpec& spec = w.table[i];
        const TensorView& t = b.body.at(spec.name);
        if (spec.kind != ParamKind::kBitLinear) {
            check_float_tensor(t, spec, path);
            w.tensors[i].f32 = float_data(t, w.storage, path);
            // A BF16 lm_head is already what the forward reads (weights.hpp): use it in place.
            if (spec.name == "lm_head.weight" && t.dtype == DType::kBF16 &&
                is_aligned(t.data.data(), alignof(uint16_t)))
                w.lm_head_bf16 = reinterpret_cast<const uint16_t*>(t.data.data());
            continue;
        }
        auto logical = b.ternary_shapes.find(spec.name);
        check(logical != b.ternary_shapes.end(), ErrorKind::kFormat,
              "{}: header's ternary.shapes has no entry for '{}'", path, spec.name);
        check(logical->second == spec.shape, ErrorKind::kFormat,
              "{}: tensor '{}' is {} in ternary.shapes, the config needs {}", path, spec.name,
              shape_text(logical->second), shape_text(spec.shape));
        check(t.dtype == DType::kU8, ErrorKind::kFormat,
              "{}: tensor '{}' has dtype {}, expected U8 (packed ternary codes)", path, spec.name,
              io::dtype_name(t.dtype));
        check(t.shape == packed_shape(spec), ErrorKind::kFormat,
              "{}: tensor '{}' has shape {}, expected {} (packed {})", path, spec.name,
              shape_text(t.shape), shape_text(packed_shape(spec)), shape_text(spec.shape));
        const TensorView& s = b.body.at(scale_name(spec.name));
        check(s.dtype == DType::kF32 && s.shape == std::vector<int64_t>{1}, ErrorKind::kFormat,
              "{}: tensor '{}' must be F32 [1], got {} {}", path, s.name, io::dtype_name(s.dtype),
              shape_text(s.shape));
        float scale;
        std::memcpy(&scale, s.data.data(), 4);
        check(std::isfinite(scale) && scale >= 0.0f, ErrorKind::kFormat,
              "{}: tensor '{}' = {} is not a finite scale >= 0", path, s.name, scale);

        const uint8_t* codes = t.data.data();
        if (!is_aligned(codes, kAlignment)) {  // kernels need 64-byte aligned codes
            auto copy = std::make_shared<AlignedBuffer<uint8_t>>(t.data.size());
            std::memcpy(copy->data(), codes, t.data.size());
            w.storage.push_back(copy);
            codes = copy->data();
        }
        if (options.verify) {
            int64_t bad = find_invalid_code(codes, t.data.size());
            check(bad < 0, ErrorKind::kFormat,
                  "{}: tensor '{}' holds an invalid ternary code (3) in byte {}", path, spec.name,
                  bad);
        }
        w.tensors[i].ternary = {codes, spec.shape[0], spec.shape[1], scale};
    }
    w.link();
    return out;
}

std::optional<std::string> load_tokenizer_file(const std::string& path) {
    std::error_code ec;
    if (!fs::exists(path, ec)) return std::nullopt;
    std::string text = io::read_text_file(path);
    nlohmann::json j = io::parse_json_checked(text, path);
    check(j.is_object(), ErrorKind::kFormat, "{}: not a JSON object", path);
    return text;
}

LoadedModel load_dir(const std::string& dir) {
    const std::string config_path = (fs::path(dir) / "config.json").string();
    std::error_code ec;
    check(fs::exists(config_path, ec), ErrorKind::kIo,
          "{}: no config.json (a model directory holds config.json and model.safetensors)", dir);
    const ModelConfig config = ModelConfig::load(config_path);
    LoadedModel out;
    out.weights = load_master_safetensors((fs::path(dir) / "model.safetensors").string(), config);
    out.tokenizer_json = load_tokenizer_file((fs::path(dir) / "tokenizer.json").string());
    return out;
}

}  // namespace

ModelWeights load_master_safetensors(const std::string& path, const ModelConfig& config) {
    const io::SafetensorsFile st = io::SafetensorsFile::open(path);
    const std::vector<ParamSpec> table = parameter_table(config);
    std::set<std::string> expected;
    for (const ParamSpec& spec : table) expected.insert(spec.name);
    check_no_extra(st.view.tensors(), expected, path);
    for (const ParamSpec& spec : table) check_float_tensor(st.view.at(spec.name), spec, path);

    // from_master copies (or quantizes) each tensor before asking for the next, so one scratch
    // buffer serves every conversion.
    std::vector<float> scratch;
    return ModelWeights::from_master(config, [&](const ParamSpec& spec) -> const float* {
        const TensorView& t = st.view.at(spec.name);
        if (t.dtype == DType::kF32 && is_aligned(t.data.data(), alignof(float)))
            return reinterpret_cast<const float*>(t.data.data());
        scratch.resize(static_cast<std::size_t>(t.numel));
        io::tensor_to_f32(t, scratch.data(), path);
        return scratch.data();
    });
}

LoadedModel load_model(const std::string& path, const LoadOptions& options) {
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    if (fs::is_directory(status)) return load_dir(path);
    check(fs::exists(status), ErrorKind::kIo, "{}: no such file or directory", path);
    if (!io::has_bitt_magic(path) && fs::path(path).extension() == ".safetensors")
        fail(ErrorKind::kInvalidArgument,
             "{}: a .safetensors file alone has no config; give its directory (config.json + "
             "model.safetensors)",
             path);
    return load_bitt(path, options);
}

ModelWeights load_model_weights(const std::string& path,
                                std::optional<std::string>* tokenizer_json) {
    LoadedModel m = load_model(path);
    if (tokenizer_json) *tokenizer_json = std::move(m.tokenizer_json);
    return std::move(m.weights);
}

void save_bitt(const std::string& path, const ModelWeights& weights,
               const std::optional<std::string>& tokenizer_json, DType float_dtype) {
    check(is_float(float_dtype), ErrorKind::kInvalidArgument,
          "{}: floating-point tensors cannot be stored as {}", path, io::dtype_name(float_dtype));
    check(weights.tensors.size() == weights.table.size(), ErrorKind::kInternal,
          "save_bitt: {} tensors for {} parameters", weights.tensors.size(), weights.table.size());
    io::BittToWrite c;
    c.config = weights.config;
    c.tokenizer_json = tokenizer_json;
    // One scale per tensor, in a vector that is never resized while the spans point into it.
    std::vector<float> scales(weights.table.size());
    for (std::size_t i = 0; i < weights.table.size(); ++i) {
        const ParamSpec& spec = weights.table[i];
        const TensorRef& ref = weights.tensors[i];
        if (spec.kind == ParamKind::kBitLinear) {
            const kernels::TernaryWeights& t = ref.ternary;
            check(t.codes && t.rows == spec.shape[0] && t.cols == spec.shape[1],
                  ErrorKind::kInvalidArgument, "save_bitt: tensor '{}' is not a packed {} weight",
                  spec.name, shape_text(spec.shape));
            c.ternary_shapes[spec.name] = spec.shape;
            c.tensors.push_back(
                {spec.name,
                 DType::kU8,
                 packed_shape(spec),
                 {t.codes, static_cast<std::size_t>(kernels::packed_bytes(t.rows, t.cols))},
                 {}});
            scales[i] = t.scale;
            c.tensors.push_back({scale_name(spec.name),
                                 DType::kF32,
                                 {1},
                                 {reinterpret_cast<const uint8_t*>(&scales[i]), 4},
                                 {}});
            continue;
        }
        const float* data = ref.f32;
        check(data != nullptr, ErrorKind::kInvalidArgument, "save_bitt: tensor '{}' has no data",
              spec.name);
        const std::size_t n = static_cast<std::size_t>(spec.numel());
        if (float_dtype == DType::kF32)
            c.tensors.push_back({spec.name,
                                 DType::kF32,
                                 spec.shape,
                                 {reinterpret_cast<const uint8_t*>(data), n * 4},
                                 {}});
        else
            c.tensors.push_back({spec.name, float_dtype, spec.shape, {}, [=](uint8_t* out) {
                                     io::f32_to_dtype(data, n, float_dtype, out);
                                 }});
    }
    io::write_bitt(path, std::move(c));
}

void save_safetensors_master(const std::string& path, const ModelConfig& config,
                             const std::function<const float*(const ParamSpec&)>& lookup,
                             DType dtype) {
    check(is_float(dtype), ErrorKind::kInvalidArgument, "{}: master weights cannot be stored as {}",
          path, io::dtype_name(dtype));
    std::vector<io::TensorToWrite> tensors;
    for (const ParamSpec& spec : parameter_table(config)) {
        // lookup runs when the writer reaches the tensor, so its pointer only needs to stay
        // valid until the next call.
        tensors.push_back({spec.name, dtype, spec.shape, {}, [=, &lookup](uint8_t* out) {
                               const float* data = lookup(spec);
                               check(data != nullptr, ErrorKind::kInvalidArgument,
                                     "{}: no data for tensor '{}'", path, spec.name);
                               io::f32_to_dtype(data, static_cast<std::size_t>(spec.numel()), dtype,
                                                out);
                           }});
    }
    io::write_safetensors(path, std::move(tensors), {{"format", "pt"}});
}

DequantScale dequantization_scale(float beta, int64_t n, int64_t nonzero) {
    if (nonzero <= 0 || n <= 0 || !(beta > 0.0f) || !std::isfinite(beta)) return {beta, beta, 0};
    // mean |W| as ternary_scale computes it: the double sum is exact (every magnitude is a
    // multiple of ulp(low) with at most 25 significant bits, and nonzero < 2^28), so it equals
    // (nonzero - k) * low + k * high.
    const double count = static_cast<double>(nonzero), total = static_cast<double>(n);
    auto mean = [&](float low, float high, int64_t k) {
        const double kd = static_cast<double>(k);
        return static_cast<float>(((count - kd) * low + kd * high) / total);
    };
    // low: the largest float whose mean does not exceed beta (start from the real-valued answer
    // and step; the first guess is within an ulp or two).
    const float inf = std::numeric_limits<float>::infinity();
    float low = static_cast<float>(static_cast<double>(beta) * total / count);
    for (int i = 0; i < 64 && mean(low, low, 0) > beta; ++i) low = std::nextafter(low, 0.0f);
    for (int i = 0; i < 64 && mean(std::nextafter(low, inf), 0.0f, 0) <= beta; ++i)
        low = std::nextafter(low, inf);
    const float high = std::nextafter(low, inf);
    if (mean(low, high, 0) == beta) return {low, high, 0};
    // Raise k high values until the mean reaches beta: it grows by (high - low) / n per step,
    // which is at most one ulp of beta when nonzero >= 2, so some k lands on beta exactly.
    int64_t lo = 0, hi = nonzero;  // mean(k = lo) < beta <= mean(k = hi) (or no k does)
    while (hi - lo > 1) {
        const int64_t mid = lo + (hi - lo) / 2;
        (mean(low, high, mid) < beta ? lo : hi) = mid;
    }
    return {low, high, hi};
}

void save_safetensors_dequantized(const std::string& path, const ModelWeights& weights,
                                  DType dtype) {
    check(is_float(dtype), ErrorKind::kInvalidArgument, "{}: weights cannot be stored as {}", path,
          io::dtype_name(dtype));
    std::vector<io::TensorToWrite> tensors;
    for (std::size_t i = 0; i < weights.table.size(); ++i) {
        const ParamSpec& spec = weights.table[i];
        const TensorRef& ref = weights.tensors[i];
        const std::size_t n = static_cast<std::size_t>(spec.numel());
        std::function<void(uint8_t*)> produce;
        if (spec.kind == ParamKind::kBitLinear) {
            const kernels::TernaryWeights t = ref.ternary;
            check(t.codes != nullptr, ErrorKind::kInvalidArgument, "{}: tensor '{}' has no data",
                  path, spec.name);
            produce = [=](uint8_t* out) {
                std::vector<int8_t> q(n);
                kernels::unpack_ternary(t.codes, t.rows, t.cols, q.data());
                int64_t nonzero = 0;
                for (int8_t v : q) nonzero += v != 0;
                const DequantScale s =
                    dequantization_scale(t.scale, static_cast<int64_t>(n), nonzero);
                std::vector<float> w(n);
                int64_t high_left = s.high_count;
                for (std::size_t j = 0; j < n; ++j) {
                    if (q[j] == 0) continue;
                    const float magnitude = high_left-- > 0 ? s.high : s.low;
                    w[j] = q[j] > 0 ? magnitude : -magnitude;
                }
                io::f32_to_dtype(w.data(), n, dtype, out);
            };
        } else {
            const float* data = ref.f32;
            check(data != nullptr, ErrorKind::kInvalidArgument, "{}: tensor '{}' has no data", path,
                  spec.name);
            produce = [=](uint8_t* out) { io::f32_to_dtype(data, n, dtype, out); };
        }
        tensors.push_back({spec.name, dtype, spec.shape, {}, std::move(produce)});
    }
    io::write_safetensors(path, std::move(tensors), {{"format", "pt"}});
}

void save_model_dir(const std::string& dir, const ModelWeights& weights,
                    const std::optional<std::string>& tokenizer_json, DType dtype) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    check(!ec, ErrorKind::kIo, "{}: cannot create directory: {}", dir, ec.message());
    if (tokenizer_json) {
        nlohmann::json j = io::parse_json_checked(*tokenizer_json, "tokenizer.json");
        check(j.is_object(), ErrorKind::kInvalidArgument, "tokenizer.json: not a JSON object");
    }
    io::write_file_atomic((fs::path(dir) / "config.json").string(),
                          weights.config.to_json().dump(2) + "\n");
    save_safetensors_dequantized((fs::path(dir) / "model.safetensors").string(), weights, dtype);
    if (tokenizer_json)
        io::write_file_atomic((fs::path(dir) / "tokenizer.json").string(), *tokenizer_json);
}

}  // namespace bitttt
