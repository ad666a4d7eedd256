#include "model/weights.hpp"

#include <cmath>
#include <cstring>

#include "core/aligned_buffer.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "io/safetensors.hpp"

namespace bitttt {
namespace {

// Owned storage for one tensor, kept alive through ModelWeights::storage.
template <typename T>
std::shared_ptr<AlignedBuffer<T>> make_buffer(int64_t n) {
    return std::make_shared<AlignedBuffer<T>>(static_cast<size_t>(n));
}

}  // namespace

ModelWeights ModelWeights::from_master(
    const ModelConfig& config, const std::function<const float*(const ParamSpec&)>& lookup) {
    ModelWeights w;
    w.config = config;
    w.table = parameter_table(config);
    w.tensors.resize(w.table.size());
    for (size_t i = 0; i < w.table.size(); ++i) {
        const ParamSpec& spec = w.table[i];
        const float* src = lookup(spec);
        check(src != nullptr, ErrorKind::kFormat, "missing tensor '{}'", spec.name);
        if (spec.kind == ParamKind::kBitLinear) {
            const int64_t rows = spec.shape[0], cols = spec.shape[1];
            auto codes = make_buffer<uint8_t>(kernels::packed_bytes(rows, cols));
            std::vector<int8_t> q(static_cast<size_t>(rows * cols));
            float beta = kernels::ternary_scale(src, rows * cols);
            kernels::quantize_ternary(src, rows * cols, beta, q.data());
            kernels::pack_ternary(q.data(), rows, cols, codes->data());
            w.tensors[i].ternary = {codes->data(), rows, cols, beta};
            w.storage.push_back(codes);
        } else {
            auto data = make_buffer<float>(spec.numel());
            std::memcpy(data->data(), src, static_cast<size_t>(spec.numel()) * sizeof(float));
            w.tensors[i].f32 = data->data();
            w.storage.push_back(data);
        }
    }
    w.link();
    return w;
}

ModelWeights ModelWeights::random(const ModelConfig& config, uint64_t seed) {
    Rng rng(seed);
    std::vector<float> scratch;
    return from_master(config, [&](const ParamSpec& spec) {
        scratch.resize(static_cast<size_t>(spec.numel()));
        if (spec.kind == ParamKind::kNorm) {
            for (auto& v : scratch) v = 1.0f;
        } else if (spec.kind == ParamKind::kBias) {
            for (auto& v : scratch) v = 0.0f;
        } else {
            const float std = 1.0f / std::sqrt(static_cast<float>(spec.shape.back()));
            for (auto& v : scratch) v = rng.normal() * std;
        }
        return scratch.data();
    });
}

void ModelWeights::link() {
    check(tensors.size() == table.size(), ErrorKind::kInternal, "weights: {} tensors for {} specs",
          tensors.size(), table.size());
    layers.assign(static_cast<size_t>(config.num_layers), LayerWeights{});
    for (size_t i = 0; i < table.size(); ++i) {
        const std::string& name = table[i].name;
        const TensorRef& t = tensors[i];
        if (table[i].layer < 0) {
            if (name == "embed.weight")
                embed = t.f32;
            else if (name == "norm_f.weight")
                norm_f = t.f32;
            else if (name == "lm_head.weight")
                lm_head = t.f32;
            continue;
        }
        LayerWeights& L = layers[static_cast<size_t>(table[i].layer)];
        std::string local = name.substr(name.find('.', 7) + 1);  // after "layers.{i}."
        if (local == "norm1.weight")
            L.norm1 = t.f32;
        else if (local == "norm2.weight")
            L.norm2 = t.f32;
        else if (local == "ttt.down.weight")
            L.ttt_down = t.ternary;
        else if (local == "ttt.up.weight")
            L.ttt_up = t.ternary;
        else if (local == "ttt.q.weight")
            L.ttt_q = t.ternary;
        else if (local == "ttt.k.weight")
            L.ttt_k = t.ternary;
        else if (local == "ttt.v.weight")
            L.ttt_v = t.ternary;
        else if (local == "ttt.o.weight")
            L.ttt_o = t.ternary;
        else if (local == "ttt.lr.weight")
            L.ttt_lr_weight = t.f32;
        else if (local == "ttt.lr.bias")
            L.ttt_lr_bias = t.f32;
        else if (local == "mlp.gate_proj.weight")
            L.gate_proj = t.ternary;
        else if (local == "mlp.up_proj.weight")
            L.up_proj = t.ternary;
        else if (local == "mlp.down_proj.weight")
            L.down_proj = t.ternary;
        else
            fail(ErrorKind::kInternal, "weights: no slot for tensor '{}'", name);
    }
    if (lm_head && !lm_head_bf16) {
        const int64_t n = config.vocab_size * config.hidden_dim;
        auto bf16 = make_buffer<uint16_t>(n);
        uint16_t* out = bf16->data();
        const float* in = lm_head;
        // 7B-class vocabularies have ~10^8 weights: convert on every core.
#pragma omp parallel for schedule(static) if (n >= (int64_t{1} << 20))
        for (int64_t i = 0; i < n; ++i) out[i] = io::f32_to_bf16(in[i]);
        lm_head_bf16 = out;
        storage.push_back(bf16);
    }
}

void ModelWeights::quantize_lm_head_int8() {
    check(lm_head != nullptr, ErrorKind::kInvalidArgument, "weights: no lm_head to quantize");
    const int64_t V = config.vocab_size, D = config.hidden_dim;
    auto q = make_buffer<int8_t>(V * kernels::int8_row_stride(D));
    auto scale = make_buffer<float>(V);
    auto row_sum = make_buffer<int32_t>(V);
    kernels::quantize_int8_rows(lm_head, V, D, q->data(), scale->data(), row_sum->data());
    lm_head_int8 = {q->data(), scale->data(), row_sum->data(), V, D};
    storage.push_back(q);
    storage.push_back(scale);
    storage.push_back(row_sum);
}

const TensorRef& ModelWeights::tensor(const std::string& name) const {
    for (size_t i = 0; i < table.size(); ++i)
        if (table[i].name == name) return tensors[i];
    fail(ErrorKind::kInvalidArgument, "model has no tensor '{}'", name);
}

}  // namespace bitttt
