// Session: construction (every buffer allocated once), the forward entry points, reset, state.
#include <algorithm>

#include "bitttt/model.hpp"
#include "core/error.hpp"
#include "model/model_impl.hpp"
#include "model/session_impl.hpp"

namespace bitttt {

Session::Impl::Impl(std::shared_ptr<const Model> m, int64_t chunk)
    : model(std::move(m)),
      config(model->config()),
      weights(model->weights()),
      max_chunk(chunk),
      sampler(model->config().vocab_size) {
    const ModelConfig& c = config;
    const int64_t C = max_chunk, D = c.hidden_dim, Dt = c.ttt_dim, M = c.mlp_dim;
    state_floats_per_layer = Dt * c.head_dim();  // heads x Dh x Dh
    layer_bytes = 0;
    for (const ParamSpec& spec : weights.table)
        if (spec.layer == 0 && spec.kind == ParamKind::kBitLinear)
            layer_bytes += kernels::packed_bytes(spec.shape[0], spec.shape[1]);
    states.resize(static_cast<size_t>(c.num_layers * state_floats_per_layer));
    auto rows = [C](int64_t n) { return static_cast<size_t>(C * n); };
    x.resize(rows(D));
    u.resize(rows(D));
    proj.resize(rows(D));
    ttt_in.resize(rows(3 * Dt));
    ttt_out.resize(rows(Dt));
    eta.resize(rows(c.ttt_heads));
    ones.resize(static_cast<size_t>(Dt));
    std::fill(ones.begin(), ones.end(), 1.0f);
    gate.resize(rows(M));
    up.resize(rows(M));
    // Quantized rows are padded to the packed column count and to 64 bytes (aligned SIMD loads).
    xq_stride = kernels::round_up(kernels::packed_cols(std::max({D, Dt, M})), 64);
    xq.resize(rows(xq_stride));
    act_scale.resize(static_cast<size_t>(C));
    logits.resize(static_cast<size_t>(c.vocab_size));
    const auto& placement = model->impl();
    if (placement.gpu) {
        gpu = std::make_unique<GpuSession>(*placement.gpu, max_chunk);
        gpu_layers = placement.gpu->layers();
    }
}

void Session::Impl::download_states() {
    if (!host_states_stale) return;
    gpu->download_states(states.data());
    host_states_stale = false;
}

void Session::Impl::upload_states() {
    if (!device_states_stale) return;
    gpu->upload_states(states.data());
    device_states_stale = false;
}

Session::Session(std::shared_ptr<const Model> model, int64_t max_chunk) {
    check(model != nullptr, ErrorKind::kInvalidArgument, "session: null model");
    check(max_chunk >= 1 && max_chunk <= 4096, ErrorKind::kInvalidArgument,
          "session: chunk size {} is not in [1, 4096]", max_chunk);
    impl_ = std::make_unique<Impl>(std::move(model), max_chunk);
}

Session::~Session() = default;
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;

std::span<const float> Session::forward(std::span<const int32_t> ids, std::span<float> all_logits) {
    Impl& s = *impl_;
    const int64_t V = s.config.vocab_size;
    const int64_t n = static_cast<int64_t>(ids.size());
    check(n > 0, ErrorKind::kInvalidArgument, "forward: no tokens");
    for (int32_t id : ids)
        check(id >= 0 && id < V, ErrorKind::kInvalidArgument,
              "forward: token id {} is out of range [0, {})", id, V);
    check(all_logits.empty() || static_cast<int64_t>(all_logits.size()) == n * V,
          ErrorKind::kDimensionMismatch, "forward: logits buffer holds {} floats, {} needed",
          all_logits.size(), n * V);
    for (int64_t start = 0; start < n; start += s.max_chunk) {
        const int64_t len = std::min(s.max_chunk, n - start);
        float* out = all_logits.empty() ? nullptr : all_logits.data() + start * V;
        s.forward_chunk(ids.data() + start, len, out);
    }
    return {s.logits.data(), static_cast<size_t>(V)};
}

std::span<const float> Session::forward_token(int32_t id) {
    return forward(std::span<const int32_t>(&id, 1));
}

std::span<const float> Session::last_logits() const {
    if (!impl_->has_logits) return {};
    return {impl_->logits.data(), impl_->logits.size()};
}

void Session::reset() {
    impl_->states.fill_zero();
    if (impl_->gpu) {
        impl_->gpu->zero_states();
        impl_->host_states_stale = impl_->device_states_stale = false;
    }
    impl_->position = 0;
    impl_->has_logits = false;
}

int64_t Session::position() const {
    return impl_->position;
}

std::span<const float> Session::state(int64_t layer) const {
    check(layer >= 0 && layer < impl_->config.num_layers, ErrorKind::kInvalidArgument,
          "session: layer {} is out of range", layer);
    if (layer < impl_->gpu_layers) impl_->download_states();
    const size_t n = static_cast<size_t>(impl_->state_floats_per_layer);
    return {impl_->states.data() + static_cast<size_t>(layer) * n, n};
}

std::span<float> Session::mutable_state(int64_t layer) {
    auto s = std::as_const(*this).state(layer);
    // The caller may write the host copy: it goes to the device before the next forward.
    if (layer < impl_->gpu_layers) impl_->device_states_stale = true;
    return {const_cast<float*>(s.data()), s.size()};
}

const Model& Session::model() const {
    return *impl_->model;
}
const std::shared_ptr<const Model>& Session::model_ptr() const {
    return impl_->model;
}

}  // namespace bitttt
