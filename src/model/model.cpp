// Model: immutable weights (+ tokenizer) shared by sessions, and its identity hash.
#include <xxhash.h>

#include <mutex>
#include <nlohmann/json.hpp>

#include "bitttt/model.hpp"
#include "core/error.hpp"
#include "model/config.hpp"
#include "model/weights.hpp"

namespace bitttt {

struct Model::Impl {
    ModelWeights weights;
    std::shared_ptr<const Tokenizer> tokenizer;
    mutable std::once_flag hash_once;
    mutable uint64_t hash = 0;
};

Model::Model() : impl_(std::make_unique<Impl>()) {}
Model::~Model() = default;

std::shared_ptr<const Model> Model::from_weights(ModelWeights weights,
                                                 std::shared_ptr<const Tokenizer> tokenizer) {
    check(weights.layers.size() == static_cast<size_t>(weights.config.num_layers) &&
              weights.embed && weights.norm_f && weights.lm_head,
          ErrorKind::kInvalidArgument, "model: weights are incomplete (call link() first)");
    std::shared_ptr<Model> m(new Model());
    m->impl_->weights = std::move(weights);
    m->impl_->tokenizer = std::move(tokenizer);
    return m;
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
