// The forward pass of DESIGN.md §2 over a chunk of tokens (llama2.c's forward()): every
// projection is batched over the chunk's tokens, the TTT recurrence runs token after token.
#include <omp.h>

#include <cmath>
#include <cstring>

#include "kernels/cpu/activations.hpp"
#include "kernels/cpu/bf16_matmul.hpp"
#include "kernels/cpu/f32_matmul.hpp"
#include "kernels/cpu/norms.hpp"
#include "model/delta_rule.hpp"
#include "model/session_impl.hpp"

namespace bitttt {
namespace {

// f̂ = f / (‖f‖₂ + 1e-6) for each head (§2.2, §2.3): unit keys keep the TTT step stable.
constexpr float kTttNormEps = 1e-6f;

void l2_normalize_heads(float* x, int64_t n, int64_t stride, int64_t heads, int64_t dh) {
    for (int64_t t = 0; t < n; ++t) {
        for (int64_t h = 0; h < heads; ++h) {
            float* v = x + t * stride + h * dh;
            float ss = 0.0f;
            for (int64_t j = 0; j < dh; ++j) ss += v[j] * v[j];
            const float inv = 1.0f / (std::sqrt(ss) + kTttNormEps);
            for (int64_t j = 0; j < dh; ++j) v[j] *= inv;
        }
    }
}

// Below this much packed weight traffic per layer call (weight bytes x tokens), a layer's kernels
// run on the calling thread alone: at the default config a decode step's matrices are 4-64 KiB,
// a few microseconds of work, and waking a second thread for each of the ~5 products per layer
// costs as much as the product (and far more on a busy machine, where every fork/join waits for
// the other thread to be scheduled). lm_head (8 MiB of bf16 at the default config) stays
// parallel.
constexpr int64_t kSerialLayerBytes = int64_t{1} << 20;

// Sets OpenMP's thread count for the scope and restores it, also when an exception leaves.
class ThreadCountScope {
  public:
    explicit ThreadCountScope(bool serial) : saved_(omp_get_max_threads()), active_(serial) {
        if (active_) omp_set_num_threads(1);
    }
    ~ThreadCountScope() {
        if (active_) omp_set_num_threads(saved_);
    }
    ThreadCountScope(const ThreadCountScope&) = delete;
    ThreadCountScope& operator=(const ThreadCountScope&) = delete;

  private:
    int saved_;
    bool active_;
};

}  // namespace

void Session::Impl::prepare_input(const float* in, int64_t m, int64_t k, int64_t stride) {
    if (config.act_bits == 8) {
        kernels::quantize_activations(in, m, k, stride, xq.data(), xq_stride, act_scale.data());
    }
    in_x = in;
    in_stride = stride;
}

void Session::Impl::project(const kernels::TernaryWeights& w, int64_t m, float* y,
                            int64_t y_stride) {
    if (config.act_bits == 8)
        kernels::ternary_matmul(w, xq.data(), xq_stride, act_scale.data(), m, y, y_stride);
    else
        kernels::ternary_matmul_f32(w, in_x, in_stride, m, y, y_stride);
}

// §2.2: f = down(u); f̂ = f/‖f‖; z = W f̂ (before the update); W -= η (z − f̂) f̂ᵀ; out = up(z).
void Session::Impl::ttt_reconstruct(const LayerWeights& lw, float* state, int64_t n) {
    const int64_t Dt = config.ttt_dim, D = config.hidden_dim;
    float* f = ttt_in.data();
    project(lw.ttt_down, n, f, Dt);
    l2_normalize_heads(f, n, Dt, 1, Dt);
    const float eta_const = config.inner_lr;
    DeltaRuleScan scan;
    scan.w = state;
    scan.heads = 1;
    scan.head_dim = Dt;
    scan.tokens = n;
    scan.k = f;
    scan.k_stride = Dt;
    scan.v = f;
    scan.v_stride = Dt;
    scan.eta = &eta_const;
    scan.eta_stride = 0;
    scan.read_after_update = false;
    scan.out = ttt_out.data();
    scan.out_stride = Dt;
    delta_rule_scan(scan);
    prepare_input(ttt_out.data(), n, Dt, Dt);
    project(lw.ttt_up, n, proj.data(), D);
}

// §2.3: q, k, v = BitLinear(u); η = inner_lr · sigmoid(lr · u + b) per head; per head
// W -= η (W k̂ − v) k̂ᵀ, o = W q̂ (after the update); out = o_proj(RMSNorm(o) without weight).
void Session::Impl::ttt_delta(const LayerWeights& lw, float* state, int64_t n) {
    const int64_t Dt = config.ttt_dim, D = config.hidden_dim, H = config.ttt_heads;
    const int64_t dh = config.head_dim(), stride = 3 * Dt;
    float* q = ttt_in.data();
    float* k = q + Dt;
    float* v = q + 2 * Dt;
    project(lw.ttt_q, n, q, stride);
    project(lw.ttt_k, n, k, stride);
    project(lw.ttt_v, n, v, stride);
    // The step size reads the same (normalized, unquantized) input as the projections.
    kernels::f32_matmul(lw.ttt_lr_weight, H, D, u.data(), D, n, eta.data(), H);
    for (int64_t t = 0; t < n; ++t) {
        for (int64_t h = 0; h < H; ++h) {
            float& e = eta[static_cast<size_t>(t * H + h)];
            e = config.inner_lr / (1.0f + std::exp(-(e + lw.ttt_lr_bias[h])));
        }
    }
    l2_normalize_heads(q, n, stride, H, dh);
    l2_normalize_heads(k, n, stride, H, dh);
    DeltaRuleScan scan;
    scan.w = state;
    scan.heads = H;
    scan.head_dim = dh;
    scan.tokens = n;
    scan.k = k;
    scan.k_stride = stride;
    scan.v = v;
    scan.v_stride = stride;
    scan.q = q;
    scan.q_stride = stride;
    scan.eta = eta.data();
    scan.eta_stride = H;
    scan.read_after_update = true;
    scan.out = ttt_out.data();
    scan.out_stride = Dt;
    delta_rule_scan(scan);
    float* o = ttt_out.data();
    kernels::rmsnorm(o, n, Dt, Dt, ones.data(), config.norm_eps, o, Dt);
    prepare_input(o, n, Dt, Dt);
    project(lw.ttt_o, n, proj.data(), D);
}

void Session::Impl::forward_chunk(const int32_t* ids, int64_t n, float* all_logits) {
    const int64_t D = config.hidden_dim;
    if (gpu) {
        upload_states();
        const bool head_on_gpu = gpu_layers == config.num_layers;
        gpu->forward(ids, n, head_on_gpu ? nullptr : x.data(), logits.data(),
                     head_on_gpu ? all_logits : nullptr);
        host_states_stale = true;
        if (!head_on_gpu) {
            forward_layers(gpu_layers, n);
            forward_head(n, all_logits);
        }
    } else {
        float* xs = x.data();
        for (int64_t t = 0; t < n; ++t)
            std::memcpy(xs + t * D, weights.embed + static_cast<int64_t>(ids[t]) * D,
                        static_cast<size_t>(D) * sizeof(float));
        forward_layers(0, n);
        forward_head(n, all_logits);
    }
    position += n;
    has_logits = true;
}

void Session::Impl::forward_layers(int64_t first, int64_t n) {
    const ModelConfig& c = config;
    const int64_t D = c.hidden_dim, M = c.mlp_dim;
    const float eps = c.norm_eps;
    float* xs = x.data();
    ThreadCountScope scope(n * layer_bytes < kSerialLayerBytes);
    for (int64_t l = first; l < c.num_layers; ++l) {
        const LayerWeights& lw = weights.layers[static_cast<size_t>(l)];
        float* state = states.data() + l * state_floats_per_layer;
        // h = x + TTT(RMSNorm(x; norm1))
        kernels::rmsnorm(xs, n, D, D, lw.norm1, eps, u.data(), D);
        prepare_input(u.data(), n, D, D);
        if (c.ttt_rule == TttRule::kReconstruct)
            ttt_reconstruct(lw, state, n);
        else
            ttt_delta(lw, state, n);
        for (int64_t i = 0; i < n * D; ++i) xs[i] += proj[static_cast<size_t>(i)];
        // x = h + down(silu(gate(u)) * up(u)), u = RMSNorm(h; norm2)
        kernels::rmsnorm(xs, n, D, D, lw.norm2, eps, u.data(), D);
        prepare_input(u.data(), n, D, D);
        project(lw.gate_proj, n, gate.data(), M);
        project(lw.up_proj, n, up.data(), M);
        kernels::silu_mul(gate.data(), up.data(), n * M, gate.data());
        prepare_input(gate.data(), n, M, M);
        project(lw.down_proj, n, proj.data(), D);
        for (int64_t i = 0; i < n * D; ++i) xs[i] += proj[static_cast<size_t>(i)];
    }
}

// logits = lm_head(RMSNorm(x; norm_f)), for the last token or for all of them (lm_head in bf16,
// weights.hpp).
void Session::Impl::forward_head(int64_t n, float* all_logits) {
    const int64_t D = config.hidden_dim, V = config.vocab_size;
    const float eps = config.norm_eps;
    float* xs = x.data();
    if (all_logits) {
        kernels::rmsnorm(xs, n, D, D, weights.norm_f, eps, u.data(), D);
        kernels::bf16_matmul(weights.lm_head_bf16, V, D, u.data(), D, n, all_logits, V);
        std::memcpy(logits.data(), all_logits + (n - 1) * V,
                    static_cast<size_t>(V) * sizeof(float));
    } else {
        kernels::rmsnorm(xs + (n - 1) * D, 1, D, D, weights.norm_f, eps, u.data(), D);
        kernels::bf16_matmul(weights.lm_head_bf16, V, D, u.data(), D, 1, logits.data(), V);
    }
}

}  // namespace bitttt
