// The model as training sees it (llm.c's GPT2 struct): all parameters in one contiguous buffer
// laid out by parameter_table(config), gradients mirroring it, BitLinear weights fake-quantized
// into a third mirror each forward, and every activation the backward needs in one arena.
//
// forward() runs DESIGN.md §2 over a batch [B, T] of token sequences (each sequence starts from
// W_0 = 0) and, given targets, the mean next-token cross-entropy; backward() accumulates the
// gradient of that loss into `grads` (call zero_grad() first) by the straight-through estimator
// for both roundings of BitLinear and BPTT through every TTT state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/aligned_buffer.hpp"
#include "kernels/cpu/ternary.hpp"
#include "model/config.hpp"
#include "train/bf16_linear.hpp"
#include "train/bitlinear.hpp"

namespace bitttt::train {

// Pointers to one layer's tensors inside a parameter-shaped buffer (params, grads, quantized).
template <typename T>
struct LayerTensors {
    T *norm1 = nullptr, *norm2 = nullptr;
    T *ttt_down = nullptr, *ttt_up = nullptr;                                  // reconstruct
    T *ttt_q = nullptr, *ttt_k = nullptr, *ttt_v = nullptr, *ttt_o = nullptr;  // delta
    T *ttt_lr_weight = nullptr, *ttt_lr_bias = nullptr;
    T *gate_proj = nullptr, *up_proj = nullptr, *down_proj = nullptr;
};
template <typename T>
struct ModelTensors {
    T *embed = nullptr, *norm_f = nullptr, *lm_head = nullptr;
    std::vector<LayerTensors<T>> layers;
};

// Where each ParamSpec lives in the flat buffer (offsets rounded up to 16 elements so every
// tensor starts on a 64-byte boundary; the padding stays zero).
struct ParamLayout {
    std::vector<ParamSpec> specs;
    std::vector<int64_t> offsets;
    int64_t total = 0;
    explicit ParamLayout(const ModelConfig& config);
    int64_t index_of(const std::string& name) const;  // throws Error if absent
};

template <typename T>
class TrainModel {
  public:
    explicit TrainModel(const ModelConfig& config);
    TrainModel(const TrainModel&) = delete;
    TrainModel& operator=(const TrainModel&) = delete;

    const ModelConfig& config() const { return config_; }
    const ParamLayout& layout() const { return layout_; }
    T* param(size_t i) { return params.data() + layout_.offsets[i]; }
    T* grad(size_t i) { return grads.data() + layout_.offsets[i]; }

    // Seeded init: norms 1, biases 0, every matrix N(0, 0.02²) with the projections that write
    // into the residual stream (ttt.up / ttt.o, down_proj) scaled by 1/sqrt(2L), as GPT-2.
    void init_random(uint64_t seed);

    // Runs the forward over inputs [B, T]. With targets (same shape) returns the mean loss and
    // leaves the probabilities for backward(); without, leaves the logits ([B·T, V]) and returns 0.
    double forward(const int32_t* inputs, const int32_t* targets, int64_t B, int64_t T_len);
    void zero_grad() { grads.fill_zero(); }
    // Gradient of the last forward's mean loss (which must have had targets), added to grads.
    void backward();

    const T* logits() const { return logits_; }  // after forward without targets
    int64_t batch() const { return B_; }
    int64_t seq_len() const { return T_; }

    AlignedBuffer<T> params, grads;
    // Off: BitLinear weights are used as they are (an exact fp model, for gradient checks).
    bool quantize_weights = true;
    // With quantized weights and act_bits = 8, the fp32 model runs its forward BitLinear products
    // on the integer codes (bitlinear.hpp): kInt8 with the inference kernel, kFp32 with the
    // training GEMM; both give the same bits. kFakeQuant (and fp64 models) use the fake-quantized
    // floats.
    BitLinearPath bitlinear_path = BitLinearPath::kInt8;
    // True when the forward's BitLinear products run on integer codes (see bitlinear_path).
    bool integer_products() const;
    // Opt-in bf16 products (bf16_linear.hpp; fp32 models only: an fp64 model throws): lm_head's
    // forward and both of its backward products, and the BitLinear backward products (dx and
    // dW), with bf16 operands and fp32 sums, as torch's CPU autocast. Off by default: the fp32
    // CPU trainer is the GPU trainer's reference and the gradient checks' subject. The forward
    // BitLinear products stay on the exact integer codes (or, off that path, fp32).
    // Without AVX512_BF16 (vdpbf16ps) on the CPU, or below Isa::kAvx512, the products fall back
    // to the fp32 path (the emulation would be no faster than fp32): see bf16_in_use().
    bool bf16_products = false;
    // With bf16_products: off keeps the BitLinear backward products in fp32 (benchmarks).
    bool bf16_bitlinear_backward = true;
    // True when bf16_products is on and this CPU runs the products in bf16.
    bool bf16_in_use() const;
    // Seconds spent in the TTT scan (forward + backward) since the last reset, for benchmarks.
    double ttt_scan_seconds = 0;

  private:
    // Every activation of one layer the backward reads ([N, ·] rows, N = B·T).
    struct LayerActs {
        T* res = nullptr;  // the layer's input (residual stream)
        T *ln1 = nullptr, *ln1_rstd = nullptr, *ln1_q = nullptr;
        // reconstruct
        T *f = nullptr, *fhat = nullptr, *fnorm = nullptr, *z = nullptr, *z_q = nullptr;
        // delta
        T *q = nullptr, *k = nullptr, *v = nullptr, *qhat = nullptr, *khat = nullptr;
        T *qnorm = nullptr, *knorm = nullptr, *lr_logit = nullptr, *eta = nullptr;
        T *y = nullptr, *o = nullptr, *o_rstd = nullptr, *o_q = nullptr;
        T* ckpt = nullptr;  // TTT states at chunk starts
        T *h = nullptr, *ln2 = nullptr, *ln2_rstd = nullptr, *ln2_q = nullptr;
        T *gate = nullptr, *up = nullptr, *swi = nullptr, *swi_q = nullptr;
    };
    void allocate(int64_t B, int64_t T_len);
    // A BitLinear input: out = the act_bits fake quantization of inp [N, C] (what the backward
    // reads), and its codes in codes_ when integer_products().
    void quantize_input(T* out, const T* inp, int64_t N, int64_t C);
    // out [N, OC] = inp_q · weight_qᵀ for a BitLinear weight of the quantized mirror; inp_q is
    // the last quantize_input's output (its codes are used on the integer path).
    void bitlinear_product(T* out, const T* inp_q, const T* weight_q, int64_t N, int64_t C,
                           int64_t OC);
    // matmul_backward (no bias), in bf16 for lm_head (bitlinear false) and the BitLinear weights
    // as bf16_products and bf16_bitlinear_backward say.
    void linear_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight,
                         int64_t N, int64_t C, int64_t OC, bool bitlinear);
    // swiglu_forward / swiglu_backward; with bf16 products the vectorized-exp versions
    // (fast_ops.hpp), as the cross-entropy there.
    void swiglu(T* out, const T* gate, const T* up, int64_t n) const;
    void swiglu_grad(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n) const;

    ModelConfig config_;
    ParamLayout layout_;
    AlignedBuffer<T> qparams_;  // BitLinear weights fake-quantized (the rest unused)
    // The integer path: every BitLinear weight's packed ternary codes (per parameter index, with
    // its β; empty for the others), refreshed each forward, and the last input's codes.
    AlignedBuffer<uint8_t> packed_;
    std::vector<kernels::TernaryWeights> ternary_;
    ActCodes codes_;
    Bf16Linear bf16_;              // the bf16 products' packed operands
    const T* codes_of_ = nullptr;  // the quantize_input output codes_ belongs to
    ModelTensors<T> p_, g_, fwd_;  // params, grads, what the forward reads (quantized BitLinear)
    int64_t B_ = 0, T_ = 0;
    AlignedBuffer<T> arena_;    // activations
    AlignedBuffer<T> scratch_;  // backward temporaries and matmul transposes
    std::vector<int32_t> inputs_, targets_;
    std::vector<LayerActs> acts_;
    T *lnf_ = nullptr, *lnf_rstd_ = nullptr, *logits_ = nullptr, *losses_ = nullptr;
    T* final_res_ = nullptr;
    T *transpose_ = nullptr, *branch_ = nullptr;
    // Backward temporaries.
    T *dres_ = nullptr, *dln_ = nullptr, *dswi_ = nullptr, *dgate_ = nullptr, *dup_ = nullptr;
    T* dttt_[7] = {};
    T *deta_ = nullptr, *dlr_ = nullptr;
    bool have_targets_ = false;
};

extern template class TrainModel<float>;
extern template class TrainModel<double>;

}  // namespace bitttt::train
