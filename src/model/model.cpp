// Model: immutable weights (+ tokenizer) shared by sessions, and its identity hash.
#include <xxhash.h>

#include <algorithm>
#include <mutex>
#include <nlohmann/json.hpp>

#include "bitttt/model.hpp"
#include "core/error.hpp"
#include "model/config.hpp"
#include "model/model_impl.hpp"
#include "model/weights.hpp"

namespace bitttt {

Device parse_device(std::string_view name) {
    if (name == "cpu") return Device::kCpu;
    if (name == "cuda" || name == "cuda:0") return Device::kCuda;
    fail(ErrorKind::kInvalidArgument, "device must be 'cpu' or 'cuda' (GPU 0), got '{}'", name);
}

LmHead parse_lm_head(std::string_view name) {
    if (name == "bf16") return LmHead::kBf16;
    if (name == "f32" || name == "fp32") return LmHead::kF32;
    if (name == "int8") return LmHead::kInt8;
    fail(ErrorKind::kInvalidArgument, "lm_head must be 'bf16', 'f32' or 'int8', got '{}'", name);
}

std::string_view lm_head_name(LmHead head) {
    switch (head) {
        case LmHead::kBf16:
            return "bf16";
        case LmHead::kF32:
            return "f32";
        case LmHead::kInt8:
            return "int8";
    }
    fail(ErrorKind::kInvalidArgument, "lm_head: unknown kind {}", static_cast<int>(head));
}

Model::Model() : impl_(std::make_unique<Impl>()) {}
Model::~Model() = default;

std::shared_ptr<const Model> Model::from_weights(ModelWeights weights,
                                                 std::shared_ptr<const Tokenizer> tokenizer,
                                                 const DeviceOptions& options) {
    check(weights.layers.size() == static_cast<size_t>(weights.config.num_layers) &&
              weights.embed && weights.norm_f && weights.lm_head && weights.lm_head_bf16,
          ErrorKind::kInvalidArgument, "model: weights are incomplete (call link() first)");
    DeviceOptions placement = options;
    const int64_t L = weights.config.num_layers;
    if (placement.device == Device::kCpu) {
        placement.gpu_layers = 0;
    } else {
        check(placement.gpu_layers >= -1, ErrorKind::kInvalidArgument,
              "model: gpu_layers must be -1 (all) or >= 0, got {}", placement.gpu_layers);
        placement.gpu_layers = placement.gpu_layers < 0 ? L : std::min(placement.gpu_layers, L);
        require_gpu("model");
        check(placement.gpu_layers == 0 || weights.config.act_bits == 8, ErrorKind::kUnsupported,
              "CUDA: model: models without int8 activations (act_bits = 0) run on the CPU only");
    }
    check(placement.lm_head == LmHead::kBf16 || placement.lm_head == LmHead::kF32 ||
              placement.lm_head == LmHead::kInt8,
          ErrorKind::kInvalidArgument, "model: unknown lm_head kind {}",
          static_cast<int>(placement.lm_head));
    check(placement.lm_head == LmHead::kBf16 || placement.gpu_layers < L, ErrorKind::kUnsupported,
          "model: the {} lm_head runs on the CPU; with every block on the GPU lm_head runs there "
          "(bf16, or fp32 with dense_bf16 off / --dense-f32)",
          lm_head_name(placement.lm_head));
    // Quantized once here (the weights are immutable from now on; sessions share them).
    if (placement.lm_head == LmHead::kInt8 && weights.lm_head_int8.rows == 0)
        weights.quantize_lm_head_int8();
    std::shared_ptr<Model> m(new Model());
    if (placement.gpu_layers > 0)
        m->impl_->gpu =
            std::make_shared<const GpuModel>(weights, placement.gpu_layers, placement.dense_bf16);
    m->impl_->weights = std::move(weights);
    m->impl_->tokenizer = std::move(tokenizer);
    m->impl_->device = placement;
    return m;
}

const DeviceOptions& Model::device_options() const {
    return impl_->device;
}

const ModelConfig& Model::config() const {
    return impl_->weights.config;
}
const ModelWeights& Model::weights() const {
    return impl_->weights;
}
const Tokenizer* Model::tokenizer() const {
    return impl_->tokenizer.get();
}

uint64_t Model::identity_hash() const {
    std::call_once(impl_->hash_once, [this] {
        const ModelWeights& w = impl_->weights;
        XXH3_state_t* state = XXH3_createState();
        check(state != nullptr, ErrorKind::kInternal, "model: cannot allocate a hash state");
        XXH3_64bits_reset(state);
        const std::string config = w.config.to_json().dump();
        XXH3_64bits_update(state, config.data(), config.size());
        for (size_t i = 0; i < w.table.size(); ++i) {
            const ParamSpec& spec = w.table[i];
            const TensorRef& t = w.tensors[i];
            XXH3_64bits_update(state, spec.name.data(), spec.name.size() + 1);  // with the NUL
            if (spec.kind == ParamKind::kBitLinear) {
                XXH3_64bits_update(state, &t.ternary.scale, sizeof(float));
                XXH3_64bits_update(
                    state, t.ternary.codes,
                    static_cast<size_t>(kernels::packed_bytes(t.ternary.rows, t.ternary.cols)));
            } else {
                XXH3_64bits_update(state, t.f32, static_cast<size_t>(spec.numel()) * sizeof(float));
            }
        }
        impl_->hash = XXH3_64bits_digest(state);
        XXH3_freeState(state);
    });
    return impl_->hash;
}

}  // namespace bitttt
