// The GPU training model (train_model.hpp). Reads top to bottom as src/train/model.cpp, op for op:
// the same activations, the same order of accumulation into gradients; products through cuBLAS,
// everything else through train_ops.hpp and the TTT scan through ttt_scan_train.hpp.
#include "kernels/cuda/train_model.hpp"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <deque>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "io/safetensors.hpp"
#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/int8_gemm.hpp"
#include "kernels/cuda/moment_code.hpp"
#include "kernels/cuda/train_lean_ops.hpp"
#include "kernels/cuda/train_ops.hpp"
#include "kernels/cuda/ttt_scan_train.hpp"
#include "train/ttt_bptt.hpp"

namespace bitttt::cuda {
namespace {

using detail::check_cuda;
using detail::raw;

void check_cublas(cublasStatus_t status, const char* what) {
    if (status == CUBLAS_STATUS_SUCCESS) return;
    fail(status == CUBLAS_STATUS_ALLOC_FAILED ? ErrorKind::kUnsupported : ErrorKind::kInternal,
         "CUDA: {}: cuBLAS {} ({})", what, cublasGetStatusName(status),
         cublasGetStatusString(status));
}

// What device bytes are for (memory_plan's items, in this order).
enum Cat {
    kCatParams,
    kCatGrads,
    kCatMoments,
    kCatQWeights,
    kCatSmall,
    kCatSaved,
    kCatCkpt,
    kCatScratch,
    kCatLogits,
    kCatBackward,
    kCatOther,
    kCatScanWs,
    kCatBlasWs,
    kCats
};
const char* const kCatNames[kCats] = {
    "parameters (fp32)",
    "gradients",
    "AdamW moments",
    "quantized weights (one layer; all with kept activations) + bf16 lm_head",
    "betas, decay bits, scalars",
    "saved activations (all layers)",
    "TTT scan checkpoints (all layers)",
    "recompute scratch (one layer)",
    "logits slice + bf16 logit gradient",
    "backward buffers",
    "other activations (ids, final norm, branch)",
    "TTT scan workspace",
    "cuBLAS workspace",
};

// cuBLAS's workspace, owned by the model so that it is counted (cuBLAS's own default on Hopper is
// 32 MiB). BITTTT_CUBLAS_WORKSPACE_MB overrides the size (benchmarks).
size_t blas_workspace_bytes() {
    static const size_t value = [] {
        const char* env = std::getenv("BITTTT_CUBLAS_WORKSPACE_MB");
        const int mb = env ? std::atoi(env) : 0;
        return static_cast<size_t>(mb > 0 ? mb : 8) << 20;
    }();
    return value;
}

// The forward products that run in int8 (GpuMemoryOptions::int8_forward), as a mask of kinds.
// Each kind pairs the kernels that write an int8 copy of the codes with the products that read
// it (i8_input(kind) on both sides), so any mask is consistent.
enum : int { kI8Ttt = 1, kI8GateUp = 2, kI8Down = 4, kI8All = 7 };
int int8_kinds(const ModelConfig& c, bool bf16, const GpuMemoryOptions& mem) {
    const int wanted = mem.int8_forward != kInt8ForwardAuto ? mem.int8_forward
                       : c.hidden_dim >= 1024               ? kI8All
                                                            : 0;
    if (!bf16 || (wanted & kI8All) == 0 || c.act_bits == 0) return 0;
    const int64_t D = c.hidden_dim, Dt = c.ttt_dim, M = c.mlp_dim;
    // Every BitLinear shape (K, OC) of a layer: D -> Dt, Dt -> D, D -> M, M -> D.
    if (!Int8Gemm::supported(1, D, Dt) || !Int8Gemm::supported(1, Dt, D) ||
        !Int8Gemm::supported(1, D, M) || !Int8Gemm::supported(1, M, D))
        return 0;
    static const int env = [] {
        const char* v = std::getenv("BITTTT_CUDA_INT8_FORWARD");
        return v ? std::clamp(std::atoi(v), 0, static_cast<int>(kI8All)) : kI8All;
    }();
    return wanted & kI8All & env;
}

// The weight-gradient overlap (GpuMemoryOptions::overlap_wgrad; bf16 products only): 0 off, 1 on
// with the main stream at the highest priority, 2 on at equal priorities. BITTTT_CUDA_OVERLAP in
// the environment (0, 1, 2) narrows it for comparisons.
int overlap_mode(const ModelConfig& c, bool bf16, const GpuMemoryOptions& mem) {
    // Only with kept activations (the throughput setting): with the memory-lean settings it cost
    // ~0.06 GB more than the plan's workspace (cuBLAS's own state for a second handle and stream;
    // the lean 1024/24 row measured 3.97 GB instead of 3.91). kOverlapAuto: where it was measured
    // faster (hidden_dim 1024; not measured at 256).
    const bool wanted =
        mem.overlap_wgrad == kOverlapAuto ? c.hidden_dim >= 1024 : mem.overlap_wgrad != 0;
    if (!bf16 || !wanted || !mem.keep_activations) return 0;
    static const int env = [] {
        const char* v = std::getenv("BITTTT_CUDA_OVERLAP");
        return v ? std::clamp(std::atoi(v), 0, 2) : 1;
    }();
    return env;
}

// SMs the overlap's large weight-gradient products aim at (cublasSetSmCountTarget; 0: all), so
// that the main stream's kernels find SMs free beside them (cuBLAS's Hopper kernels otherwise
// hold every SM until they end). BITTTT_CUDA_OVERLAP_SMS in the environment overrides it.
// 96 of the H100's 132 SMs: D=1024 steps 97.3 ms against 99.0 with all SMs, 99.2 with 116, 98.1
// with 64 (bench/RESULTS.md, "Weight gradients beside the backward").
constexpr int kOverlapSms = 96;
// Products with at least this many outputs count as large (the MLP's and lm_head's; the TTT
// projections' 1024 x 256 weight gradients take every SM, as without the overlap).
constexpr int64_t kOverlapLargeOutputs = int64_t{1} << 20;
int overlap_sms() {
    static const int value = [] {
        const char* v = std::getenv("BITTTT_CUDA_OVERLAP_SMS");
        return v ? std::max(std::atoi(v), 0) : kOverlapSms;
    }();
    return value;
}

// GpuMemoryOptions::bf16_dx, or BITTTT_CUDA_BF16_DX=1 in the environment (bf16 products only).
bool bf16_dx_on(bool bf16, const GpuMemoryOptions& mem) {
    static const bool env = [] {
        const char* v = std::getenv("BITTTT_CUDA_BF16_DX");
        return v && std::atoi(v) == 1;
    }();
    return bf16 && (mem.bf16_dx || env);
}

// Hands out 256-byte-aligned pieces of one device allocation; a first pass with base = nullptr
// only counts. Every piece is also counted under the category `cat` in by_cat (if given).
struct Carver {
    char* base = nullptr;
    size_t used = 0;
    int cat = kCatOther;
    int64_t* by_cat = nullptr;
    template <typename T>
    T* take(int64_t n) {
        T* p = base ? reinterpret_cast<T*>(base + used) : nullptr;
        const size_t bytes = (static_cast<size_t>(n) * sizeof(T) + 255) / 256 * 256;
        used += bytes;
        if (by_cat) by_cat[cat] += static_cast<int64_t>(bytes);
        return p;
    }
};

// A quantized BitLinear input: fp32 fake-quantized values (kFp32) or bf16 codes and the row
// scales γ/127 (kBf16).
struct Act {
    float* f = nullptr;
    uint16_t* codes = nullptr;
    float* scale = nullptr;
};

// Indices into the parameter table of one layer's tensors (-1: absent in this rule).
struct LayerIndex {
    int norm1 = -1, norm2 = -1, down = -1, up = -1, q = -1, k = -1, v = -1, o = -1;
    int lr_w = -1, lr_b = -1, gate = -1, mlp_up = -1, mlp_down = -1;
};

// One layer's BitLinear tensors: a run of the BitLinear list (betas, bl_offsets, bl_sizes from
// index `first`, `count` of them) spanning [base, base + span) of the flat parameter buffer.
struct LayerWeights {
    int first = 0, count = 0;
    int64_t base = 0, span = 0, max_size = 0;
};

std::vector<LayerWeights> layer_weights(const train::ParamLayout& L, int64_t num_layers) {
    std::vector<LayerWeights> out(static_cast<size_t>(num_layers));
    int index = 0;
    for (size_t i = 0; i < L.specs.size(); ++i) {
        const ParamSpec& s = L.specs[i];
        if (s.kind != ParamKind::kBitLinear) continue;
        check(s.layer >= 0 && s.layer < num_layers, ErrorKind::kInternal,
              "GPU training: BitLinear tensor {} outside the layers", s.name);
        LayerWeights& w = out[static_cast<size_t>(s.layer)];
        if (w.count == 0) w.first = index, w.base = L.offsets[i];
        check(w.first + w.count == index, ErrorKind::kInternal,
              "GPU training: the BitLinear tensors of layer {} are not consecutive", s.layer);
        ++w.count;
        w.span = L.offsets[i] + s.numel() - w.base;
        w.max_size = std::max(w.max_size, s.numel());
        ++index;
    }
    return out;
}

// Rows of fp32 logits held at once in bf16 mode (1024 rows x 16384 vocab = 64 MiB; each slice's
// product is still 1024 x V x D, large enough for the tensor cores).
constexpr int64_t kLogitRows = 1024;

// What one layer keeps from its forward for the backward.
struct LayerActs {
    float *res = nullptr, *ln1_rstd = nullptr;       // the block's input
    float *f = nullptr, *fnorm = nullptr;            // reconstruct: f before L2 norm
    Act z_q;                                         // reconstruct: quantized scan out
    float *q = nullptr, *k = nullptr, *v = nullptr;  // delta (before L2 norms)
    float *qnorm = nullptr, *knorm = nullptr, *lr_logit = nullptr, *eta = nullptr;
    float *y = nullptr, *o_rstd = nullptr;    // delta: scan output
    float* ckpt = nullptr;                    // TTT state checkpoints
    float *h = nullptr, *ln2_rstd = nullptr;  // the MLP branch's input (recompute_mlp: scratch)
    // SwiGLU inputs (recompute_mlp: scratch); bf16: the raw products of codes, which the SwiGLU
    // kernels rescale by ln2_q's row scale and the weights' β as they read them; gate_i32: they
    // hold the int32 of int8 products (as their last writer, mlp_products, made them).
    float *gate = nullptr, *up = nullptr;
    bool gate_i32 = false;
};

// Values a layer's forward makes and its backward needs, recomputed there from LayerActs by the
// same kernels (bit-identical): one set for all layers.
struct Scratch {
    float* ln1 = nullptr;  // normed block input in fp32 (delta rule's ttt.lr; fp32 products)
    float* ln2 = nullptr;  // normed MLP input in fp32 (fp32 products only)
    Act ln1_q, ln2_q, swi_q;
    float *fhat = nullptr, *z = nullptr;                   // reconstruct
    float *qhat = nullptr, *khat = nullptr, *o = nullptr;  // delta
    Act o_q;
    float *gate = nullptr, *up = nullptr;  // recompute_mlp: every layer's gate and up
};

train::TttScanShape scan_shape(const ModelConfig& c, int64_t B, int64_t T) {
    const bool delta = c.ttt_rule == TttRule::kDelta;
    const int64_t Dh = c.ttt_dim / c.ttt_heads;
    return {B, T, c.ttt_heads, Dh, !delta, ttt_scan_preferred_chunk(Dh)};
}

// The activation arena of batches [B, T]: carve() hands out every pointer (and counts the bytes
// per category on a pass with a null base).
struct Activations {
    int64_t B = 0, T = 0;
    std::vector<LayerActs> acts;
    Scratch sc;                 // the current layer's set
    std::vector<Scratch> kept;  // keep_activations: one set per layer (else empty)
    int32_t *inputs = nullptr, *targets = nullptr;
    float *final_res = nullptr, *lnf = nullptr, *lnf_rstd = nullptr, *logits = nullptr;
    float* losses = nullptr;
    int64_t logit_rows = 0;  // rows of `logits`
    // bf16 backward: a BitLinear's dout [N, OC] (OC = D or ttt_dim; the gate/up products read
    // their dout from dgate/dup) in bf16, plain (for dx) and scaled by the input's row scales
    // (for dW). With the overlap the scaled one has two slots (the weight-gradient product of
    // one slot may still run while the next is written); dout_scaled_bf is the current one.
    uint16_t *lnf_bf = nullptr, *dlogits_bf = nullptr, *dout_bf = nullptr,
             *dout_scaled_bf = nullptr;
    uint16_t* scaled_slot[2] = {};
    // int8 forward products: the int8 copy of the codes of one product input at a time. Each
    // copy is written by the quantizing kernel right before the products that read it and is
    // dead before the next is written (per layer: ln1 -> TTT projections, TTT output -> up/o,
    // ln2 -> gate/up, SwiGLU -> down, the next ln1), so one buffer holds them all.
    int8_t* codes8 = nullptr;
    float* branch = nullptr;
    float *dres = nullptr, *dln = nullptr, *dswi = nullptr, *dgate = nullptr, *dup = nullptr;
    float* dttt[7] = {};
    float *deta = nullptr, *dlr = nullptr;
    // bf16 gradients: the fp32 sum of an atomically accumulated gradient tensor (gstage) and the
    // batch's positions grouped by token for the embedding gradient (train_lean_ops.hpp).
    float* gstage = nullptr;
    int32_t *emb_order = nullptr, *emb_starts = nullptr, *emb_unique = nullptr;

    static Act take_act(Carver& a, bool bf16, int64_t N, int64_t C) {
        Act act;
        if (bf16) {
            act.codes = a.take<uint16_t>(N * C);
            act.scale = a.take<float>(N);
        } else {
            act.f = a.take<float>(N * C);
        }
        return act;
    }

    // Hands out every pointer for batches [B, T] (set B and T first); the rest is reset.
    void carve(const ModelConfig& c, bool bf16, const GpuMemoryOptions& mem, Carver& a) {
        const bool int8 = int8_kinds(c, bf16, mem) != 0;
        const bool recompute_mlp = mem.recompute_mlp;
        const int64_t b = B, t = T;
        *this = Activations{};
        B = b, T = t;
        const int64_t N = B * T, D = c.hidden_dim, Dt = c.ttt_dim, M = c.mlp_dim;
        const int64_t V = c.vocab_size, H = c.ttt_heads;
        const bool delta = c.ttt_rule == TttRule::kDelta;
        acts.assign(static_cast<size_t>(c.num_layers), LayerActs{});
        a.cat = kCatOther;
        inputs = a.take<int32_t>(N), targets = a.take<int32_t>(N);
        for (auto& l : acts) {
            a.cat = kCatSaved;
            l.res = a.take<float>(N * D), l.ln1_rstd = a.take<float>(N);
            if (!delta) {
                l.f = a.take<float>(N * Dt), l.fnorm = a.take<float>(N);
                l.z_q = take_act(a, bf16, N, Dt);
            } else {
                l.q = a.take<float>(N * Dt), l.k = a.take<float>(N * Dt);
                l.v = a.take<float>(N * Dt), l.qnorm = a.take<float>(N * H);
                l.knorm = a.take<float>(N * H), l.lr_logit = a.take<float>(N * H);
                l.eta = a.take<float>(N * H), l.y = a.take<float>(N * Dt);
                l.o_rstd = a.take<float>(N);
            }
            if (!recompute_mlp) l.h = a.take<float>(N * D);
            l.ln2_rstd = a.take<float>(N);
            if (!recompute_mlp) l.gate = a.take<float>(N * M), l.up = a.take<float>(N * M);
            a.cat = kCatCkpt;
            l.ckpt = a.take<float>(scan_shape(c, B, T).checkpoint_floats());
        }
        auto carve_scratch = [&](Scratch& s) {
            if (delta || !bf16) s.ln1 = a.take<float>(N * D);
            if (!bf16) s.ln2 = a.take<float>(N * D);
            s.ln1_q = take_act(a, bf16, N, D), s.ln2_q = take_act(a, bf16, N, D);
            s.swi_q = take_act(a, bf16, N, M);
            if (!delta) {
                s.fhat = a.take<float>(N * Dt), s.z = a.take<float>(N * Dt);
            } else {
                s.qhat = a.take<float>(N * Dt), s.khat = a.take<float>(N * Dt);
                s.o = a.take<float>(N * Dt), s.o_q = take_act(a, bf16, N, Dt);
            }
        };
        if (mem.keep_activations) {
            a.cat = kCatSaved;
            kept.resize(acts.size());
            for (Scratch& s : kept) carve_scratch(s);
            sc = kept[0];
        } else {
            a.cat = kCatScratch;
            carve_scratch(sc);
        }
        a.cat = kCatScratch;
        if (int8) codes8 = a.take<int8_t>(N * std::max(M, std::max(D, Dt)));
        if (recompute_mlp) {
            float* gate = a.take<float>(N * M);
            float* up = a.take<float>(N * M);
            float* h = a.take<float>(N * D);
            for (auto& l : acts) l.gate = gate, l.up = up, l.h = h;
        }
        a.cat = kCatOther;
        const bool grad16 = mem.grads == GradPrecision::kBf16;
        if (grad16) {
            emb_order = a.take<int32_t>(N), emb_starts = a.take<int32_t>(N + 1);
            emb_unique = a.take<int32_t>(N);
        }
        final_res = a.take<float>(N * D);
        lnf = a.take<float>(N * D), lnf_rstd = a.take<float>(N);
        branch = a.take<float>(N * D);
        // bf16: the fp32 logits exist only for a slice of rows at a time (the fused
        // cross-entropy turns each slice into its bf16 gradient at once).
        a.cat = kCatLogits;
        logit_rows = bf16 ? std::min<int64_t>(N, kLogitRows) : N;
        logits = a.take<float>(logit_rows * V), losses = a.take<float>(N);
        if (bf16) dlogits_bf = a.take<uint16_t>(N * V);
        a.cat = kCatBackward;
        if (bf16) {
            lnf_bf = a.take<uint16_t>(N * D);
            const int64_t widest = N * std::max(D, Dt);
            dout_bf = a.take<uint16_t>(widest);
            scaled_slot[0] = dout_scaled_bf = a.take<uint16_t>(widest);
            scaled_slot[1] = overlap_mode(c, bf16, mem) != 0 ? a.take<uint16_t>(widest) : nullptr;
        }
        dres = a.take<float>(N * D), dln = a.take<float>(N * D);
        dswi = a.take<float>(N * M), dgate = a.take<float>(N * M), dup = a.take<float>(N * M);
        for (int i = 0; i < (delta ? 7 : 3); ++i) dttt[i] = a.take<float>(N * Dt);
        if (delta) deta = a.take<float>(N * H), dlr = a.take<float>(N * H);
        if (grad16) gstage = a.take<float>(std::max(D, delta ? H * D : 0));
    }
};

// Doubles of the reduction scratch (norm_partial), used by the weight scales' partial sums at the
// start of a step (train_weight_beta) and the global gradient norm's at its end.
int64_t scratch_doubles(const train::ParamLayout& L, int64_t count, int64_t bitlinear_max) {
    return std::max(train_norm_partials(L.total),
                    train_weight_beta_partials(static_cast<int>(count), bitlinear_max));
}

// bf16 products with kept activations: every layer's ternary codes stay from the forward to the
// backward (2 bytes per BitLinear weight; the forward writes them, the backward no longer
// re-quantizes each layer). Otherwise one layer's codes at a time.
bool keep_codes(bool bf16, const GpuMemoryOptions& mem) {
    return bf16 && mem.keep_activations;
}

// Bytes of the buffers the constructor allocates, by category.
struct FixedSizes {
    size_t params = 0, grads = 0, moment = 0, moment_scales = 0, qweights = 0, qweights8 = 0,
           decay_bits = 0, lm_bf16 = 0, small = 0;
};

// Weight decay bits: one per 16 parameters (ParamLayout starts every tensor at a multiple of 16).
constexpr int kDecayShift = 4;
FixedSizes fixed_sizes(const ModelConfig& c, const train::ParamLayout& L, TrainPrecision precision,
                       const GpuMemoryOptions& mem) {
    const OptimizerState state = mem.moments;
    const bool bf16 = precision == TrainPrecision::kBf16;
    check(bf16 || mem.grads == GradPrecision::kFp32, ErrorKind::kInvalidArgument,
          "GPU training: bf16 gradients need the bf16 products (--gpu-precision bf16)");
    FixedSizes f;
    const size_t total = static_cast<size_t>(L.total);
    f.params = total * sizeof(float);
    f.grads = total * (mem.grads == GradPrecision::kBf16 ? sizeof(uint16_t) : sizeof(float));
    f.moment = total * (state == OptimizerState::kFp32   ? sizeof(float)
                        : state == OptimizerState::kBf16 ? sizeof(uint16_t)
                                                         : sizeof(uint8_t));
    if (state == OptimizerState::kInt8)
        f.moment_scales = static_cast<size_t>(train_moment_blocks(L.total)) * sizeof(float);
    int64_t span = 1, count = 0, bitlinear_max = 0;
    const std::vector<LayerWeights> lw = layer_weights(L, c.num_layers);
    for (const LayerWeights& w : lw)
        span = std::max(span, w.span), count += w.count,
        bitlinear_max = std::max(bitlinear_max, w.max_size);
    // keep_codes: the codes of every layer, laid out as their span of the flat buffer.
    const int64_t codes = keep_codes(bf16, mem) && !lw.empty()
                              ? lw.back().base + lw.back().span - lw.front().base
                              : span;
    f.qweights = static_cast<size_t>(codes) * (bf16 ? sizeof(uint16_t) : sizeof(float));
    if (int8_kinds(c, bf16, mem) != 0) f.qweights8 = static_cast<size_t>(span);  // int8 codes
    f.decay_bits = ((total >> kDecayShift) + 32) / 32 * sizeof(uint32_t);
    f.lm_bf16 = bf16 ? static_cast<size_t>(c.vocab_size * c.hidden_dim) * sizeof(uint16_t) : 0;
    const size_t n = static_cast<size_t>(std::max<int64_t>(count, 1));
    f.small = n * (sizeof(float) + 2 * sizeof(int64_t)) + 2 * sizeof(float) + 2 * sizeof(double) +
              static_cast<size_t>(scratch_doubles(L, count, bitlinear_max)) * sizeof(double);
    return f;
}

}  // namespace

struct GpuTrainModel::Impl : Activations {
    ModelConfig config;
    train::ParamLayout layout;
    TrainPrecision precision;
    GpuMemoryOptions mem;
    OptimizerState state;
    bool quantize = true;
    Stream stream;
    cublasHandle_t blas = nullptr;
    // The weight-gradient overlap (overlap_mode): the side stream, its cuBLAS handle and
    // workspace, and events: ready (the main stream's work so far, before each product issued
    // on the side), the scaled-dout slots free again, dgate/dup free again, and join (all of the
    // side's work so far, before the main stream reuses what it read).
    int overlap = 0;
    std::unique_ptr<Stream> wstream;
    cublasHandle_t wblas = nullptr;
    // The large products' handle on the same stream (with overlap_sms; shares the workspace,
    // the stream runs one product at a time).
    cublasHandle_t wblas_large = nullptr;
    DeviceBuffer wblas_ws;
    cudaEvent_t ev_ready = nullptr, ev_slot_free[2] = {}, ev_gu_free = nullptr, ev_join = nullptr;
    int slot = 0;

    DeviceBuffer params, grads, adam_m, adam_v, decay_bits;
    DeviceBuffer adam_ms, adam_vs;  // int8 moments: one scale per block of 256
    int64_t emb_unique_count = 0;   // bf16 gradients: distinct tokens of the batch
    // The BitLinear weights of ONE layer (`cur_layer`), fp32 fake-quantized (kFp32) or bf16
    // codes (kBf16), laid out as that layer's span of the flat buffer: quantize_layer(l) fills it
    // from the parameters and the betas of the forward, before the layer's forward and again
    // before its backward (the same codes both times).
    DeviceBuffer qweights;
    // int8 forward products: the same layer's ternary codes as int8 (int8_kinds: which products).
    DeviceBuffer qweights8;
    int i8_kinds = 0;
    std::unique_ptr<Int8Gemm> int8;
    DeviceBuffer betas, bl_offsets, bl_sizes, consts, scalars, norm_partial, lm_bf16, blas_ws;
    std::vector<int> beta_index;  // per spec: index into betas, -1 if not BitLinear
    std::vector<LayerWeights> layer_w;
    int cur_layer = -1;
    int bitlinear_count = 0;
    int64_t bitlinear_max = 0;
    int embed = -1, norm_f = -1, lm_head = -1;
    std::vector<LayerIndex> layers;

    // Activations (the Activations base) for the current [B, T].
    DeviceBuffer arena, workspace;
    bool have_targets = false;

    // Phase timing (set_phase_timing): events recorded between phases, summed per label.
    bool timing = false;
    std::vector<cudaEvent_t> events;
    std::vector<const char*> labels;
    size_t marks = 0;
    std::vector<std::pair<std::string, double>> phase_ms;
    // Per-op timing (BITTTT_CUDA_PROFILE=1 with phase timing on): an event after every kernel or
    // product, each op's time summed under its own label ("fwd ..."/"bwd ..."; products by shape).
    bool per_op = false;
    bool in_backward = false;
    std::deque<std::string> gemm_labels;  // stable storage for the products' labels

    Impl(const ModelConfig& c, TrainPrecision p, GpuMemoryOptions m)
        : config(c),
          layout(c),
          precision(p),
          mem(m),
          state(m.moments),
          stream(overlap_mode(c, p == TrainPrecision::kBf16, m) == 1
                     ? stream_priority_range().second
                     : 0) {}
    ~Impl() {
        if (wstream) cudaStreamSynchronize(static_cast<cudaStream_t>(wstream->handle()));
        if (blas) cublasDestroy(blas);
        if (wblas) cublasDestroy(wblas);
        if (wblas_large) cublasDestroy(wblas_large);
        for (cudaEvent_t e : events) cudaEventDestroy(e);
        for (cudaEvent_t e : {ev_ready, ev_slot_free[0], ev_slot_free[1], ev_gu_free, ev_join})
            if (e) cudaEventDestroy(e);
    }

    // The overlap's stream and event operations (no-ops without the overlap).
    void record_side(cudaEvent_t e) {
        if (overlap)
            check_cuda(cudaEventRecord(e, raw(*wstream)), "cudaEventRecord (weight gradients)");
    }
    void main_waits(cudaEvent_t e) {
        if (overlap)
            check_cuda(cudaStreamWaitEvent(raw(stream), e, 0),
                       "cudaStreamWaitEvent (weight gradients)");
    }
    // The handle of the next weight-gradient product (of `outputs` elements): the side's,
    // ordered after everything the main stream has been given so far (its inputs), or the main
    // one.
    cublasHandle_t wgrad_handle(int64_t outputs) {
        if (!overlap) return blas;
        check_cuda(cudaEventRecord(ev_ready, raw(stream)), "cudaEventRecord (weight gradients)");
        check_cuda(cudaStreamWaitEvent(raw(*wstream), ev_ready, 0),
                   "cudaStreamWaitEvent (weight gradients)");
        return wblas_large && outputs >= kOverlapLargeOutputs ? wblas_large : wblas;
    }
    // The main stream waits for every weight-gradient product issued so far.
    void join() {
        record_side(ev_join);
        main_waits(ev_join);
    }
    // The scaled-dout buffer for the next writer: the other slot, once the product that read it
    // last is done.
    uint16_t* next_scaled() {
        if (overlap) {
            slot ^= 1;
            dout_scaled_bf = scaled_slot[slot];
            main_waits(ev_slot_free[slot]);
        }
        return dout_scaled_bf;
    }

    // Ends the phase `label` (the time since the previous mark counts for it).
    void mark(const char* label) {
        if (!timing) return;
        if (marks == events.size()) {
            cudaEvent_t e;
            check_cuda(cudaEventCreate(&e), "cudaEventCreate");
            events.push_back(e);
            labels.push_back(nullptr);
        }
        check_cuda(cudaEventRecord(events[marks], raw(stream)), "cudaEventRecord");
        labels[marks++] = label;
    }
    void op(const char* label) {
        if (per_op) mark(label);
    }
    void op_gemm(cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k,
                 cudaDataType at) {
        if (!per_op || !timing) return;
        const std::string label =
            fmt::format("{} GEMM {}{} {}x{}x{} {}", in_backward ? "bwd" : "fwd",
                        ta == CUBLAS_OP_T ? 'T' : 'N', tb == CUBLAS_OP_T ? 'T' : 'N', m, n, k,
                        at == CUDA_R_16BF ? "bf16"
                        : at == CUDA_R_8I ? "int8"
                                          : "fp32");
        auto it = std::find(gemm_labels.begin(), gemm_labels.end(), label);
        if (it == gemm_labels.end()) it = gemm_labels.insert(gemm_labels.end(), label);
        mark(it->c_str());
    }
    void collect_marks() {
        if (!timing) return;
        stream.synchronize();
        for (size_t i = 1; i < marks; ++i) {
            float ms = 0;
            check_cuda(cudaEventElapsedTime(&ms, events[i - 1], events[i]), "cudaEventElapsedTime");
            auto it = std::find_if(phase_ms.begin(), phase_ms.end(),
                                   [&](const auto& p) { return p.first == labels[i]; });
            if (it == phase_ms.end())
                phase_ms.emplace_back(labels[i], ms);
            else
                it->second += ms;
        }
        marks = 0;
    }

    bool bf16() const { return precision == TrainPrecision::kBf16; }
    // The int8 copy of a product input for products of `kind` (nullptr: that kind runs in bf16,
    // or the weights are not quantized now). The quantizing kernel before those products writes
    // it; the products read it.
    int8_t* i8_input(int kind) const { return quantize && (i8_kinds & kind) ? codes8 : nullptr; }
    bool grad16() const { return mem.grads == GradPrecision::kBf16; }
    float* P(int i) const { return params.as<float>() + layout.offsets[static_cast<size_t>(i)]; }
    // The fp32 gradient of tensor i (fp32 gradients only).
    float* G(int i) const {
        check(!grad16(), ErrorKind::kInternal, "GPU training: fp32 gradient of a bf16 buffer");
        return grads.as<float>() + layout.offsets[static_cast<size_t>(i)];
    }
    // The gradient of tensor i as a cuBLAS output (fp32 or bf16).
    void* Gv(int i) const {
        const size_t off = static_cast<size_t>(layout.offsets[static_cast<size_t>(i)]);
        return grad16() ? static_cast<void*>(grads.as<uint16_t>() + off)
                        : static_cast<void*>(grads.as<float>() + off);
    }
    cudaDataType grad_type() const { return grad16() ? CUDA_R_16BF : CUDA_R_32F; }
    // Where an atomically accumulated gradient (RMSNorm weights, ttt.lr) is summed: its fp32
    // gradient, or (bf16 gradients) the zeroed fp32 stage, added in by flush(i).
    float* GS(int i) {
        if (!grad16()) return G(i);
        zero(gstage, layout.specs[static_cast<size_t>(i)].numel());
        return gstage;
    }
    void flush(int i) {
        if (!grad16()) return;
        train_accumulate_bf16(grads.as<uint16_t>() + layout.offsets[static_cast<size_t>(i)], gstage,
                              layout.specs[static_cast<size_t>(i)].numel(), stream);
    }
    const float* one() const { return consts.as<float>() + 1; }
    const float* zero() const { return consts.as<float>(); }
    double* loss_dev() const { return scalars.as<double>(); }
    double* norm_dev() const { return scalars.as<double>() + 1; }

    // Fills qweights with layer l's BitLinear weights (see qweights).
    // With int8 products, the int8 codes too where a product of this pass reads them (the
    // forward; the backward's recomputed gate/up). keep_codes: the backward finds the forward's
    // codes of layer l in place (the same values).
    void quantize_layer(int64_t l) {
        const LayerWeights& w = layer_w[static_cast<size_t>(l)];
        if (in_backward && keep_codes(bf16(), mem)) {
            cur_layer = static_cast<int>(l);
            return;
        }
        const bool want8 = in_backward
                               ? mem.recompute_mlp && kept.empty() && i8_input(kI8GateUp) != nullptr
                               : i8_input(kI8All) != nullptr;
        train_weight_quant_apply(
            bf16() ? nullptr : qweights.as<float>(),
            bf16() ? qweights.as<uint16_t>() +
                         (keep_codes(bf16(), mem) ? w.base - layer_w.front().base : 0)
                   : nullptr,
            betas.as<float>() + w.first, params.as<float>(), bl_offsets.as<int64_t>() + w.first,
            bl_sizes.as<int64_t>() + w.first, w.count, w.max_size, w.base, quantize, stream,
            want8 ? qweights8.as<int8_t>() : nullptr);
        cur_layer = static_cast<int>(l);
        op(in_backward ? "bwd quantize_layer" : "fwd quantize_layer");
    }
    // The flat offset at qweights[0]: the current layer's first BitLinear weight, or (keep_codes)
    // the first layer's.
    int64_t codes_base() const {
        return keep_codes(bf16(), mem) ? layer_w.front().base
                                       : layer_w[static_cast<size_t>(cur_layer)].base;
    }
    // Element offset of BitLinear weight wi in qweights (it must belong to cur_layer); in
    // qweights8 (one layer's int8 codes) with int8.
    int64_t qoff(int wi, bool int8 = false) const {
        const ParamSpec& s = layout.specs[static_cast<size_t>(wi)];
        check(s.layer == cur_layer, ErrorKind::kInternal,
              "GPU training: weight {} used while layer {} is quantized", s.name, cur_layer);
        return layout.offsets[static_cast<size_t>(wi)] -
               (int8 ? layer_w[static_cast<size_t>(cur_layer)].base : codes_base());
    }

    // A product on the main stream (handle blas, timed per op) or the side's (wblas).
    void gemm(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int64_t m,
              int64_t n, int64_t k, const void* A, cudaDataType at, int64_t lda, const void* B_,
              cudaDataType bt, int64_t ldb, void* C, cudaDataType ct, int64_t ldc,
              const float* alpha, const float* beta) {
        check(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX, ErrorKind::kInvalidArgument,
              "CUDA: a training product of {}x{}x{} is too large for cuBLAS", m, n, k);
        check_cublas(cublasGemmEx(handle, ta, tb, static_cast<int>(m), static_cast<int>(n),
                                  static_cast<int>(k), alpha, A, at, static_cast<int>(lda), B_, bt,
                                  static_cast<int>(ldb), beta, C, ct, static_cast<int>(ldc),
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                     "cublasGemmEx");
        if (handle == blas) op_gemm(ta, tb, m, n, k, at);
    }
    void gemm(cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k,
              const void* A, cudaDataType at, int64_t lda, const void* B_, cudaDataType bt,
              int64_t ldb, void* C, cudaDataType ct, int64_t ldc, const float* alpha,
              const float* beta) {
        gemm(blas, ta, tb, m, n, k, A, at, lda, B_, bt, ldb, C, ct, ldc, alpha, beta);
    }
    void gemm(cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k,
              const void* A, cudaDataType at, int64_t lda, const void* B_, cudaDataType bt,
              int64_t ldb, float* C, int64_t ldc, const float* alpha, const float* beta) {
        gemm(ta, tb, m, n, k, A, at, lda, B_, bt, ldb, C, CUDA_R_32F, ldc, alpha, beta);
    }

    // Row-major out[N, OC] = x[N, C] · W[OC, C]ᵀ for BitLinear weight `wi` (cuBLAS sees the
    // column-major transposes: outᵀ = W · xᵀ).
    // rescale false (bf16 only): leaves the raw product of codes, for a consumer that applies
    // γ/127 · β itself (train_swiglu_quant_forward).
    // x8 (bf16 only): x's codes as int8, for the int8 product (int8_gemm.hpp, the same values)
    // with the layer's int8 weight codes. Returns whether `out` holds int32 (a raw int8 product;
    // its consumer converts it), false for fp32.
    bool bl_forward(float* out, const Act& x, int wi, int64_t N, int64_t C, int64_t OC,
                    bool rescale = true, const int8_t* x8 = nullptr) {
        const int64_t off = qoff(wi);
        if (!bf16()) {
            gemm(CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, qweights.as<float>() + off, CUDA_R_32F, C, x.f,
                 CUDA_R_32F, C, out, OC, one(), zero());
            return false;
        }
        const bool i32 = x8 != nullptr;
        if (i32) {
            int8->run(reinterpret_cast<int32_t*>(out), x8, qweights8.as<int8_t>() + qoff(wi, true),
                      N, C, OC, stream);
            op_gemm(CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, CUDA_R_8I);
        } else {
            gemm(CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, qweights.as<uint16_t>() + off, CUDA_R_16BF, C,
                 x.codes, CUDA_R_16BF, C, out, OC, one(), zero());
        }
        if (!rescale) return i32;
        train_scale_rows(out, x.scale, beta_of(wi), N, OC, stream, i32);
        op("fwd scale_rows");
        return false;
    }

    // out = a + the product `raw` of bl_forward(..., rescale = false) by weight wi on input x
    // (raw_i32: as bl_forward returned).
    void residual_rescaled(float* out, const float* a, const float* raw, const Act& x, int wi,
                           int64_t N, int64_t C, bool raw_i32) {
        if (bf16())
            train_residual_scaled_forward(out, a, raw, x.scale, beta_of(wi), N, C, stream, raw_i32);
        else
            train_residual_forward(out, a, raw, N * C, stream);
        op("fwd residual");
    }

    const float* beta_of(int wi) const {
        return betas.as<float>() + beta_index[static_cast<size_t>(wi)];
    }

    // dx[N, C] += dout · Wq (accumulate false: dx = ...); dW[OC, C] += doutᵀ · x_q
    // (straight-through for both roundings).
    void bl_backward(float* dx, int wi, const float* dout, const Act& x, int64_t N, int64_t C,
                     int64_t OC, bool accumulate = true, bool dx_bf16 = false) {
        if (!bf16()) {
            const int64_t off = qoff(wi);
            gemm(CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, qweights.as<float>() + off, CUDA_R_32F, C,
                 dout, CUDA_R_32F, OC, dx, C, one(), accumulate ? one() : zero());
            gemm(CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, x.f, CUDA_R_32F, C, dout, CUDA_R_32F, OC,
                 G(wi), C, one(), one());
            return;
        }
        uint16_t* scaled = next_scaled();
        train_to_bf16_pair(dout_bf, scaled, dout, x.scale, N, OC, stream);
        op("bwd to_bf16_pair");
        bl_backward_bf16(dx, wi, dout_bf, scaled, x, N, C, OC, accumulate, dx_bf16);
    }

    // The bf16 backward from dout already in bf16, plain and scaled by x's γ/127 per row:
    //   dx (+)= β · bf16(dout) · codes_W;  dW += (bf16(diag(γ/127) · dout))ᵀ · codes_x.
    // dW with the overlap: on the side stream after dx has been issued (dx is the critical
    // path); a scaled-dout slot it reads is free again when it is done.
    // dx_bf16 (bf16_dx; not with accumulate): dx written as bf16 (the buffer holds N x C bf16).
    void bl_backward_bf16(float* dx, int wi, const uint16_t* dout_b, const uint16_t* dout_scaled_b,
                          const Act& x, int64_t N, int64_t C, int64_t OC, bool accumulate,
                          bool dx_bf16 = false) {
        bl_dx_bf16(dx, wi, dout_b, N, C, OC, accumulate, dx_bf16);
        bl_dw_bf16(wi, dout_scaled_b, x, N, C, OC);
    }
    void bl_dx_bf16(float* dx, int wi, const uint16_t* dout_b, int64_t N, int64_t C, int64_t OC,
                    bool accumulate, bool dx_bf16 = false) {
        check(!(dx_bf16 && accumulate), ErrorKind::kInternal,
              "GPU training: a bf16 dx cannot accumulate");
        gemm(CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, qweights.as<uint16_t>() + qoff(wi), CUDA_R_16BF, C,
             dout_b, CUDA_R_16BF, OC, dx, dx_bf16 ? CUDA_R_16BF : CUDA_R_32F, C, beta_of(wi),
             accumulate ? one() : zero());
    }
    void bl_dw_bf16(int wi, const uint16_t* dout_scaled_b, const Act& x, int64_t N, int64_t C,
                    int64_t OC) {
        gemm(wgrad_handle(C * OC), CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, x.codes, CUDA_R_16BF, C,
             dout_scaled_b, CUDA_R_16BF, OC, Gv(wi), grad_type(), C, one(), one());
        for (int k = 0; k < 2; ++k)
            if (dout_scaled_b == scaled_slot[k]) record_side(ev_slot_free[k]);
    }

    // dres += the RMSNorm backward of dln (x: the norm's input). bf16 with `next` (the quantized
    // input of the BitLinear backward that reads dres next): also writes dout_bf and
    // dout_scaled_bf for it in the same pass; returns whether it did.
    bool norm_backward(float* dweight, const float* x, const float* weight, const float* rstd,
                       const Act* next) {
        const int64_t N = B * T, D = config.hidden_dim;
        const bool pair = bf16() && next;
        if (pair)
            train_rmsnorm_backward_pair(dres, dweight, dout_bf, next_scaled(), next->scale, dln, x,
                                        weight, rstd, N, D, stream);
        else
            train_rmsnorm_backward(dres, dweight, dln, x, weight, rstd, N, D, stream);
        op("bwd rmsnorm_backward");
        return pair;
    }
    // The backward of a BitLinear that reads dres: from the bf16 forms norm_backward left when
    // `ready`, else converting dres first.
    void bl_backward_dres(float* dx, int wi, const Act& x, int64_t C, bool accumulate, bool ready,
                          bool dx_bf16 = false) {
        const int64_t N = B * T, D = config.hidden_dim;
        if (ready)
            bl_backward_bf16(dx, wi, dout_bf, dout_scaled_bf, x, N, C, D, accumulate, dx_bf16);
        else
            bl_backward(dx, wi, dres, x, N, C, D, accumulate, dx_bf16);
    }

    void act_quant(const Act& out, const float* in, int64_t N, int64_t C,
                   int8_t* codes8 = nullptr) {
        train_act_quant_forward(out.f, out.codes, out.scale, in, N, C, config.act_bits, stream,
                                codes8);
        op(in_backward ? "bwd act_quant" : "fwd act_quant");
    }

    train::TttScanShape shape() const { return scan_shape(config, B, T); }

    void allocate(int64_t B_, int64_t T_) {
        if (B_ == B && T_ == T) return;
        if (wstream) wstream->synchronize();  // (its products read the arena)
        arena = DeviceBuffer();
        workspace = DeviceBuffer();
        B = B_, T = T_;
        for (int pass = 0; pass < 2; ++pass) {
            Carver a{pass == 0 ? nullptr : arena.as<char>()};
            carve(config, bf16(), mem, a);
            if (pass == 0) arena = DeviceBuffer(a.used);
        }
        const size_t ws = ttt_scan_workspace_bytes(shape());
        if (ws > 0) workspace = DeviceBuffer(ws);
    }

    void zero(float* p, int64_t n) {
        check_cuda(cudaMemsetAsync(p, 0, static_cast<size_t>(n) * sizeof(float), raw(stream)),
                   "cudaMemsetAsync");
    }

    void upload_batch(const int32_t* in, const int32_t* tg) {
        const size_t bytes = static_cast<size_t>(B * T) * sizeof(int32_t);
        check_cuda(cudaMemcpyAsync(inputs, in, bytes, cudaMemcpyHostToDevice, raw(stream)),
                   "cudaMemcpyAsync (inputs)");
        if (tg)
            check_cuda(cudaMemcpyAsync(targets, tg, bytes, cudaMemcpyHostToDevice, raw(stream)),
                       "cudaMemcpyAsync (targets)");
        if (grad16()) group_positions(in);
    }

    // bf16 gradients: the positions of the batch grouped by token (a counting sort, stable) for
    // train_embedding_backward_bf16. Synchronous: the host vectors are reused next step.
    void group_positions(const int32_t* in) {
        const int64_t N = B * T, V = config.vocab_size;
        std::vector<int32_t> count(static_cast<size_t>(V) + 1, 0);
        for (int64_t n = 0; n < N; ++n) ++count[static_cast<size_t>(in[n]) + 1];
        std::vector<int32_t> order(static_cast<size_t>(N)), starts, unique;
        for (int64_t v = 0; v < V; ++v) {
            if (count[static_cast<size_t>(v) + 1] > 0) {
                starts.push_back(count[static_cast<size_t>(v)]);
                unique.push_back(static_cast<int32_t>(v));
            }
            count[static_cast<size_t>(v) + 1] += count[static_cast<size_t>(v)];
        }
        starts.push_back(static_cast<int32_t>(N));
        for (int64_t n = 0; n < N; ++n)
            order[static_cast<size_t>(count[static_cast<size_t>(in[n])]++)] =
                static_cast<int32_t>(n);
        emb_unique_count = static_cast<int64_t>(unique.size());
        check_cuda(cudaMemcpyAsync(emb_order, order.data(), order.size() * sizeof(int32_t),
                                   cudaMemcpyHostToDevice, raw(stream)),
                   "cudaMemcpyAsync (positions)");
        check_cuda(cudaMemcpyAsync(emb_starts, starts.data(), starts.size() * sizeof(int32_t),
                                   cudaMemcpyHostToDevice, raw(stream)),
                   "cudaMemcpyAsync (positions)");
        check_cuda(cudaMemcpyAsync(emb_unique, unique.data(), unique.size() * sizeof(int32_t),
                                   cudaMemcpyHostToDevice, raw(stream)),
                   "cudaMemcpyAsync (positions)");
        stream.synchronize();
    }

    // The quantized input of the TTT branch (scratch), from the block input a.res.
    void norm1_forward(LayerActs& a, const LayerIndex& w) {
        const ModelConfig& c = config;
        const int64_t N = B * T, D = c.hidden_dim;
        if (sc.ln1) {
            train_rmsnorm_forward(sc.ln1, a.ln1_rstd, a.res, P(w.norm1), N, D, c.norm_eps, stream);
            act_quant(sc.ln1_q, sc.ln1, N, D, in_backward || !bf16() ? nullptr : i8_input(kI8Ttt));
        } else {  // bf16 reconstruct: the normed input itself is never needed
            // (the int8 copy for the forward's TTT projections)
            train_rmsnorm_quant_forward(a.ln1_rstd, sc.ln1_q.codes, sc.ln1_q.scale, a.res,
                                        P(w.norm1), N, D, c.norm_eps, c.act_bits, stream,
                                        in_backward ? nullptr : i8_input(kI8Ttt));
        }
        op(in_backward ? "bwd recompute rmsnorm_quant" : "fwd rmsnorm_quant");
    }
    // The quantized input of the MLP (scratch), from a.h.
    void norm2_forward(LayerActs& a, const LayerIndex& w) {
        const ModelConfig& c = config;
        const int64_t N = B * T, D = c.hidden_dim;
        if (bf16()) {
            train_rmsnorm_quant_forward(a.ln2_rstd, sc.ln2_q.codes, sc.ln2_q.scale, a.h, P(w.norm2),
                                        N, D, c.norm_eps, c.act_bits, stream);
        } else {
            train_rmsnorm_forward(sc.ln2, a.ln2_rstd, a.h, P(w.norm2), N, D, c.norm_eps, stream);
            act_quant(sc.ln2_q, sc.ln2, N, D);
        }
        op(in_backward ? "bwd recompute rmsnorm_quant" : "fwd rmsnorm_quant");
    }

    // gate and up products of the MLP from its quantized input (ln2_8: its int8 copy, for int8
    // products), and the quantized SwiGLU output (scratch; in the forward also the int8 copy for
    // the down product). bf16: gate and up stay raw products of codes; the SwiGLU kernels apply
    // their rescale (γ/127 · β) whenever they read them.
    void mlp_products(LayerActs& a, const LayerIndex& w, const int8_t* ln2_8) {
        const ModelConfig& c = config;
        const int64_t N = B * T, D = c.hidden_dim, M = c.mlp_dim;
        a.gate_i32 = bl_forward(a.gate, sc.ln2_q, w.gate, N, D, M, false, ln2_8);
        bl_forward(a.up, sc.ln2_q, w.mlp_up, N, D, M, false, ln2_8);
        train_swiglu_quant_forward(
            a.gate, a.up, bf16() ? sc.ln2_q.scale : nullptr, bf16() ? beta_of(w.gate) : nullptr,
            bf16() ? beta_of(w.mlp_up) : nullptr, sc.swi_q.f, sc.swi_q.codes, sc.swi_q.scale, N, M,
            c.act_bits, stream, in_backward ? nullptr : i8_input(kI8Down), a.gate_i32);
        op(in_backward ? "bwd recompute swiglu_quant" : "fwd swiglu_quant");
    }

    // Before layer l's backward: its quantized weights and the scratch values of its forward,
    // recomputed by the same kernels from what the layer kept (bit-identical to the forward's).
    void recompute_layer(int64_t l) {
        const ModelConfig& c = config;
        const int64_t N = B * T, Dt = c.ttt_dim, M = c.mlp_dim, H = c.ttt_heads, Dh = Dt / H;
        const bool delta = c.ttt_rule == TttRule::kDelta;
        LayerActs& a = acts[static_cast<size_t>(l)];
        const LayerIndex& w = layers[static_cast<size_t>(l)];
        quantize_layer(l);
        if (!kept.empty()) {  // keep_activations: the layer's own set (no int8 copy of ln2)
            sc = kept[static_cast<size_t>(l)];
            if (mem.recompute_mlp) branch_sum(a, w), mlp_products(a, w, nullptr);
            return;
        }
        if (delta) {  // the quantized TTT output (the input of ttt.o)
            train_rmsnorm_forward(sc.o, a.o_rstd, a.y, nullptr, N, Dt, c.norm_eps, stream);
            act_quant(sc.o_q, sc.o, N, Dt);
        }
        // The recomputed gate/up run in int8 where the forward's did (ln2's int8 copy is made
        // again for them); the TTT output's product in bf16 (its int8 copy is gone): the same
        // values either way.
        int8_t* ln2_8 = nullptr;
        if (mem.recompute_mlp && bf16()) {  // h and the MLP's quantized input in one pass
            const Act& tq = delta ? sc.o_q : a.z_q;
            const int tw = delta ? w.o : w.up;
            bl_forward(branch, tq, tw, N, Dt, c.hidden_dim, false);
            ln2_8 = i8_input(kI8GateUp);
            train_residual_norm_quant(a.h, a.res, branch, tq.scale, beta_of(tw), a.ln2_rstd,
                                      sc.ln2_q.codes, sc.ln2_q.scale, P(w.norm2), N, c.hidden_dim,
                                      c.norm_eps, c.act_bits, stream, ln2_8);
            op("bwd recompute residual + rmsnorm_quant");
        } else {
            if (mem.recompute_mlp) branch_sum(a, w);
            norm2_forward(a, w);
        }
        if (mem.recompute_mlp) {
            mlp_products(a, w, ln2_8);
        } else {  // gate and up are kept: only the SwiGLU and its quantization again
            train_swiglu_quant_forward(
                a.gate, a.up, bf16() ? sc.ln2_q.scale : nullptr, bf16() ? beta_of(w.gate) : nullptr,
                bf16() ? beta_of(w.mlp_up) : nullptr, sc.swi_q.f, sc.swi_q.codes, sc.swi_q.scale, N,
                M, c.act_bits, stream, nullptr, a.gate_i32);
            op("bwd recompute swiglu_quant");
        }
        norm1_forward(a, w);
        if (!delta) {
            train_l2norm_forward(sc.fhat, a.fnorm, a.f, N, Dt, stream);
            op("bwd recompute l2norm");
        } else {
            train_l2norm_forward(sc.qhat, a.qnorm, a.q, N * H, Dh, stream);
            train_l2norm_forward(sc.khat, a.knorm, a.k, N * H, Dh, stream);
        }
    }

    // h = x + the TTT branch's output projection (the MLP branch's input), from the block input
    // and the quantized TTT output, by the forward's own calls (train_residual_norm_quant writes
    // the same h as residual_rescaled, bit for bit).
    void branch_sum(LayerActs& a, const LayerIndex& w) {
        const ModelConfig& c = config;
        const int64_t N = B * T, D = c.hidden_dim, Dt = c.ttt_dim;
        const bool delta = c.ttt_rule == TttRule::kDelta;
        const Act& tq = delta ? sc.o_q : a.z_q;
        const int tw = delta ? w.o : w.up;
        bl_forward(branch, tq, tw, N, Dt, D, false);
        residual_rescaled(a.h, a.res, branch, tq, tw, N, D, false);
    }

    void run_forward(bool with_targets) {
        const ModelConfig& c = config;
        const int64_t N = B * T, D = c.hidden_dim, Dt = c.ttt_dim, M = c.mlp_dim;
        const int64_t V = c.vocab_size, H = c.ttt_heads, Dh = Dt / H;
        const float eps = c.norm_eps, inner_lr = c.inner_lr;
        const bool delta = c.ttt_rule == TttRule::kDelta;
        const train::TttScanShape s = shape();
        // The per-tensor weight scales once per forward (§2.1, absmean per tensor); the codes
        // per layer (quantize_layer).
        train_weight_beta(betas.as<float>(), norm_partial.as<double>(), params.as<float>(),
                          bl_offsets.as<int64_t>(), bl_sizes.as<int64_t>(), bitlinear_count,
                          bitlinear_max, quantize, stream);
        if (bf16()) train_to_bf16(lm_bf16.as<uint16_t>(), P(lm_head), V * D, stream);
        mark("weight quantization");

        in_backward = false;
        train_embedding_forward(acts[0].res, inputs, P(embed), N, D, stream);
        op("fwd embedding");
        // bf16: each residual add also writes the next branch's quantized input (one pass,
        // train_residual_norm_quant); the TTT branch's input of the next layer too, unless that
        // branch needs its normed input in fp32 (the delta rule's ttt.lr).
        bool norm1_done = false;
        for (size_t li = 0; li < acts.size(); ++li) {
            LayerActs& a = acts[li];
            const LayerIndex& w = layers[li];
            const bool last = li + 1 == acts.size();
            float* out = !last ? acts[li + 1].res : final_res;
            if (!kept.empty()) sc = kept[li];
            quantize_layer(static_cast<int64_t>(li));
            if (!norm1_done) norm1_forward(a, w);
            // The int8 copies of the TTT branch's inputs (ln1_q: norm1_forward or the residual
            // kernel of the layer below; the scan output: act_quant) for its products.
            int8_t* ttt8 = i8_input(kI8Ttt);
            bool branch_i32 = false;
            if (!delta) {
                bl_forward(a.f, sc.ln1_q, w.down, N, D, Dt, true, ttt8);
                train_l2norm_forward(sc.fhat, a.fnorm, a.f, N, Dt, stream);
                op("fwd l2norm");
                mark("forward layers (no scan)");
                ttt_scan_forward(sc.z, a.ckpt, sc.fhat, sc.fhat, sc.fhat, nullptr, inner_lr, s,
                                 workspace.data(), stream);
                mark("TTT scan forward");
                act_quant(a.z_q, sc.z, N, Dt, ttt8);
                branch_i32 = bl_forward(branch, a.z_q, w.up, N, Dt, D, false, ttt8);
            } else {
                bl_forward(a.q, sc.ln1_q, w.q, N, D, Dt, true, ttt8);
                bl_forward(a.k, sc.ln1_q, w.k, N, D, Dt, true, ttt8);
                bl_forward(a.v, sc.ln1_q, w.v, N, D, Dt, true, ttt8);
                train_l2norm_forward(sc.qhat, a.qnorm, a.q, N * H, Dh, stream);
                train_l2norm_forward(sc.khat, a.knorm, a.k, N * H, Dh, stream);
                // η_t = inner_lr · σ(ttt.lr · x + b), from the unquantized normed input (fp32).
                train_lr_gate_forward(a.lr_logit, a.eta, sc.ln1, P(w.lr_w), P(w.lr_b), N, D, H,
                                      inner_lr, stream);
                op("fwd lr_gate");
                mark("forward layers (no scan)");
                ttt_scan_forward(a.y, a.ckpt, sc.qhat, sc.khat, a.v, a.eta, 0.0f, s,
                                 workspace.data(), stream);
                mark("TTT scan forward");
                train_rmsnorm_forward(sc.o, a.o_rstd, a.y, nullptr, N, Dt, eps, stream);
                act_quant(sc.o_q, sc.o, N, Dt, ttt8);
                branch_i32 = bl_forward(branch, sc.o_q, w.o, N, Dt, D, false, ttt8);
            }
            const Act& tq = delta ? sc.o_q : a.z_q;
            const int tw = delta ? w.o : w.up;
            int8_t* ln2_8 = i8_input(kI8GateUp);
            if (bf16()) {
                train_residual_norm_quant(a.h, a.res, branch, tq.scale, beta_of(tw), a.ln2_rstd,
                                          sc.ln2_q.codes, sc.ln2_q.scale, P(w.norm2), N, D, eps,
                                          c.act_bits, stream, ln2_8, branch_i32);
                op("fwd residual + rmsnorm_quant");
            } else {
                residual_rescaled(a.h, a.res, branch, tq, tw, N, D, false);
                norm2_forward(a, w);
            }
            mlp_products(a, w, ln2_8);
            branch_i32 =
                bl_forward(branch, sc.swi_q, w.mlp_down, N, M, D, false, i8_input(kI8Down));
            norm1_done = bf16() && !delta && !last;
            if (norm1_done) {
                // The next layer's scratch set (the same set unless keep_activations).
                const Scratch& next = kept.empty() ? sc : kept[li + 1];
                train_residual_norm_quant(out, a.h, branch, sc.swi_q.scale, beta_of(w.mlp_down),
                                          acts[li + 1].ln1_rstd, next.ln1_q.codes, next.ln1_q.scale,
                                          P(layers[li + 1].norm1), N, D, eps, c.act_bits, stream,
                                          i8_input(kI8Ttt), branch_i32);
                op("fwd residual + rmsnorm_quant");
            } else {
                residual_rescaled(out, a.h, branch, sc.swi_q, w.mlp_down, N, D, branch_i32);
            }
            mark("forward layers (no scan)");
        }
        train_rmsnorm_forward(lnf, lnf_rstd, final_res, P(norm_f), N, D, eps, stream);
        op("fwd final rmsnorm");
        have_targets = with_targets;
        const float dloss = 1.0f / static_cast<float>(N);
        if (!bf16()) {
            gemm(CUBLAS_OP_T, CUBLAS_OP_N, V, N, D, P(lm_head), CUDA_R_32F, D, lnf, CUDA_R_32F, D,
                 logits, V, one(), zero());
            if (!with_targets) return;
            // Loss and the gradient of the mean loss in one pass, over the logits.
            train_crossentropy_fused(losses, logits, nullptr, logits, targets, N, V, dloss, stream);
        } else {
            check(with_targets || N <= logit_rows, ErrorKind::kInvalidArgument,
                  "forward without targets: bf16 mode keeps the logits of at most {} rows",
                  logit_rows);
            train_to_bf16(lnf_bf, lnf, N * D, stream);
            for (int64_t r0 = 0; r0 < N; r0 += logit_rows) {
                const int64_t rows = std::min(logit_rows, N - r0);
                gemm(CUBLAS_OP_T, CUBLAS_OP_N, V, rows, D, lm_bf16.data(), CUDA_R_16BF, D,
                     lnf_bf + r0 * D, CUDA_R_16BF, D, logits, V, one(), zero());
                if (with_targets)
                    train_crossentropy_fused(losses + r0, nullptr, dlogits_bf + r0 * V, logits,
                                             targets + r0, rows, V, dloss, stream);
                op("fwd cross-entropy");
            }
            if (!with_targets) return;
        }
        train_mean(loss_dev(), losses, N, stream);
        mark("lm_head + cross-entropy");
    }

    void run_backward() {
        check(have_targets, ErrorKind::kInvalidArgument,
              "backward: the last forward had no targets");
        const ModelConfig& c = config;
        const int64_t N = B * T, D = c.hidden_dim, Dt = c.ttt_dim, M = c.mlp_dim;
        const int64_t V = c.vocab_size, H = c.ttt_heads, Dh = Dt / H;
        const bool delta = c.ttt_rule == TttRule::kDelta;
        const train::TttScanShape s = shape();
        const float inner_lr = c.inner_lr;
        in_backward = true;

        // lm_head: dlnf = dlogits · W, dW += dlogitsᵀ · lnf.
        if (bf16()) {
            gemm(CUBLAS_OP_N, CUBLAS_OP_N, D, N, V, lm_bf16.data(), CUDA_R_16BF, D, dlogits_bf,
                 CUDA_R_16BF, V, dln, D, one(), zero());
            gemm(wgrad_handle(D * V), CUBLAS_OP_N, CUBLAS_OP_T, D, V, N, lnf_bf, CUDA_R_16BF, D,
                 dlogits_bf, CUDA_R_16BF, V, Gv(lm_head), grad_type(), D, one(), one());
        } else {
            gemm(CUBLAS_OP_N, CUBLAS_OP_N, D, N, V, P(lm_head), CUDA_R_32F, D, logits, CUDA_R_32F,
                 V, dln, D, one(), zero());
            gemm(CUBLAS_OP_N, CUBLAS_OP_T, D, V, N, lnf, CUDA_R_32F, D, logits, CUDA_R_32F, V,
                 G(lm_head), D, one(), one());
        }
        zero(dres, N * D);
        // Each RMSNorm backward also writes the bf16 forms of dres for the product that reads it
        // next where that product's input scales exist already (the TTT branch's output; the
        // SwiGLU output of the layer below when activations are kept). Its weight gradient goes
        // to GS (the fp32 stage with bf16 gradients, added in by flush).
        bool dres_bf = norm_backward(GS(norm_f), final_res, P(norm_f), lnf_rstd,
                                     kept.empty() ? nullptr : &kept.back().swi_q);
        flush(norm_f);
        mark("lm_head backward");

        for (int64_t li = static_cast<int64_t>(acts.size()) - 1; li >= 0; --li) {
            const LayerActs& a = acts[static_cast<size_t>(li)];
            const LayerIndex& w = layers[static_cast<size_t>(li)];
            // One scratch set for all layers: the weight-gradient products of the layer above
            // read its codes; the recomputation overwrites them.
            if (kept.empty() && li + 1 < static_cast<int64_t>(acts.size())) join();
            recompute_layer(li);
            // MLP branch
            const bool dswi16 = bf16_dx_on(bf16(), mem);  // dswi holds bf16
            bl_backward_dres(dswi, w.mlp_down, sc.swi_q, M, false, dres_bf, dswi16);
            if (bf16()) {
                // The SwiGLU gradients go straight to the bf16 forms the products read (each
                // fp32 buffer holds two bf16 ones).
                auto* dg = reinterpret_cast<uint16_t*>(dgate);
                auto* du = reinterpret_cast<uint16_t*>(dup);
                main_waits(ev_gu_free);  // the layer above's gate/up weight gradients read them
                train_swiglu_backward_bf16(dg, dg + N * M, du, du + N * M, sc.ln2_q.scale,
                                           beta_of(w.gate), beta_of(w.mlp_up), dswi, a.gate, a.up,
                                           N, M, stream, a.gate_i32,
                                           dswi16 ? reinterpret_cast<uint16_t*>(dswi) : nullptr);
                op("bwd swiglu_backward_bf16");
                // Both dx products first: with the overlap, the two weight gradients then run
                // beside the bandwidth-bound kernels that follow, not beside the up product.
                bl_dx_bf16(dln, w.gate, dg, N, D, M, false);
                bl_dx_bf16(dln, w.mlp_up, du, N, D, M, true);
                bl_dw_bf16(w.gate, dg + N * M, sc.ln2_q, N, D, M);
                bl_dw_bf16(w.mlp_up, du + N * M, sc.ln2_q, N, D, M);
                record_side(ev_gu_free);
            } else {
                zero(dgate, N * M), zero(dup, N * M);
                train_swiglu_backward(dgate, dup, dswi, a.gate, a.up, N * M, stream);
                bl_backward(dln, w.gate, dgate, sc.ln2_q, N, D, M, false);
                bl_backward(dln, w.mlp_up, dup, sc.ln2_q, N, D, M);
            }
            dres_bf =
                norm_backward(GS(w.norm2), a.h, P(w.norm2), a.ln2_rstd, delta ? &sc.o_q : &a.z_q);
            flush(w.norm2);
            // TTT branch (its first product into dln overwrites it)
            if (!delta) {
                float *dz = dttt[0], *dfhat = dttt[1], *df = dttt[2];
                zero(dfhat, N * Dt), zero(df, N * Dt);
                op("bwd zero");
                bl_backward_dres(dz, w.up, a.z_q, Dt, false, dres_bf);
                mark("backward layers (no scan)");
                ttt_scan_backward(dfhat, dfhat, dfhat, nullptr, dz, a.ckpt, sc.fhat, sc.fhat,
                                  sc.fhat, nullptr, inner_lr, s, workspace.data(), stream);
                mark("TTT scan backward");
                train_l2norm_backward(df, dfhat, a.f, a.fnorm, N, Dt, stream);
                op("bwd l2norm_backward");
                bl_backward(dln, w.down, df, sc.ln1_q, N, D, Dt, false);
            } else {
                float *dout = dttt[0], *dy = dttt[1], *dqh = dttt[2], *dkh = dttt[3];
                float *dv = dttt[4], *dq = dttt[5], *dk = dttt[6];
                for (float* p : dttt)  // (dout: written, not accumulated, by its product)
                    if (p != dout) zero(p, N * Dt);
                zero(deta, N * H), zero(dlr, N * H);
                bl_backward_dres(dout, w.o, sc.o_q, Dt, false, dres_bf);
                train_rmsnorm_backward(dy, nullptr, dout, a.y, nullptr, a.o_rstd, N, Dt, stream);
                mark("backward layers (no scan)");
                ttt_scan_backward(dqh, dkh, dv, deta, dy, a.ckpt, sc.qhat, sc.khat, a.v, a.eta,
                                  0.0f, s, workspace.data(), stream);
                mark("TTT scan backward");
                train_l2norm_backward(dq, dqh, a.q, a.qnorm, N * H, Dh, stream);
                train_l2norm_backward(dk, dkh, a.k, a.knorm, N * H, Dh, stream);
                train_sigmoid_scale_backward(dlr, deta, a.lr_logit, N * H, inner_lr, stream);
                // ttt.lr (fp32): dx += dlr · W, dW += dlrᵀ · ln1, db += Σ_n dlr.
                train_lr_gate_dx(dln, dlr, P(w.lr_w), N, D, H, stream);
                op("bwd lr_gate_dx");
                gemm(CUBLAS_OP_N, CUBLAS_OP_T, D, H, N, sc.ln1, CUDA_R_32F, D, dlr, CUDA_R_32F, H,
                     GS(w.lr_w), D, one(), one());
                flush(w.lr_w);
                train_column_sum_accumulate(GS(w.lr_b), dlr, N, H, stream);
                flush(w.lr_b);
                bl_backward(dln, w.q, dq, sc.ln1_q, N, D, Dt);
                bl_backward(dln, w.k, dk, sc.ln1_q, N, D, Dt);
                bl_backward(dln, w.v, dv, sc.ln1_q, N, D, Dt);
            }
            dres_bf = norm_backward(
                GS(w.norm1), a.res, P(w.norm1), a.ln1_rstd,
                !kept.empty() && li > 0 ? &kept[static_cast<size_t>(li - 1)].swi_q : nullptr);
            flush(w.norm1);
        }
        if (grad16())
            train_embedding_backward_bf16(grads.as<uint16_t>() + layout.offsets[embed], dres,
                                          emb_order, emb_starts, emb_unique, emb_unique_count, D,
                                          stream);
        else
            train_embedding_backward(G(embed), dres, inputs, N, D, stream);
        op("bwd embedding");
        join();  // the optimizer and the next forward wait for every weight gradient
        mark("backward layers (no scan)");
        have_targets = false;
    }

    void check_batch(const int32_t* in, const int32_t* tg, int64_t B_, int64_t T_) const {
        check(B_ > 0 && T_ > 0, ErrorKind::kInvalidArgument, "forward: empty batch [{}, {}]", B_,
              T_);
        const int64_t V = config.vocab_size;
        for (int64_t n = 0; n < B_ * T_; ++n) {
            check(in[n] >= 0 && in[n] < V, ErrorKind::kInvalidArgument,
                  "token id {} at position {} is outside the vocabulary of {}", in[n], n, V);
            check(!tg || (tg[n] >= 0 && tg[n] < V), ErrorKind::kInvalidArgument,
                  "target id {} at position {} is outside the vocabulary of {}", tg ? tg[n] : 0, n,
                  V);
        }
    }
};

GpuTrainModel::GpuTrainModel(const ModelConfig& config, TrainPrecision precision,
                             GpuMemoryOptions memory) {
    require_device("GPU training");
    ModelConfig c = config;
    c.resolve_and_validate("training config");
    impl_ = std::make_unique<Impl>(c, precision, memory);
    Impl& m = *impl_;
    const train::ParamLayout& L = m.layout;
    const FixedSizes fs = fixed_sizes(c, L, precision, memory);
    m.params = DeviceBuffer(fs.params);
    m.grads = DeviceBuffer(fs.grads);
    m.adam_m = DeviceBuffer(fs.moment);
    m.adam_v = DeviceBuffer(fs.moment);
    for (DeviceBuffer* b : {&m.params, &m.grads, &m.adam_m, &m.adam_v}) b->fill_bytes(0);
    if (fs.moment_scales > 0) {
        m.adam_ms = DeviceBuffer(fs.moment_scales);
        m.adam_vs = DeviceBuffer(fs.moment_scales);
        m.adam_ms.fill_bytes(0), m.adam_vs.fill_bytes(0);
    }
    m.layer_w = layer_weights(L, c.num_layers);
    m.qweights = DeviceBuffer(fs.qweights);
    m.qweights.fill_bytes(0);
    m.i8_kinds = int8_kinds(c, precision == TrainPrecision::kBf16, memory);
    if (fs.qweights8 > 0) {
        m.qweights8 = DeviceBuffer(fs.qweights8);
        m.qweights8.fill_bytes(0);
    }

    std::vector<uint32_t> decay(fs.decay_bits / sizeof(uint32_t), 0);
    std::vector<int64_t> offsets, sizes;
    m.beta_index.assign(L.specs.size(), -1);
    for (size_t i = 0; i < L.specs.size(); ++i) {
        const ParamSpec& s = L.specs[i];
        check(L.offsets[i] % (int64_t{1} << kDecayShift) == 0, ErrorKind::kInternal,
              "GPU training: tensor {} does not start at a multiple of 16", s.name);
        // The groups of 16 that hold the tensor (its padding included) decay or not as it does.
        if (s.weight_decay())
            for (int64_t j = L.offsets[i] >> kDecayShift;
                 j < (L.offsets[i] + s.numel() + 15) >> kDecayShift; ++j)
                decay[static_cast<size_t>(j / 32)] |= 1u << (j % 32);
        if (s.kind != ParamKind::kBitLinear) continue;
        m.beta_index[i] = static_cast<int>(offsets.size());
        offsets.push_back(L.offsets[i]);
        sizes.push_back(s.numel());
        m.bitlinear_max = std::max(m.bitlinear_max, s.numel());
    }
    m.bitlinear_count = static_cast<int>(offsets.size());
    m.decay_bits = DeviceBuffer(fs.decay_bits);
    m.decay_bits.copy_from_host(decay.data(), fs.decay_bits);
    m.betas = DeviceBuffer(std::max<size_t>(offsets.size(), 1) * sizeof(float));
    m.bl_offsets = DeviceBuffer(std::max<size_t>(offsets.size(), 1) * sizeof(int64_t));
    m.bl_sizes = DeviceBuffer(std::max<size_t>(offsets.size(), 1) * sizeof(int64_t));
    m.bl_offsets.copy_from_host(offsets.data(), offsets.size() * sizeof(int64_t));
    m.bl_sizes.copy_from_host(sizes.data(), sizes.size() * sizeof(int64_t));
    const float consts[2] = {0.0f, 1.0f};
    m.consts = DeviceBuffer(sizeof consts);
    m.consts.copy_from_host(consts, sizeof consts);
    m.scalars = DeviceBuffer(2 * sizeof(double));
    m.scalars.fill_bytes(0);
    m.norm_partial =
        DeviceBuffer(static_cast<size_t>(scratch_doubles(L, m.bitlinear_count, m.bitlinear_max)) *
                     sizeof(double));

    auto index = [&](const std::string& name) { return static_cast<int>(L.index_of(name)); };
    m.embed = index("embed.weight");
    m.norm_f = index("norm_f.weight");
    m.lm_head = index("lm_head.weight");
    if (fs.lm_bf16 > 0) m.lm_bf16 = DeviceBuffer(fs.lm_bf16);
    const bool delta = c.ttt_rule == TttRule::kDelta;
    for (int64_t l = 0; l < c.num_layers; ++l) {
        const std::string p = "layers." + std::to_string(l) + ".";
        LayerIndex li;
        li.norm1 = index(p + "norm1.weight");
        li.norm2 = index(p + "norm2.weight");
        if (!delta) {
            li.down = index(p + "ttt.down.weight");
            li.up = index(p + "ttt.up.weight");
        } else {
            li.q = index(p + "ttt.q.weight"), li.k = index(p + "ttt.k.weight");
            li.v = index(p + "ttt.v.weight"), li.o = index(p + "ttt.o.weight");
            li.lr_w = index(p + "ttt.lr.weight"), li.lr_b = index(p + "ttt.lr.bias");
        }
        li.gate = index(p + "mlp.gate_proj.weight");
        li.mlp_up = index(p + "mlp.up_proj.weight");
        li.mlp_down = index(p + "mlp.down_proj.weight");
        m.layers.push_back(li);
    }

    check_cublas(cublasCreate(&m.blas), "cublasCreate");
    check_cublas(cublasSetStream(m.blas, raw(m.stream)), "cublasSetStream");
    check_cublas(cublasSetPointerMode(m.blas, CUBLAS_POINTER_MODE_DEVICE), "cublasSetPointerMode");
    m.blas_ws = DeviceBuffer(blas_workspace_bytes());
    check_cublas(cublasSetWorkspace(m.blas, m.blas_ws.data(), m.blas_ws.bytes()),
                 "cublasSetWorkspace");
    // The int8 products share cuBLAS's workspace: both run in order on the model's stream.
    if (m.i8_kinds != 0) m.int8 = std::make_unique<Int8Gemm>(m.blas_ws.data(), m.blas_ws.bytes());
    // The overlap: a cuBLAS handle of its own with a workspace of the same size (cuBLAS's
    // heuristics pick by it: the same algorithms, the same bits), at the default priority.
    m.overlap = overlap_mode(c, precision == TrainPrecision::kBf16, memory);
    if (m.overlap) {
        m.wstream = std::make_unique<Stream>(0);
        check_cublas(cublasCreate(&m.wblas), "cublasCreate");
        check_cublas(cublasSetStream(m.wblas, raw(*m.wstream)), "cublasSetStream");
        check_cublas(cublasSetPointerMode(m.wblas, CUBLAS_POINTER_MODE_DEVICE),
                     "cublasSetPointerMode");
        m.wblas_ws = DeviceBuffer(blas_workspace_bytes());
        check_cublas(cublasSetWorkspace(m.wblas, m.wblas_ws.data(), m.wblas_ws.bytes()),
                     "cublasSetWorkspace");
        if (overlap_sms() > 0) {
            check_cublas(cublasCreate(&m.wblas_large), "cublasCreate");
            check_cublas(cublasSetStream(m.wblas_large, raw(*m.wstream)), "cublasSetStream");
            check_cublas(cublasSetPointerMode(m.wblas_large, CUBLAS_POINTER_MODE_DEVICE),
                         "cublasSetPointerMode");
            check_cublas(cublasSetWorkspace(m.wblas_large, m.wblas_ws.data(), m.wblas_ws.bytes()),
                         "cublasSetWorkspace");
            check_cublas(cublasSetSmCountTarget(m.wblas_large, overlap_sms()),
                         "cublasSetSmCountTarget");
        }
        for (cudaEvent_t* e :
             {&m.ev_ready, &m.ev_slot_free[0], &m.ev_slot_free[1], &m.ev_gu_free, &m.ev_join})
            check_cuda(cudaEventCreateWithFlags(e, cudaEventDisableTiming), "cudaEventCreate");
    }
}

GpuTrainModel::~GpuTrainModel() = default;

const ModelConfig& GpuTrainModel::config() const {
    return impl_->config;
}
const train::ParamLayout& GpuTrainModel::layout() const {
    return impl_->layout;
}
TrainPrecision GpuTrainModel::precision() const {
    return impl_->precision;
}
void GpuTrainModel::set_quantize_weights(bool on) {
    impl_->quantize = on;
}
void GpuTrainModel::set_phase_timing(bool on) {
    impl_->timing = on;
    const char* env = std::getenv("BITTTT_CUDA_PROFILE");
    impl_->per_op = on && env && std::atoi(env) > 0;
    impl_->marks = 0;
    impl_->phase_ms.clear();
}
std::vector<std::pair<std::string, double>> GpuTrainModel::phase_ms() const {
    return impl_->phase_ms;
}

const Stream& GpuTrainModel::stream() const {
    return impl_->stream;
}

namespace {
DeviceBuffer& buffer_of(GpuTrainModel::Buffer which, DeviceBuffer& p, DeviceBuffer& g,
                        DeviceBuffer& m, DeviceBuffer& v) {
    switch (which) {
        case GpuTrainModel::Buffer::kParams:
            return p;
        case GpuTrainModel::Buffer::kGrads:
            return g;
        case GpuTrainModel::Buffer::kAdamM:
            return m;
        case GpuTrainModel::Buffer::kAdamV:
            return v;
    }
    return p;
}
}  // namespace

namespace {
// bf16 bits of x rounded to nearest even (NaN stays NaN).

// The int8 coding of a moment buffer on the host (moment_code.hpp, rounded to nearest).
void quantize_moments(const float* x, size_t n, bool v, std::vector<uint8_t>& codes,
                      std::vector<float>& scales) {
    namespace mc = moment_code;
    const size_t block = mc::kMomentBlock;
    codes.assign(n, 0);
    scales.assign((n + block - 1) / block, 0.0f);
    for (size_t b = 0; b < scales.size(); ++b) {
        const size_t end = std::min(n, (b + 1) * block);
        float absmax = 0.0f;
        for (size_t i = b * block; i < end; ++i)
            absmax = std::max(absmax, v ? std::sqrt(std::max(x[i], 0.0f)) : std::fabs(x[i]));
        check(std::isfinite(absmax), ErrorKind::kInvalidArgument,
              "AdamW moments: a value is not finite (element {})", b * block);
        const float s = v ? mc::scale_v(absmax) : mc::scale_m(absmax);
        scales[b] = s;
        for (size_t i = b * block; i < end; ++i)
            codes[i] = v ? mc::encode_v(x[i], s, 0.5f) : mc::encode_m(x[i], s, 0.5f);
    }
}
}  // namespace

void GpuTrainModel::upload(Buffer which, const float* host) {
    Impl& m = *impl_;
    m.stream.synchronize();
    DeviceBuffer& b = buffer_of(which, m.params, m.grads, m.adam_m, m.adam_v);
    const size_t n = static_cast<size_t>(m.layout.total);
    const bool moment = which == Buffer::kAdamM || which == Buffer::kAdamV;
    if (moment && m.state == OptimizerState::kInt8) {
        std::vector<uint8_t> codes;
        std::vector<float> scales;
        quantize_moments(host, n, which == Buffer::kAdamV, codes, scales);
        b.copy_from_host(codes.data(), n);
        (which == Buffer::kAdamV ? m.adam_vs : m.adam_ms)
            .copy_from_host(scales.data(), scales.size() * sizeof(float));
        return;
    }
    if ((moment && m.state == OptimizerState::kBf16) || (which == Buffer::kGrads && m.grad16())) {
        std::vector<uint16_t> bf(n);
        for (size_t i = 0; i < n; ++i) bf[i] = io::f32_to_bf16(host[i]);
        b.copy_from_host(bf.data(), n * sizeof(uint16_t));
        return;
    }
    b.copy_from_host(host, n * sizeof(float));
}

void GpuTrainModel::download(Buffer which, float* host) const {
    Impl& m = *impl_;
    m.stream.synchronize();
    const DeviceBuffer& b = buffer_of(which, m.params, m.grads, m.adam_m, m.adam_v);
    const size_t n = static_cast<size_t>(m.layout.total);
    const bool moment = which == Buffer::kAdamM || which == Buffer::kAdamV;
    if (moment && m.state == OptimizerState::kInt8) {
        std::vector<uint8_t> codes(n);
        std::vector<float> scales(static_cast<size_t>(train_moment_blocks(m.layout.total)));
        b.copy_to_host(codes.data(), n);
        (which == Buffer::kAdamV ? m.adam_vs : m.adam_ms)
            .copy_to_host(scales.data(), scales.size() * sizeof(float));
        for (size_t i = 0; i < n; ++i) {
            const float s = scales[i / moment_code::kMomentBlock];
            host[i] = which == Buffer::kAdamV ? moment_code::decode_v(codes[i], s)
                                              : moment_code::decode_m(codes[i], s);
        }
        return;
    }
    if ((moment && m.state == OptimizerState::kBf16) || (which == Buffer::kGrads && m.grad16())) {
        std::vector<uint16_t> bf(n);  // exact in fp32
        b.copy_to_host(bf.data(), n * sizeof(uint16_t));
        for (size_t i = 0; i < n; ++i) host[i] = io::bf16_to_f32(bf[i]);
        return;
    }
    b.copy_to_host(host, n * sizeof(float));
}

GpuMemoryOptions GpuTrainModel::memory_options() const {
    return impl_->mem;
}

bool GpuTrainModel::int8_forward_active() const {
    return impl_->quantize && impl_->i8_kinds != 0;
}

double GpuTrainModel::forward(const int32_t* inputs, const int32_t* targets, int64_t B, int64_t T) {
    Impl& m = *impl_;
    m.check_batch(inputs, targets, B, T);
    m.allocate(B, T);
    m.upload_batch(inputs, targets);
    m.run_forward(targets != nullptr);
    if (!targets) return 0.0;
    double loss = 0;
    check_cuda(
        cudaMemcpyAsync(&loss, m.loss_dev(), sizeof loss, cudaMemcpyDeviceToHost, raw(m.stream)),
        "cudaMemcpyAsync (loss)");
    m.stream.synchronize();
    return loss;
}

void GpuTrainModel::download_logits(float* host) const {
    Impl& m = *impl_;
    check(m.B > 0 && m.B * m.T <= m.logit_rows, ErrorKind::kInvalidArgument,
          "download_logits: no forward yet, or more rows than the logits held");
    m.stream.synchronize();
    check_cuda(cudaMemcpy(host, m.logits,
                          static_cast<size_t>(m.B * m.T * m.config.vocab_size) * sizeof(float),
                          cudaMemcpyDeviceToHost),
               "cudaMemcpy (logits)");
}

void GpuTrainModel::zero_grad() {
    Impl& m = *impl_;
    check_cuda(cudaMemsetAsync(m.grads.data(), 0, m.grads.bytes(), raw(m.stream)),
               "cudaMemsetAsync (gradients)");
}

void GpuTrainModel::backward() {
    impl_->run_backward();
}

GpuTrainModel::StepResult GpuTrainModel::train_step(const int32_t* inputs, const int32_t* targets,
                                                    int64_t B, int64_t T, float lr, float grad_clip,
                                                    int64_t t, const train::AdamWConfig& c) {
    Impl& m = *impl_;
    check(targets != nullptr, ErrorKind::kInvalidArgument, "train_step: no targets");
    m.check_batch(inputs, targets, B, T);
    m.allocate(B, T);
    m.marks = 0;  // (forward() calls outside train_step are not timed)
    m.mark("start");
    m.upload_batch(inputs, targets);
    m.run_forward(true);
    zero_grad();
    m.op("zero_grad");
    m.run_backward();
    const int64_t n = m.layout.total;
    // The bias corrections exactly as train::adamw_update computes them.
    const float bc1 = 1.0f - std::pow(c.beta1, static_cast<float>(t));
    const float bc2 = 1.0f - std::pow(c.beta2, static_cast<float>(t));
    const uint64_t seed = static_cast<uint64_t>(t) * 0x632be59bd9b4e019ull;
    auto step = [&](const auto* g) {
        train_global_norm(m.norm_dev(), m.norm_partial.as<double>(), g, n, m.stream);
        m.op("global norm");
        const uint32_t* decay = m.decay_bits.as<uint32_t>();
        switch (m.state) {
            case OptimizerState::kInt8:
                train_adamw_int8_moments(m.params.as<float>(), g, m.adam_m.as<uint8_t>(),
                                         m.adam_v.as<uint8_t>(), m.adam_ms.as<float>(),
                                         m.adam_vs.as<float>(), decay, n, lr, c.beta1, c.beta2,
                                         c.eps, c.weight_decay, bc1, bc2, m.norm_dev(),
                                         m.loss_dev(), grad_clip, seed, m.stream, kDecayShift);
                break;
            case OptimizerState::kBf16:
                train_adamw_bf16_moments(m.params.as<float>(), g, m.adam_m.as<uint16_t>(),
                                         m.adam_v.as<uint16_t>(), decay, n, lr, c.beta1, c.beta2,
                                         c.eps, c.weight_decay, bc1, bc2, m.norm_dev(),
                                         m.loss_dev(), grad_clip, seed, m.stream, kDecayShift);
                break;
            case OptimizerState::kFp32:
                train_adamw(m.params.as<float>(), g, m.adam_m.as<float>(), m.adam_v.as<float>(),
                            decay, n, lr, c.beta1, c.beta2, c.eps, c.weight_decay, bc1, bc2,
                            m.norm_dev(), m.loss_dev(), grad_clip, m.stream, kDecayShift);
                break;
        }
    };
    if (m.grad16())
        step(m.grads.as<uint16_t>());
    else
        step(m.grads.as<float>());
    m.mark("gradient norm + AdamW");
    double result[2];
    check_cuda(cudaMemcpyAsync(result, m.scalars.data(), sizeof result, cudaMemcpyDeviceToHost,
                               raw(m.stream)),
               "cudaMemcpyAsync (loss, norm)");
    m.stream.synchronize();
    m.collect_marks();
    return {result[0], result[1]};
}

int64_t GpuTrainModel::allocated_bytes() const {
    const Impl& m = *impl_;
    int64_t total = 0;
    for (const DeviceBuffer* b :
         {&m.params,     &m.grads,      &m.adam_m,    &m.adam_v,    &m.adam_ms,
          &m.adam_vs,    &m.decay_bits, &m.qweights,  &m.qweights8, &m.betas,
          &m.bl_offsets, &m.bl_sizes,   &m.consts,    &m.scalars,   &m.norm_partial,
          &m.lm_bf16,    &m.arena,      &m.workspace, &m.blas_ws,   &m.wblas_ws})
        total += static_cast<int64_t>(b->bytes());
    return total;
}

std::vector<MemoryItem> GpuTrainModel::memory_plan(const ModelConfig& config,
                                                   TrainPrecision precision,
                                                   GpuMemoryOptions memory, int64_t B, int64_t T) {
    check(B > 0 && T > 0, ErrorKind::kInvalidArgument, "memory_plan: empty batch [{}, {}]", B, T);
    ModelConfig c = config;
    c.resolve_and_validate("training config");
    const train::ParamLayout L(c);
    const FixedSizes fs = fixed_sizes(c, L, precision, memory);
    int64_t by_cat[kCats] = {};
    by_cat[kCatParams] = static_cast<int64_t>(fs.params);
    by_cat[kCatGrads] = static_cast<int64_t>(fs.grads);
    by_cat[kCatMoments] = static_cast<int64_t>(2 * (fs.moment + fs.moment_scales));
    by_cat[kCatQWeights] = static_cast<int64_t>(fs.qweights + fs.qweights8 + fs.lm_bf16);
    by_cat[kCatSmall] = static_cast<int64_t>(fs.decay_bits + fs.small);
    Activations acts;
    acts.B = B, acts.T = T;
    Carver a;
    a.by_cat = by_cat;
    acts.carve(c, precision == TrainPrecision::kBf16, memory, a);
    by_cat[kCatScanWs] = static_cast<int64_t>(ttt_scan_workspace_bytes(scan_shape(c, B, T)));
    by_cat[kCatBlasWs] = static_cast<int64_t>(blas_workspace_bytes()) *
                         (overlap_mode(c, precision == TrainPrecision::kBf16, memory) != 0 ? 2 : 1);
    std::vector<MemoryItem> out;
    for (int i = 0; i < kCats; ++i) {
        std::string name = kCatNames[i];
        if (i == kCatMoments)
            name += memory.moments == OptimizerState::kInt8   ? " (int8 + block scales)"
                    : memory.moments == OptimizerState::kBf16 ? " (bf16)"
                                                              : " (fp32)";
        if (i == kCatGrads) name += memory.grads == GradPrecision::kBf16 ? " (bf16)" : " (fp32)";
        out.push_back({std::move(name), by_cat[i]});
    }
    return out;
}

}  // namespace bitttt::cuda
