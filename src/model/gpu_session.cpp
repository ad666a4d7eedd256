// GpuSession: the forward pass of DESIGN.md §2 on the GPU for the blocks a GpuModel holds, over a
// chunk of tokens: projections batched (dp4a GEMM; the GEMV for one token), the TTT recurrence
// token after token inside one scan kernel per layer, and one CUDA graph per decode token. A
// `reconstruct` decode token runs 5 kernels per block: GEMVs that quantize their float input on
// the fly from statistics their producers publish (gemv_float.hpp), no norm/quantize kernels.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/error.hpp"
#include "model/gpu_model.hpp"

#if BITTTT_HAS_CUDA
#include "kernels/cuda/gemv_float.hpp"
#include "kernels/cuda/kernels.hpp"
#include "kernels/cuda/model_kernels.hpp"
#include "model/gpu_model_impl.hpp"
#endif

namespace bitttt {

#if BITTTT_HAS_CUDA

namespace {

// BITTTT_CUDA_NO_GRAPH=1 launches a decode token's kernels one by one (for measuring the graph).
bool graphs_enabled() {
    static const bool enabled = [] {
        const char* v = std::getenv("BITTTT_CUDA_NO_GRAPH");
        return v == nullptr || v[0] == '\0' || v[0] == '0';
    }();
    return enabled;
}

// BITTTT_CUDA_NO_FUSED=1 runs a decode token's norms/quantizations as separate kernels instead of
// inside the GEMVs that read them (ternary_gemv_fused), for measuring the fusion.
bool fusion_enabled() {
    static const bool enabled = [] {
        const char* v = std::getenv("BITTTT_CUDA_NO_FUSED");
        return v == nullptr || v[0] == '\0' || v[0] == '0';
    }();
    return enabled;
}

// BITTTT_CUDA_NO_CHAIN=1 runs a `reconstruct` decode token with separate norm/quantize kernels
// (or the D <= 1024 fusion) instead of the on-the-fly GEMVs, for measuring them.
bool chain_enabled() {
    static const bool enabled = [] {
        const char* v = std::getenv("BITTTT_CUDA_NO_CHAIN");
        return v == nullptr || v[0] == '\0' || v[0] == '0';
    }();
    return enabled;
}

size_t floats(int64_t n) {
    return static_cast<size_t>(n) * sizeof(float);
}

}  // namespace

struct GpuSession::Impl {
    const GpuModel::Impl& m;
    const ModelConfig& c;
    int64_t max_chunk;
    int64_t state_floats;  // per layer: heads x Dh x Dh
    cuda::Stream stream;
    cuda::DeviceBuffer states, ids, x, u, ttt_in, ttt_out, eta, gate, up, q, scale, sum, logits;
    cuda::DeviceBuffer all_logits;  // [max_chunk, V], allocated on first use
    cuda::QuantizedActivations acts;
    // Row statistics of the on-the-fly decode chain: sum-of-squares partials of x for norm1 and
    // norm2, and per block 4 absmax keys (x for norm1, z, x for norm2, the SwiGLU output).
    int64_t row_groups = 0;
    cuda::DeviceBuffer partials, keys;
    cuda::Graph decode_graph;
    bool graph_broken = false;  // capture failed once: launch decode tokens one by one

    Impl(const GpuModel::Impl& model, int64_t chunk)
        : m(model), c(model.config), max_chunk(chunk), state_floats(c.ttt_dim * c.head_dim()) {
        const int64_t C = max_chunk, D = c.hidden_dim, Dt = c.ttt_dim, M = c.mlp_dim;
        states = cuda::DeviceBuffer(floats(m.layers * state_floats));
        states.fill_bytes(0);
        ids = cuda::DeviceBuffer(static_cast<size_t>(C) * sizeof(int32_t));
        x = cuda::DeviceBuffer(floats(C * D));
        u = cuda::DeviceBuffer(floats(C * D));
        ttt_in = cuda::DeviceBuffer(floats(C * 3 * Dt));
        ttt_out = cuda::DeviceBuffer(floats(C * Dt));
        eta = cuda::DeviceBuffer(floats(C * c.ttt_heads));
        gate = cuda::DeviceBuffer(floats(C * M));
        up = cuda::DeviceBuffer(floats(C * M));
        const int64_t q_stride = kernels::packed_cols(std::max({D, Dt, M}));
        q = cuda::DeviceBuffer(static_cast<size_t>(C * q_stride));
        scale = cuda::DeviceBuffer(floats(C));
        sum = cuda::DeviceBuffer(static_cast<size_t>(C) * sizeof(int32_t));
        if (m.has_head) logits = cuda::DeviceBuffer(floats(c.vocab_size));
        acts = {q.as<int8_t>(), q_stride, scale.as<float>(), sum.as<int32_t>()};
        row_groups = (D + 15) / 16;
        partials = cuda::DeviceBuffer(static_cast<size_t>(2 * row_groups) * sizeof(double));
        keys = cuda::DeviceBuffer(static_cast<size_t>(4 * std::max<int64_t>(m.layers, 1)) *
                                  sizeof(uint64_t));
    }

    // The on-the-fly chain for a reconstruct decode token, where the D <= 1024 fusion is not
    // taken: on an H100 it made the 7B shape 26% faster than separate norm kernels (777 vs 618
    // tokens/s) but D = 256 5% slower than the fusion (7000 vs 7349), bench/RESULTS.md.
    bool chain(int64_t n) const {
        return n == 1 && chain_enabled() && c.ttt_rule == TttRule::kReconstruct && m.layers > 0 &&
               !(fusion_enabled() && c.hidden_dim <= kFuseMaxHidden);
    }
    unsigned long long* key(int64_t l, int which) const {
        return keys.as<unsigned long long>() + 4 * l + which;
    }
    cuda::RowStats norm1_stats(int64_t l) const {
        return {partials.as<double>(), row_groups, key(l, 0)};
    }

    // One `reconstruct` block of a decode token in 5 kernels (gemv_float.hpp):
    //   f = ttt.down(q(RMSNorm(x; norm1)));  z = TTT step (publishes max|z|);
    //   x += ttt.up(q(z)) (publishes x's statistics for norm2);
    //   h = silu(gate(q(RMSNorm(x; norm2)))) * up(...) (publishes max|h|);
    //   x += down(q(h)) (publishes x's statistics for the next block's norm1).
    void chain_block(const GpuLayer& g, int64_t l) {
        const int64_t D = c.hidden_dim, Dt = c.ttt_dim, M = c.mlp_dim;
        float* xp = x.as<float>();
        float* f = ttt_in.as<float>();
        float* z = ttt_out.as<float>();
        float* h = gate.as<float>();
        const cuda::RowStats zs{nullptr, 0, key(l, 1)},
            x2{partials.as<double>() + row_groups, row_groups, key(l, 2)},
            hs{nullptr, 0, key(l, 3)};
        cuda::ternary_gemv_float(g.ttt_down, {xp, D, g.norm1, c.norm_eps, norm1_stats(l)}, f, false,
                                 {}, nullptr, stream);
        // The state was last written a token ago (ttt.down runs just before): prefetched.
        cuda::ttt_reconstruct_step(state(l), Dt, c.inner_lr, f, z, stream, zs.key, true);
        cuda::ternary_gemv_float(g.ttt_up, {z, Dt, nullptr, 0.0f, zs}, xp, true, x2, g.norm2,
                                 stream);
        cuda::ternary_gemv_swiglu(g.gate_proj, g.up_proj, {xp, D, g.norm2, c.norm_eps, x2}, h, hs,
                                  stream);
        const bool last = l + 1 == m.layers;
        cuda::ternary_gemv_float(g.down_proj, {h, M, nullptr, 0.0f, hs}, xp, true,
                                 last ? cuda::RowStats{} : norm1_stats(l + 1),
                                 last ? nullptr : m.layer[static_cast<size_t>(l + 1)].norm1,
                                 stream);
    }

    float* state(int64_t l) const { return states.as<float>() + l * state_floats; }

    // Whether a decode GEMV over rows of k values takes its input RMSNorm/quantization fused in.
    // Only for narrow models: on an H100 the fusion made decode 17% faster at D = 256 (fewer
    // kernels is what counts there) but 12% slower at D = 4096 and 13% at D = 8192 (every block
    // redoing the row's reductions delays its weight stream more than a separate kernel costs).
    bool fuse(int64_t k) const {
        return fusion_enabled() && c.hidden_dim <= kFuseMaxHidden && k <= cuda::kMaxFusedGemvCols;
    }
    static constexpr int64_t kFuseMaxHidden = 1024;

    void project(const kernels::TernaryWeights& w, int64_t n, float* y, int64_t y_stride,
                 bool accumulate) {
        cuda::ternary_matmul(w, acts, n, y, y_stride, accumulate, stream);
    }

    // §2.2: f = down(u); f̂ = f/‖f‖; z = W f̂ (before the update); W -= η (z − f̂) f̂ᵀ; x += up(z).
    void ttt_reconstruct(const GpuLayer& g, int64_t l, int64_t n) {
        const int64_t Dt = c.ttt_dim, D = c.hidden_dim;
        float* f = ttt_in.as<float>();
        if (n == 1 && fuse(D) && fuse(Dt)) {
            // Decode: RMSNorm + quantization inside the GEMVs, f̂ and the step in one kernel.
            float* xp = x.as<float>();
            cuda::ternary_gemv_fused(&g.ttt_down, &f, 1, xp, D, g.norm1, c.norm_eps, false, stream);
            cuda::ttt_reconstruct_step(state(l), Dt, c.inner_lr, f, ttt_out.as<float>(), stream);
            cuda::ternary_gemv_fused(&g.ttt_up, &xp, 1, ttt_out.as<float>(), Dt, nullptr, 0.0f,
                                     true, stream);
            return;
        }
        cuda::rmsnorm_quantize(x.as<float>(), n, D, D, g.norm1, c.norm_eps, acts, stream);
        project(g.ttt_down, n, f, Dt, false);
        if (n == 1) {  // decode: normalization and step fused in one kernel (kernels.hpp)
            cuda::ttt_reconstruct_step(state(l), Dt, c.inner_lr, f, ttt_out.as<float>(), stream);
            cuda::quantize_activations(ttt_out.as<float>(), 1, Dt, Dt, acts, stream);
            project(g.ttt_up, 1, x.as<float>(), D, true);
            return;
        }
        cuda::l2_normalize_heads(f, n, Dt, 1, Dt, stream);
        cuda::DeltaScanArgs scan;
        scan.w = state(l);
        scan.heads = 1;
        scan.head_dim = Dt;
        scan.tokens = n;
        scan.k = f;
        scan.k_stride = Dt;
        scan.v = f;
        scan.v_stride = Dt;
        scan.eta = m.inner_lr;
        scan.eta_stride = 0;
        scan.read_after_update = false;
        scan.out = ttt_out.as<float>();
        scan.out_stride = Dt;
        cuda::delta_rule_scan(scan, stream);
        cuda::quantize_activations(ttt_out.as<float>(), n, Dt, Dt, acts, stream);
        project(g.ttt_up, n, x.as<float>(), D, true);
    }

    // §2.3: q, k, v = BitLinear(u); η = inner_lr · sigmoid(lr · u + b) per head; per head
    // W -= η (W k̂ − v) k̂ᵀ, o = W q̂ (after the update); x += o_proj(RMSNorm(o) without weight).
    void ttt_delta(const GpuLayer& g, int64_t l, int64_t n) {
        const int64_t Dt = c.ttt_dim, D = c.hidden_dim, H = c.ttt_heads, dh = c.head_dim();
        const int64_t stride = 3 * Dt;
        float* qp = ttt_in.as<float>();
        float* kp = qp + Dt;
        float* vp = qp + 2 * Dt;
        // The step size reads the normalized, unquantized input: RMSNorm and quantization apart.
        cuda::rmsnorm(x.as<float>(), n, D, D, g.norm1, c.norm_eps, u.as<float>(), D, stream);
        const bool fused = n == 1 && fuse(D) && fuse(Dt);
        if (fused) {  // quantization inside the GEMV (bit-identical to the separate kernel)
            const kernels::TernaryWeights w[3] = {g.ttt_q, g.ttt_k, g.ttt_v};
            float* y[3] = {qp, kp, vp};
            cuda::ternary_gemv_fused(w, y, 3, u.as<float>(), D, nullptr, 0.0f, false, stream);
        } else if (n == 1) {
            cuda::quantize_activations(u.as<float>(), n, D, D, acts, stream);
            const kernels::TernaryWeights w[3] = {g.ttt_q, g.ttt_k, g.ttt_v};
            float* y[3] = {qp, kp, vp};
            cuda::ternary_gemv_batch(w, y, 3, acts, false, stream);
        } else {
            cuda::quantize_activations(u.as<float>(), n, D, D, acts, stream);
            project(g.ttt_q, n, qp, stride, false);
            project(g.ttt_k, n, kp, stride, false);
            project(g.ttt_v, n, vp, stride, false);
        }
        cuda::delta_step_sizes(g.lr_weight, g.lr_bias, H, D, u.as<float>(), n, c.inner_lr,
                               eta.as<float>(), stream);
        cuda::l2_normalize_heads(qp, n, stride, H, dh, stream);
        cuda::l2_normalize_heads(kp, n, stride, H, dh, stream);
        cuda::DeltaScanArgs scan;
        scan.w = state(l);
        scan.heads = H;
        scan.head_dim = dh;
        scan.tokens = n;
        scan.k = kp;
        scan.k_stride = stride;
        scan.v = vp;
        scan.v_stride = stride;
        scan.q = qp;
        scan.q_stride = stride;
        scan.eta = eta.as<float>();
        scan.eta_stride = H;
        scan.read_after_update = true;
        scan.out = ttt_out.as<float>();
        scan.out_stride = Dt;
        cuda::delta_rule_scan(scan, stream);
        if (fused) {
            float* xp = x.as<float>();
            cuda::ternary_gemv_fused(&g.ttt_o, &xp, 1, ttt_out.as<float>(), Dt, m.ones, c.norm_eps,
                                     true, stream);
            return;
        }
        cuda::rmsnorm_quantize(ttt_out.as<float>(), n, Dt, Dt, m.ones, c.norm_eps, acts, stream);
        project(g.ttt_o, n, x.as<float>(), D, true);
    }

    // x += down(silu(gate(u)) * up(u)), u = RMSNorm(x; norm2).
    void mlp(const GpuLayer& g, int64_t n) {
        const int64_t D = c.hidden_dim, M = c.mlp_dim;
        if (n == 1 && fuse(D)) {
            const kernels::TernaryWeights w[2] = {g.gate_proj, g.up_proj};
            float* y[2] = {gate.as<float>(), up.as<float>()};
            cuda::ternary_gemv_fused(w, y, 2, x.as<float>(), D, g.norm2, c.norm_eps, false, stream);
        } else if (n == 1) {
            cuda::rmsnorm_quantize(x.as<float>(), n, D, D, g.norm2, c.norm_eps, acts, stream);
            const kernels::TernaryWeights w[2] = {g.gate_proj, g.up_proj};
            float* y[2] = {gate.as<float>(), up.as<float>()};
            cuda::ternary_gemv_batch(w, y, 2, acts, false, stream);
        } else {
            cuda::rmsnorm_quantize(x.as<float>(), n, D, D, g.norm2, c.norm_eps, acts, stream);
            project(g.gate_proj, n, gate.as<float>(), M, false);
            project(g.up_proj, n, up.as<float>(), M, false);
        }
        cuda::silu_mul_quantize(gate.as<float>(), up.as<float>(), n, M, M, acts, stream);
        project(g.down_proj, n, x.as<float>(), D, true);
    }

    void dense_gemv(const float* in, float* out) {
        const int64_t V = c.vocab_size, D = c.hidden_dim;
        if (m.head_bf16)
            cuda::bf16_gemv(static_cast<const uint16_t*>(m.lm_head), V, D, in, out, stream);
        else
            cuda::f32_gemv(static_cast<const float*>(m.lm_head), V, D, in, out, stream);
    }

    // Every kernel of n tokens (ids already on the device): embedding, the GPU blocks, the head.
    void enqueue(int64_t n, bool every_token) {
        const int64_t D = c.hidden_dim, V = c.vocab_size;
        cuda::embed_lookup(m.embed, m.embed_bf16, D, ids.as<int32_t>(), n, x.as<float>(), stream);
        const bool on_the_fly = chain(n);
        if (on_the_fly)  // the embedding's statistics; zeroes the token's keys
            cuda::row_stats(x.as<float>(), D, m.layer[0].norm1, norm1_stats(0),
                            keys.as<unsigned long long>(), 4 * m.layers, stream);
        for (int64_t l = 0; l < m.layers; ++l) {
            const GpuLayer& g = m.layer[static_cast<size_t>(l)];
            if (on_the_fly) {
                chain_block(g, l);
                continue;
            }
            if (c.ttt_rule == TttRule::kReconstruct)
                ttt_reconstruct(g, l, n);
            else
                ttt_delta(g, l, n);
            mlp(g, n);
        }
        if (!m.has_head) return;
        if (every_token) {
            cuda::rmsnorm(x.as<float>(), n, D, D, m.norm_f, c.norm_eps, u.as<float>(), D, stream);
            for (int64_t t = 0; t < n; ++t)
                dense_gemv(u.as<float>() + t * D, all_logits.as<float>() + t * V);
        } else {
            cuda::rmsnorm(x.as<float>() + (n - 1) * D, 1, D, D, m.norm_f, c.norm_eps, u.as<float>(),
                          D, stream);
            dense_gemv(u.as<float>(), logits.as<float>());
        }
    }

    // One decode token: the recorded graph (captured on first use), or the kernels one by one.
    void enqueue_decode() {
        if (!graphs_enabled() || graph_broken) return enqueue(1, false);
        if (!decode_graph.ready()) {
            decode_graph.begin_capture(stream);
            try {
                enqueue(1, false);
            } catch (...) {
                decode_graph.abort_capture(stream);
                throw;
            }
            try {
                decode_graph.end_capture(stream);
            } catch (const Error&) {
                graph_broken = true;  // e.g. a driver without graph support: run without it
                return enqueue(1, false);
            }
        }
        decode_graph.launch(stream);
    }
};

GpuSession::GpuSession(const GpuModel& model, int64_t max_chunk)
    : impl_(std::make_unique<Impl>(model.impl(), max_chunk)) {}
GpuSession::~GpuSession() = default;

void GpuSession::forward(const int32_t* ids, int64_t n, float* host_x, float* logits,
                         float* all_logits) {
    Impl& s = *impl_;
    const int64_t D = s.c.hidden_dim, V = s.c.vocab_size;
    check(n >= 1 && n <= s.max_chunk, ErrorKind::kInternal, "CUDA: session: chunk of {} tokens", n);
    const bool every = all_logits != nullptr && s.m.has_head;
    if (every && s.all_logits.bytes() == 0)
        s.all_logits = cuda::DeviceBuffer(floats(s.max_chunk * V));
    cuda::copy_host_to_device(s.ids.data(), ids, static_cast<size_t>(n) * sizeof(int32_t),
                              s.stream);
    if (n == 1 && !every)
        s.enqueue_decode();
    else
        s.enqueue(n, every);
    if (!s.m.has_head) {
        cuda::copy_device_to_host(host_x, s.x.data(), floats(n * D), s.stream);
    } else if (every) {
        cuda::copy_device_to_host(all_logits, s.all_logits.data(), floats(n * V), s.stream);
    } else {
        cuda::copy_device_to_host(logits, s.logits.data(), floats(V), s.stream);
    }
    s.stream.synchronize();
    if (every) std::memcpy(logits, all_logits + (n - 1) * V, floats(V));
}

void GpuSession::download_states(float* host) const {
    cuda::copy_device_to_host(host, impl_->states.data(), impl_->states.bytes(), impl_->stream);
    impl_->stream.synchronize();
}

void GpuSession::upload_states(const float* host) {
    cuda::copy_host_to_device(impl_->states.data(), host, impl_->states.bytes(), impl_->stream);
    impl_->stream.synchronize();
}

void GpuSession::zero_states() {
    cuda::memset_device(impl_->states.data(), 0, impl_->states.bytes(), impl_->stream);
    impl_->stream.synchronize();
}

#else  // a build without the CUDA backend: GpuModel cannot exist, so neither can these

struct GpuSession::Impl {};
GpuSession::GpuSession(const GpuModel&, int64_t) {
    require_gpu("session");
}
GpuSession::~GpuSession() = default;
void GpuSession::forward(const int32_t*, int64_t, float*, float*, float*) {
    require_gpu("session");
}
void GpuSession::download_states(float*) const {
    require_gpu("session");
}
void GpuSession::upload_states(const float*) {
    require_gpu("session");
}
void GpuSession::zero_states() {
    require_gpu("session");
}

#endif

}  // namespace bitttt
