// The forward pass of DESIGN.md §2 over a chunk of tokens (llama2.c's forward()): every
// projection is batched over the chunk's tokens, the TTT recurrence runs token after token.
//
// Threads: the whole chunk runs in one OpenMP region (core/team.hpp). Every step below is written
// for a Team: each thread does its share of the step's rows (Team::share) and the threads meet
// (Team::sync) before a step that reads what others wrote. With a team of one (Team::solo(): one
// thread, or BITTTT_CPU_TEAM=0) the same code calls each kernel on all rows and the kernels fork
// their own OpenMP regions, one per kernel, as before the team. A row's result never depends on
// which thread computes it, so both give bit-identical logits (model_test checks).
#include <omp.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <tuple>

#include "kernels/cpu/activations.hpp"
#include "kernels/cpu/bf16_matmul.hpp"
#include "kernels/cpu/f32_matmul.hpp"
#include "kernels/cpu/norms.hpp"
#include "kernels/cpu/ternary.hpp"
#include "model/delta_rule.hpp"
#include "model/session_impl.hpp"

namespace bitttt {
namespace {

// f̂ = f / (‖f‖₂ + 1e-6) for each head (§2.2, §2.3): unit keys keep the TTT step stable.
constexpr float kTttNormEps = 1e-6f;

// Normalizes head h of token t (heads of dh floats, tokens `stride` apart).
void l2_normalize_head(float* x, int64_t t, int64_t h, int64_t stride, int64_t dh) {
    float* v = x + t * stride + h * dh;
    float ss = 0.0f;
    for (int64_t j = 0; j < dh; ++j) ss += v[j] * v[j];
    const float inv = 1.0f / (std::sqrt(ss) + kTttNormEps);
    for (int64_t j = 0; j < dh; ++j) v[j] *= inv;
}

// Rows [b, e) of a packed ternary matrix, b a multiple of kRowGroup: a window on the same codes
// (groups are stored one after another, packed_cols(cols) / 4 bytes per row).
kernels::TernaryWeights row_window(const kernels::TernaryWeights& w, int64_t b, int64_t e) {
    return {w.codes + b * (kernels::packed_cols(w.cols) / 4), e - b, w.cols, w.scale};
}

// BITTTT_CPU_TEAM=0 turns the team off (one OpenMP region per kernel), for comparisons.
std::atomic<bool>& cpu_team_flag() {
    static std::atomic<bool> on{[] {
        const char* v = std::getenv("BITTTT_CPU_TEAM");
        return !(v && std::strcmp(v, "0") == 0);
    }()};
    return on;
}

// Below this much packed weight traffic per layer call (weight bytes x tokens), a layer's kernels
// run on one thread: at the default config a decode step's matrices are 4-64 KiB, a few
// microseconds of work, and splitting each of the ~10 steps of a layer over threads costs as much
// as the step (and far more on a busy machine, where every meeting waits for the other thread to
// be scheduled). lm_head (8 MiB of bf16 at the default config) stays parallel.
constexpr int64_t kSerialLayerBytes = int64_t{1} << 20;
std::atomic<int64_t> serial_layer_bytes{kSerialLayerBytes};

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

void set_cpu_team(bool on) {
    cpu_team_flag().store(on);
}
bool cpu_team() {
    return cpu_team_flag().load();
}
int64_t set_serial_layer_bytes(int64_t bytes) {
    return serial_layer_bytes.exchange(bytes < 0 ? kSerialLayerBytes : bytes);
}

Session::Impl::BitInput Session::Impl::prepare_input(const Team& t, const float* in, int64_t m,
                                                     int64_t k, int64_t stride) {
    if (config.act_bits == 8) {
        const auto [b, e] = t.share(m);
        kernels::quantize_activations(in + b * stride, e - b, k, stride, xq.data() + b * xq_stride,
                                      xq_stride, act_scale.data() + b);
    }
    return {in, stride};
}

void Session::Impl::project(const Team& t, const kernels::TernaryWeights& w, BitInput in, int64_t m,
                            float* y, int64_t y_stride) {
    const auto [b, e] = t.share(w.rows, kernels::kRowGroup);
    const kernels::TernaryWeights rows = row_window(w, b, e);
    if (config.act_bits == 8)
        kernels::ternary_matmul(rows, xq.data(), xq_stride, act_scale.data(), m, y + b, y_stride);
    else
        kernels::ternary_matmul_f32(rows, in.x, in.stride, m, y + b, y_stride);
}

// x += proj over this thread's share of project's output rows (D of them): the rows it wrote.
void Session::Impl::add_residual(const Team& t, int64_t n) {
    const int64_t D = config.hidden_dim;
    const auto [b, e] = t.share(D, kernels::kRowGroup);
    float* xs = x.data();
    const float* p = proj.data();
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = b; j < e; ++j) xs[i * D + j] += p[i * D + j];
}

void Session::Impl::scan(const Team& t, DeltaRuleScan& s) {
    std::tie(s.row_begin, s.row_end) = t.share(s.heads * s.head_dim);
    delta_rule_scan(s);
}

// §2.2: f = down(u); f̂ = f/‖f‖; z = W f̂ (before the update); W -= η (z − f̂) f̂ᵀ; out = up(z).
void Session::Impl::ttt_reconstruct(const Team& t, const LayerWeights& lw, float* state, int64_t n,
                                    BitInput in) {
    const int64_t Dt = config.ttt_dim, D = config.hidden_dim;
    float* f = ttt_in.data();
    project(t, lw.ttt_down, in, n, f, Dt);
    t.sync();
    const auto [b, e] = t.share(n);
    for (int64_t i = b; i < e; ++i) l2_normalize_head(f, i, 0, Dt, Dt);
    t.sync();
    const float eta_const = config.inner_lr;
    DeltaRuleScan s;
    s.w = state;
    s.heads = 1;
    s.head_dim = Dt;
    s.tokens = n;
    s.k = f;
    s.k_stride = Dt;
    s.v = f;
    s.v_stride = Dt;
    s.eta = &eta_const;
    s.eta_stride = 0;
    s.read_after_update = false;
    s.out = ttt_out.data();
    s.out_stride = Dt;
    scan(t, s);
    t.sync();
    const BitInput z = prepare_input(t, ttt_out.data(), n, Dt, Dt);
    t.sync();
    project(t, lw.ttt_up, z, n, proj.data(), D);
}

// §2.3: q, k, v = BitLinear(u); η = inner_lr · sigmoid(lr · u + b) per head; per head
// W -= η (W k̂ − v) k̂ᵀ, o = W q̂ (after the update); out = o_proj(RMSNorm(o) without weight).
void Session::Impl::ttt_delta(const Team& t, const LayerWeights& lw, float* state, int64_t n,
                              BitInput in) {
    const int64_t Dt = config.ttt_dim, D = config.hidden_dim, H = config.ttt_heads;
    const int64_t dh = config.head_dim(), stride = 3 * Dt;
    float* q = ttt_in.data();
    float* k = q + Dt;
    float* v = q + 2 * Dt;
    project(t, lw.ttt_q, in, n, q, stride);
    project(t, lw.ttt_k, in, n, k, stride);
    project(t, lw.ttt_v, in, n, v, stride);
    // The step size reads the same (normalized, unquantized) input as the projections.
    const auto [h0, h1] = t.share(H);
    kernels::f32_matmul(lw.ttt_lr_weight + h0 * D, h1 - h0, D, u.data(), D, n, eta.data() + h0, H);
    t.sync();
    const auto [b, e] = t.share(n * H);
    for (int64_t i = b; i < e; ++i) {
        const int64_t tok = i / H, h = i % H;
        float& s = eta[static_cast<size_t>(i)];
        s = config.inner_lr / (1.0f + std::exp(-(s + lw.ttt_lr_bias[h])));
        l2_normalize_head(q, tok, h, stride, dh);
        l2_normalize_head(k, tok, h, stride, dh);
    }
    t.sync();
    DeltaRuleScan s;
    s.w = state;
    s.heads = H;
    s.head_dim = dh;
    s.tokens = n;
    s.k = k;
    s.k_stride = stride;
    s.v = v;
    s.v_stride = stride;
    s.q = q;
    s.q_stride = stride;
    s.eta = eta.data();
    s.eta_stride = H;
    s.read_after_update = true;
    s.out = ttt_out.data();
    s.out_stride = Dt;
    scan(t, s);
    t.sync();
    float* o = ttt_out.data();
    const auto [ob, oe] = t.share(n);
    kernels::rmsnorm(o + ob * Dt, oe - ob, Dt, Dt, ones.data(), config.norm_eps, o + ob * Dt, Dt);
    const BitInput on = prepare_input(t, o, n, Dt, Dt);
    t.sync();
    project(t, lw.ttt_o, on, n, proj.data(), D);
}

void Session::Impl::forward_chunk(const int32_t* ids, int64_t n, float* all_logits) {
    if (gpu) {
        upload_states();
        const bool head_on_gpu = gpu_layers == config.num_layers;
        gpu->forward(ids, n, head_on_gpu ? nullptr : x.data(), logits.data(),
                     head_on_gpu ? all_logits : nullptr);
        host_states_stale = true;
        if (!head_on_gpu) forward_cpu(nullptr, gpu_layers, n, all_logits);
    } else {
        forward_cpu(ids, 0, n, all_logits);
    }
    position += n;
    has_logits = true;
}

void Session::Impl::forward_cpu(const int32_t* ids, int64_t first, int64_t n, float* all_logits) {
    const int64_t D = config.hidden_dim;
    const bool serial_layers = n * layer_bytes < serial_layer_bytes.load();
    auto embed = [&](const Team& t) {
        if (!ids) return;  // x already holds the residual stream (from the GPU blocks)
        const auto [b, e] = t.share(n);
        for (int64_t i = b; i < e; ++i)
            std::memcpy(x.data() + i * D, weights.embed + static_cast<int64_t>(ids[i]) * D,
                        static_cast<size_t>(D) * sizeof(float));
    };
    // Small layers (serial_layers) run on this thread: then only the head is split, by the
    // per-kernel path's one region (bf16_matmul's dynamic chunks start at once, while the other
    // threads wake up), which a team would not improve.
    if (!cpu_team() || serial_layers || omp_get_max_threads() <= 1) {
        {
            ThreadCountScope scope(serial_layers);
            embed(Team::solo());
            forward_layers(Team::solo(), first, n);
        }
        forward_head(Team::solo(), n, all_logits);
        return;
    }
    run_team(omp_get_max_threads(), barrier, [&](const Team& t) {
        embed(t);
        t.sync();
        forward_layers(t, first, n);
        forward_head(t, n, all_logits);
    });
}

void Session::Impl::forward_layers(const Team& t, int64_t first, int64_t n) {
    const ModelConfig& c = config;
    const int64_t D = c.hidden_dim, M = c.mlp_dim;
    const float eps = c.norm_eps;
    float* xs = x.data();
    const auto [tb, te] = t.share(n);  // this thread's tokens in the row-wise steps
    for (int64_t l = first; l < c.num_layers; ++l) {
        const LayerWeights& lw = weights.layers[static_cast<size_t>(l)];
        float* state = states.data() + l * state_floats_per_layer;
        // h = x + TTT(RMSNorm(x; norm1))
        kernels::rmsnorm(xs + tb * D, te - tb, D, D, lw.norm1, eps, u.data() + tb * D, D);
        const BitInput u1 = prepare_input(t, u.data(), n, D, D);
        t.sync();
        if (c.ttt_rule == TttRule::kReconstruct)
            ttt_reconstruct(t, lw, state, n, u1);
        else
            ttt_delta(t, lw, state, n, u1);
        add_residual(t, n);
        t.sync();
        // x = h + down(silu(gate(u)) * up(u)), u = RMSNorm(h; norm2)
        kernels::rmsnorm(xs + tb * D, te - tb, D, D, lw.norm2, eps, u.data() + tb * D, D);
        const BitInput u2 = prepare_input(t, u.data(), n, D, D);
        t.sync();
        project(t, lw.gate_proj, u2, n, gate.data(), M);
        project(t, lw.up_proj, u2, n, up.data(), M);
        t.sync();
        // Elementwise over all n x M values, in shares of whole 16-float vectors (the SIMD
        // versions round their tail differently: the shares keep the vectors of one call).
        const auto [gb, ge] = t.share(n * M, 16);
        kernels::silu_mul(gate.data() + gb, up.data() + gb, ge - gb, gate.data() + gb);
        t.sync();
        const BitInput g = prepare_input(t, gate.data(), n, M, M);
        t.sync();
        project(t, lw.down_proj, g, n, proj.data(), D);
        add_residual(t, n);
        t.sync();
    }
}

// logits = lm_head(RMSNorm(x; norm_f)), for the last token or for all of them, with the lm_head
// the model was placed with (bf16 by default, fp32, or int8 on int8-quantized RMSNorm rows;
// DeviceOptions::lm_head). Each thread computes its share of the vocabulary's rows.
void Session::Impl::forward_head(const Team& t, int64_t n, float* all_logits) {
    const int64_t D = config.hidden_dim, V = config.vocab_size;
    const float eps = config.norm_eps;
    const LmHead kind = model->device_options().lm_head;
    float* xs = x.data();
    // The RMSNorm rows (and their int8 codes) of the tokens whose logits are wanted: all n, or
    // the last one (written to row 0 of u), each thread normalizing its share.
    const int64_t rows = all_logits ? n : 1;
    const auto [b, e] = t.share(rows);
    const int64_t first = all_logits ? 0 : n - 1;
    kernels::rmsnorm(xs + (first + b) * D, e - b, D, D, weights.norm_f, eps, u.data() + b * D, D);
    if (kind == LmHead::kInt8)
        kernels::quantize_activations(u.data() + b * D, e - b, D, D, xq.data() + b * xq_stride,
                                      xq_stride, act_scale.data() + b);
    t.sync();
    const auto [vb, ve] = t.share(V, 16);
    float* out = (all_logits ? all_logits : logits.data()) + vb;
    switch (kind) {
        case LmHead::kBf16:
            kernels::bf16_matmul(weights.lm_head_bf16 + vb * D, ve - vb, D, u.data(), D, rows, out,
                                 V);
            break;
        case LmHead::kF32:
            kernels::f32_matmul(weights.lm_head + vb * D, ve - vb, D, u.data(), D, rows, out, V);
            break;
        case LmHead::kInt8: {
            const kernels::Int8Weights& h = weights.lm_head_int8;
            const kernels::Int8Weights window = {h.q + vb * kernels::int8_row_stride(D),
                                                 h.scale + vb, h.row_sum + vb, ve - vb, D};
            kernels::int8_matmul(window, xq.data(), xq_stride, act_scale.data(), rows, out, V);
            break;
        }
    }
    if (all_logits) {
        t.sync();
        if (t.id == 0)
            std::memcpy(logits.data(), all_logits + (n - 1) * V,
                        static_cast<size_t>(V) * sizeof(float));
    }
}

}  // namespace bitttt
