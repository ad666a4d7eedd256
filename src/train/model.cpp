// The training forward and backward of the whole model (see model.hpp). Reads top to bottom as
// DESIGN.md §2: embed, then per layer the TTT branch and the SwiGLU branch, then norm_f, lm_head
// and the cross-entropy; the backward walks the same steps in reverse.
#include "train/model.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <type_traits>
#include <utility>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "train/fast_ops.hpp"
#include "train/ops.hpp"
#include "train/ttt_bptt.hpp"

namespace bitttt::train {

ParamLayout::ParamLayout(const ModelConfig& config) : specs(parameter_table(config)) {
    for (const auto& s : specs) {
        offsets.push_back(total);
        total += (s.numel() + 15) / 16 * 16;
    }
}

int64_t ParamLayout::index_of(const std::string& name) const {
    for (size_t i = 0; i < specs.size(); ++i)
        if (specs[i].name == name) return static_cast<int64_t>(i);
    fail(ErrorKind::kInvalidArgument, "no parameter named '{}'", name);
}

namespace {

// Binds the named tensors of a parameter-shaped buffer (the one table decides the layout).
template <typename T>
ModelTensors<T> bind(const ParamLayout& layout, T* base, int64_t num_layers) {
    ModelTensors<T> m;
    m.layers.resize(static_cast<size_t>(num_layers));
    for (size_t i = 0; i < layout.specs.size(); ++i) {
        const ParamSpec& s = layout.specs[i];
        T* ptr = base + layout.offsets[i];
        if (s.layer < 0) {
            if (s.name == "embed.weight")
                m.embed = ptr;
            else if (s.name == "norm_f.weight")
                m.norm_f = ptr;
            else if (s.name == "lm_head.weight")
                m.lm_head = ptr;
            else
                fail(ErrorKind::kInternal, "unexpected parameter '{}'", s.name);
            continue;
        }
        LayerTensors<T>& l = m.layers[static_cast<size_t>(s.layer)];
        const std::string prefix = "layers." + std::to_string(s.layer) + ".";
        const std::string rest = s.name.substr(prefix.size());
        std::pair<const char*, T**> slots[] = {{"norm1.weight", &l.norm1},
                                               {"norm2.weight", &l.norm2},
                                               {"ttt.down.weight", &l.ttt_down},
                                               {"ttt.up.weight", &l.ttt_up},
                                               {"ttt.q.weight", &l.ttt_q},
                                               {"ttt.k.weight", &l.ttt_k},
                                               {"ttt.v.weight", &l.ttt_v},
                                               {"ttt.o.weight", &l.ttt_o},
                                               {"ttt.lr.weight", &l.ttt_lr_weight},
                                               {"ttt.lr.bias", &l.ttt_lr_bias},
                                               {"mlp.gate_proj.weight", &l.gate_proj},
                                               {"mlp.up_proj.weight", &l.up_proj},
                                               {"mlp.down_proj.weight", &l.down_proj}};
        bool found = false;
        for (auto& [name, slot] : slots)
            if (rest == name) {
                *slot = ptr;
                found = true;
            }
        check(found, ErrorKind::kInternal, "unexpected parameter '{}'", s.name);
    }
    return m;
}

// Hands out consecutive 16-element-aligned pieces of one buffer: a first pass with base = nullptr
// only counts.
template <typename T>
struct Carver {
    T* base = nullptr;
    int64_t used = 0;
    T* take(int64_t n) {
        T* p = base ? base + used : nullptr;
        used += (n + 15) / 16 * 16;
        return p;
    }
};

double now_seconds() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

}  // namespace

template <typename T>
TrainModel<T>::TrainModel(const ModelConfig& config) : config_(config), layout_(config) {
    config_.resolve_and_validate("training config");
    params.resize(static_cast<size_t>(layout_.total));
    grads.resize(static_cast<size_t>(layout_.total));
    qparams_.resize(static_cast<size_t>(layout_.total));
    p_ = bind(layout_, params.data(), config_.num_layers);
    g_ = bind(layout_, grads.data(), config_.num_layers);
    // The forward reads BitLinear weights from the quantized mirror and the rest from params.
    fwd_ = p_;
    ModelTensors<T> q = bind(layout_, qparams_.data(), config_.num_layers);
    for (size_t l = 0; l < fwd_.layers.size(); ++l) {
        auto &f = fwd_.layers[l], &ql = q.layers[l];
        f.ttt_down = ql.ttt_down, f.ttt_up = ql.ttt_up, f.ttt_q = ql.ttt_q, f.ttt_k = ql.ttt_k;
        f.ttt_v = ql.ttt_v, f.ttt_o = ql.ttt_o, f.gate_proj = ql.gate_proj;
        f.up_proj = ql.up_proj, f.down_proj = ql.down_proj;
    }
    // Packed ternary codes of every BitLinear weight (offsets stay multiples of 64 bytes).
    ternary_.resize(layout_.specs.size());
    int64_t packed_total = 0;
    for (size_t i = 0; i < layout_.specs.size(); ++i)
        if (layout_.specs[i].kind == ParamKind::kBitLinear) {
            const auto& shape = layout_.specs[i].shape;
            ternary_[i] = {nullptr, shape[0], shape[1], 0.0f};
            packed_total += kernels::packed_bytes(shape[0], shape[1]);
        }
    packed_.resize(static_cast<size_t>(packed_total));
    packed_total = 0;
    for (auto& t : ternary_)
        if (t.rows > 0) {
            t.codes = packed_.data() + packed_total;
            packed_total += kernels::packed_bytes(t.rows, t.cols);
        }
}

template <typename T>
bool TrainModel<T>::integer_products() const {
    return std::is_same_v<T, float> && quantize_weights && config_.act_bits == 8 &&
           bitlinear_path != BitLinearPath::kFakeQuant;
}

template <typename T>
void TrainModel<T>::quantize_input(T* out, const T* inp, int64_t N, int64_t C) {
    codes_of_ = nullptr;
    if constexpr (std::is_same_v<T, float>) {
        if (integer_products()) {
            act_quant_codes(out, codes_, inp, N, C);
            codes_of_ = out;
            return;
        }
    }
    act_quant_forward(out, inp, N, C, config_.act_bits);
}

template <typename T>
void TrainModel<T>::bitlinear_product(T* out, const T* inp_q, const T* weight_q, int64_t N,
                                      int64_t C, int64_t OC) {
    if constexpr (std::is_same_v<T, float>) {
        if (integer_products()) {
            check(codes_of_ == inp_q && codes_.rows == N && codes_.cols == C, ErrorKind::kInternal,
                  "bitlinear_product: the input's codes are not the last quantized ones");
            // The weight's parameter index: the last offset at or below its place in the mirror.
            const int64_t at = weight_q - qparams_.data();
            const auto it =
                std::upper_bound(layout_.offsets.begin(), layout_.offsets.end(), at) - 1;
            const kernels::TernaryWeights& w =
                ternary_[static_cast<size_t>(it - layout_.offsets.begin())];
            check(*it == at && w.rows == OC && w.cols == C, ErrorKind::kInternal,
                  "bitlinear_product: not a BitLinear weight of shape [{}, {}]", OC, C);
            train::bitlinear_forward(out, codes_, w, bitlinear_path);
            return;
        }
    }
    matmul_forward(out, inp_q, weight_q, static_cast<T*>(nullptr), N, C, OC, transpose_);
}

template <typename T>
bool TrainModel<T>::bf16_in_use() const {
    return std::is_same_v<T, float> && bf16_products &&
           bf16_kernel_available() == Bf16Kernel::kNative;
}

template <typename T>
void TrainModel<T>::linear_backward(T* dinp, T* dweight, const T* dout, const T* inp,
                                    const T* weight, int64_t N, int64_t C, int64_t OC,
                                    bool bitlinear) {
    if constexpr (std::is_same_v<T, float>) {
        if (bf16_in_use() && (!bitlinear || bf16_bitlinear_backward))
            return bf16_.backward(dinp, dweight, dout, inp, weight, N, C, OC);
    }
    matmul_backward(dinp, dweight, static_cast<T*>(nullptr), dout, inp, weight, N, C, OC);
}

template <typename T>
void TrainModel<T>::swiglu(T* out, const T* gate, const T* up, int64_t n) const {
    if constexpr (std::is_same_v<T, float>) {
        if (bf16_in_use()) return swiglu_forward_fast(out, gate, up, n);
    }
    swiglu_forward(out, gate, up, n);
}

template <typename T>
void TrainModel<T>::swiglu_grad(T* dgate, T* dup, const T* dout, const T* gate, const T* up,
                                int64_t n) const {
    if constexpr (std::is_same_v<T, float>) {
        if (bf16_in_use()) return swiglu_backward_fast(dgate, dup, dout, gate, up, n);
    }
    swiglu_backward(dgate, dup, dout, gate, up, n);
}

template <typename T>
void TrainModel<T>::init_random(uint64_t seed) {
    Rng rng(seed);
    const T residual_scale = T(1) / std::sqrt(T(2 * config_.num_layers));
    for (size_t i = 0; i < layout_.specs.size(); ++i) {
        const ParamSpec& s = layout_.specs[i];
        T* p = param(i);
        const int64_t n = s.numel();
        if (s.kind == ParamKind::kNorm) {
            for (int64_t j = 0; j < n; ++j) p[j] = T(1);
        } else if (s.kind == ParamKind::kBias) {
            for (int64_t j = 0; j < n; ++j) p[j] = T(0);
        } else {
            const bool to_residual = s.name.ends_with("ttt.up.weight") ||
                                     s.name.ends_with("ttt.o.weight") ||
                                     s.name.ends_with("down_proj.weight");
            const T std = T(0.02) * (to_residual ? residual_scale : T(1));
            for (int64_t j = 0; j < n; ++j) p[j] = std * static_cast<T>(rng.normal());
        }
    }
}

template <typename T>
void TrainModel<T>::allocate(int64_t B, int64_t T_len) {
    if (B == B_ && T_len == T_) return;
    const ModelConfig& c = config_;
    const int64_t N = B * T_len, D = c.hidden_dim, Dt = c.ttt_dim, M = c.mlp_dim;
    const int64_t V = c.vocab_size, H = c.ttt_heads, L = c.num_layers;
    const bool delta = c.ttt_rule == TttRule::kDelta;
    TttScanShape shape{B, T_len, H, Dt / H, !delta, 16};
    acts_.assign(static_cast<size_t>(L), LayerActs{});
    for (int pass = 0; pass < 2; ++pass) {
        Carver<T> a{pass == 0 ? nullptr : arena_.data(), 0};
        for (auto& l : acts_) {
            l.res = a.take(N * D);
            l.ln1 = a.take(N * D), l.ln1_rstd = a.take(N), l.ln1_q = a.take(N * D);
            if (!delta) {
                l.f = a.take(N * Dt), l.fhat = a.take(N * Dt), l.fnorm = a.take(N);
                l.z = a.take(N * Dt), l.z_q = a.take(N * Dt);
            } else {
                l.q = a.take(N * Dt), l.k = a.take(N * Dt), l.v = a.take(N * Dt);
                l.qhat = a.take(N * Dt), l.khat = a.take(N * Dt);
                l.qnorm = a.take(N * H), l.knorm = a.take(N * H);
                l.lr_logit = a.take(N * H), l.eta = a.take(N * H);
                l.y = a.take(N * Dt), l.o = a.take(N * Dt), l.o_rstd = a.take(N);
                l.o_q = a.take(N * Dt);
            }
            l.ckpt = a.take(shape.checkpoint_floats());
            l.h = a.take(N * D), l.ln2 = a.take(N * D), l.ln2_rstd = a.take(N);
            l.ln2_q = a.take(N * D);
            l.gate = a.take(N * M), l.up = a.take(N * M), l.swi = a.take(N * M);
            l.swi_q = a.take(N * M);
        }
        final_res_ = a.take(N * D);
        lnf_ = a.take(N * D), lnf_rstd_ = a.take(N);
        logits_ = a.take(N * V), losses_ = a.take(N);
        if (pass == 0) arena_.resize(static_cast<size_t>(a.used));

        Carver<T> s{pass == 0 ? nullptr : scratch_.data(), 0};
        transpose_ = s.take(std::max<int64_t>({M * D, V * D, Dt * D, H * D}));
        branch_ = s.take(N * D);
        dres_ = s.take(N * D), dln_ = s.take(N * D);
        dswi_ = s.take(N * M), dgate_ = s.take(N * M), dup_ = s.take(N * M);
        for (auto& d : dttt_) d = s.take(N * Dt);
        deta_ = s.take(N * H), dlr_ = s.take(N * H);
        if (pass == 0) scratch_.resize(static_cast<size_t>(s.used));
    }
    B_ = B, T_ = T_len;
}

template <typename T>
double TrainModel<T>::forward(const int32_t* inputs, const int32_t* targets, int64_t B,
                              int64_t T_len) {
    const ModelConfig& c = config_;
    check(B > 0 && T_len > 0, ErrorKind::kInvalidArgument, "forward: empty batch [{}, {}]", B,
          T_len);
    const int64_t N = B * T_len, D = c.hidden_dim, Dt = c.ttt_dim, M = c.mlp_dim;
    const int64_t V = c.vocab_size, H = c.ttt_heads;
    for (int64_t n = 0; n < N; ++n) {
        check(inputs[n] >= 0 && inputs[n] < V, ErrorKind::kInvalidArgument,
              "token id {} at position {} is outside the vocabulary of {}", inputs[n], n, V);
        check(!targets || (targets[n] >= 0 && targets[n] < V), ErrorKind::kInvalidArgument,
              "target id {} at position {} is outside the vocabulary of {}",
              targets ? targets[n] : 0, n, V);
    }
    check(std::is_same_v<T, float> || !bf16_products, ErrorKind::kInvalidArgument,
          "bf16 products need an fp32 model");
    allocate(B, T_len);
    inputs_.assign(inputs, inputs + N);
    if (targets) targets_.assign(targets, targets + N);
    have_targets_ = targets != nullptr;

    // Fake-quantize every BitLinear weight once per forward (§2.1, absmean per tensor).
    for (size_t i = 0; i < layout_.specs.size(); ++i) {
        if (layout_.specs[i].kind != ParamKind::kBitLinear) continue;
        T* dst = qparams_.data() + layout_.offsets[i];
        const int64_t n = layout_.specs[i].numel();
        if (quantize_weights) {
            const T beta = weight_quant_forward(dst, param(i), n);
            if constexpr (std::is_same_v<T, float>) {
                if (integer_products()) {
                    kernels::TernaryWeights& t = ternary_[i];
                    t.scale = beta;
                    uint8_t* codes = packed_.data() + (t.codes - packed_.data());
                    pack_weight_codes(codes, param(i), t.rows, t.cols, beta);
                }
            }
        } else {
            std::copy(param(i), param(i) + n, dst);
        }
    }

    const T eps = static_cast<T>(c.norm_eps), inner_lr = static_cast<T>(c.inner_lr);
    const bool delta = c.ttt_rule == TttRule::kDelta;
    const TttScanShape shape{B, T_len, H, Dt / H, !delta, 16};
    embedding_forward(acts_[0].res, inputs, p_.embed, N, D);
    for (size_t li = 0; li < acts_.size(); ++li) {
        LayerActs& a = acts_[li];
        const LayerTensors<T>& w = fwd_.layers[li];
        T* out = li + 1 < acts_.size() ? acts_[li + 1].res : final_res_;
        // h = x + TTT(RMSNorm(x; norm1))
        rmsnorm_forward(a.ln1, a.ln1_rstd, a.res, w.norm1, N, D, eps);
        quantize_input(a.ln1_q, a.ln1, N, D);
        if (!delta) {
            bitlinear_product(a.f, a.ln1_q, w.ttt_down, N, D, Dt);
            l2norm_forward(a.fhat, a.fnorm, a.f, N, Dt);
            const double s0 = now_seconds();
            ttt_scan_forward(a.z, a.ckpt, a.fhat, a.fhat, a.fhat, static_cast<T*>(nullptr),
                             inner_lr, shape);
            ttt_scan_seconds += now_seconds() - s0;
            quantize_input(a.z_q, a.z, N, Dt);
            bitlinear_product(branch_, a.z_q, w.ttt_up, N, Dt, D);
        } else {
            bitlinear_product(a.q, a.ln1_q, w.ttt_q, N, D, Dt);
            bitlinear_product(a.k, a.ln1_q, w.ttt_k, N, D, Dt);
            bitlinear_product(a.v, a.ln1_q, w.ttt_v, N, D, Dt);
            l2norm_forward(a.qhat, a.qnorm, a.q, N * H, Dt / H);
            l2norm_forward(a.khat, a.knorm, a.k, N * H, Dt / H);
            // η_t = inner_lr · σ(ttt.lr · x + b), from the unquantized normed input (fp linear).
            matmul_forward(a.lr_logit, a.ln1, w.ttt_lr_weight, w.ttt_lr_bias, N, D, H, transpose_);
            sigmoid_scale_forward(a.eta, a.lr_logit, N * H, inner_lr);
            const double s0 = now_seconds();
            ttt_scan_forward(a.y, a.ckpt, a.qhat, a.khat, a.v, a.eta, T(0), shape);
            ttt_scan_seconds += now_seconds() - s0;
            rmsnorm_forward(a.o, a.o_rstd, a.y, static_cast<T*>(nullptr), N, Dt, eps);
            quantize_input(a.o_q, a.o, N, Dt);
            bitlinear_product(branch_, a.o_q, w.ttt_o, N, Dt, D);
        }
        residual_forward(a.h, a.res, branch_, N * D);
        // x' = h + down(silu(gate(u)) · up(u)), u = RMSNorm(h; norm2)
        rmsnorm_forward(a.ln2, a.ln2_rstd, a.h, w.norm2, N, D, eps);
        quantize_input(a.ln2_q, a.ln2, N, D);
        bitlinear_product(a.gate, a.ln2_q, w.gate_proj, N, D, M);
        bitlinear_product(a.up, a.ln2_q, w.up_proj, N, D, M);
        swiglu(a.swi, a.gate, a.up, N * M);
        quantize_input(a.swi_q, a.swi, N, M);
        bitlinear_product(branch_, a.swi_q, w.down_proj, N, M, D);
        residual_forward(out, a.h, branch_, N * D);
    }
    // logits = lm_head(RMSNorm(x; norm_f)), then the cross-entropy
    rmsnorm_forward(lnf_, lnf_rstd_, final_res_, p_.norm_f, N, D, eps);
    bool done = false;
    if constexpr (std::is_same_v<T, float>) {
        if (bf16_in_use()) bf16_.forward(logits_, lnf_, p_.lm_head, N, D, V), done = true;
    }
    if (!done)
        matmul_forward(logits_, lnf_, p_.lm_head, static_cast<T*>(nullptr), N, D, V, transpose_);
    if (!targets) return 0.0;
    if constexpr (std::is_same_v<T, float>) {
        if (bf16_in_use()) return crossentropy_forward_fast(losses_, logits_, targets, N, V);
    }
    return crossentropy_forward(losses_, logits_, targets, N, V);
}

template <typename T>
void TrainModel<T>::backward() {
    check(have_targets_, ErrorKind::kInvalidArgument, "backward: the last forward had no targets");
    const ModelConfig& c = config_;
    const int64_t B = B_, N = B_ * T_, D = c.hidden_dim, Dt = c.ttt_dim, M = c.mlp_dim;
    const int64_t V = c.vocab_size, H = c.ttt_heads;
    const bool delta = c.ttt_rule == TttRule::kDelta;
    const TttScanShape shape{B, T_, H, Dt / H, !delta, 16};
    const T inner_lr = static_cast<T>(c.inner_lr);
    auto zero = [](T* p, int64_t n) { std::fill(p, p + n, T(0)); };
    T* const nul = nullptr;

    if constexpr (std::is_same_v<T, float>) bf16_.forget();
    // The mean loss: dlogits = (p − onehot) / N, written over the probabilities.
    crossentropy_backward(logits_, logits_, targets_.data(), N, V, T(1) / static_cast<T>(N));
    zero(dln_, N * D);
    linear_backward(dln_, g_.lm_head, logits_, lnf_, p_.lm_head, N, D, V, false);
    zero(dres_, N * D);
    rmsnorm_backward(dres_, g_.norm_f, dln_, final_res_, p_.norm_f, lnf_rstd_, N, D);

    for (int64_t li = static_cast<int64_t>(acts_.size()) - 1; li >= 0; --li) {
        const LayerActs& a = acts_[static_cast<size_t>(li)];
        const LayerTensors<T>& w = fwd_.layers[static_cast<size_t>(li)];
        const LayerTensors<T>& g = g_.layers[static_cast<size_t>(li)];
        // MLP branch; the straight-through estimator passes d(x_q) on as d(x).
        zero(dswi_, N * M);
        linear_backward(dswi_, g.down_proj, dres_, a.swi_q, w.down_proj, N, M, D, true);
        zero(dgate_, N * M), zero(dup_, N * M);
        swiglu_grad(dgate_, dup_, dswi_, a.gate, a.up, N * M);
        zero(dln_, N * D);
        linear_backward(dln_, g.gate_proj, dgate_, a.ln2_q, w.gate_proj, N, D, M, true);
        linear_backward(dln_, g.up_proj, dup_, a.ln2_q, w.up_proj, N, D, M, true);
        rmsnorm_backward(dres_, g.norm2, dln_, a.h, w.norm2, a.ln2_rstd, N, D);  // now dL/dh
        // TTT branch
        zero(dln_, N * D);
        if (!delta) {
            T *dz = dttt_[0], *dfhat = dttt_[1], *df = dttt_[2];
            zero(dz, N * Dt), zero(dfhat, N * Dt), zero(df, N * Dt);
            linear_backward(dz, g.ttt_up, dres_, a.z_q, w.ttt_up, N, Dt, D, true);
            const double s0 = now_seconds();
            ttt_scan_backward(dfhat, dfhat, dfhat, nul, dz, a.ckpt, a.fhat, a.fhat, a.fhat, nul,
                              inner_lr, shape);
            ttt_scan_seconds += now_seconds() - s0;
            l2norm_backward(df, dfhat, a.f, a.fnorm, N, Dt);
            linear_backward(dln_, g.ttt_down, df, a.ln1_q, w.ttt_down, N, D, Dt, true);
        } else {
            T *dout = dttt_[0], *dy = dttt_[1], *dqh = dttt_[2], *dkh = dttt_[3];
            T *dv = dttt_[4], *dq = dttt_[5], *dk = dttt_[6];
            for (T* p : dttt_) zero(p, N * Dt);
            zero(deta_, N * H), zero(dlr_, N * H);
            linear_backward(dout, g.ttt_o, dres_, a.o_q, w.ttt_o, N, Dt, D, true);
            rmsnorm_backward(dy, nul, dout, a.y, nul, a.o_rstd, N, Dt);
            const double s0 = now_seconds();
            ttt_scan_backward(dqh, dkh, dv, deta_, dy, a.ckpt, a.qhat, a.khat, a.v, a.eta, T(0),
                              shape);
            ttt_scan_seconds += now_seconds() - s0;
            l2norm_backward(dq, dqh, a.q, a.qnorm, N * H, Dt / H);
            l2norm_backward(dk, dkh, a.k, a.knorm, N * H, Dt / H);
            sigmoid_scale_backward(dlr_, deta_, a.lr_logit, N * H, inner_lr);
            matmul_backward(dln_, g.ttt_lr_weight, g.ttt_lr_bias, dlr_, a.ln1, w.ttt_lr_weight, N,
                            D, H);
            linear_backward(dln_, g.ttt_q, dq, a.ln1_q, w.ttt_q, N, D, Dt, true);
            linear_backward(dln_, g.ttt_k, dk, a.ln1_q, w.ttt_k, N, D, Dt, true);
            linear_backward(dln_, g.ttt_v, dv, a.ln1_q, w.ttt_v, N, D, Dt, true);
        }
        rmsnorm_backward(dres_, g.norm1, dln_, a.res, w.norm1, a.ln1_rstd, N, D);  // dL/dx
    }
    embedding_backward(g_.embed, dres_, inputs_.data(), N, D);
    if constexpr (std::is_same_v<T, float>) bf16_.forget();
    have_targets_ = false;  // the probabilities were overwritten
}

template class TrainModel<float>;
template class TrainModel<double>;

}  // namespace bitttt::train
