// Forward/backward pairs of every training op (DESIGN.md §2), in the shape of llm.c: each
// X_forward(out, ..., inp, weights..., sizes) has an X_backward(dinp, dweights..., dout, inp,
// weights..., saved..., sizes) with the same argument order. Backward passes ACCUMULATE (+=)
// into dinp and dweights, so a tensor read by several ops just sums its gradients; the caller
// zeroes gradient buffers first. Templated on the float type: fp32 trains, fp64 runs the finite
// difference checks. Tensors are row-major; N = batch × time rows.
#pragma once

#include <cstdint>

namespace bitttt::train {

// out[n, :] = wte[tokens[n], :]. tokens must be < V (checked by the caller).
template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, int64_t N, int64_t C);
template <typename T>
void embedding_backward(T* dwte, const T* dout, const int32_t* tokens, int64_t N, int64_t C);

// RMSNorm: out = inp · rstd · weight, rstd = 1/sqrt(mean(inp²) + eps) per row (stored for the
// backward). weight = nullptr means all ones (the delta rule's output norm).
template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* weight, int64_t N, int64_t C, T eps);
// dinp_k += rstd · (w_k dout_k − inp_k · rstd² · mean_j(w_j dout_j inp_j)); dweight_j += Σ_n
// dout_j inp_j rstd. dweight may be nullptr (no weight).
template <typename T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight,
                      const T* rstd, int64_t N, int64_t C);

// L2 normalization of rows of length C: out = inp / (‖inp‖ + 1e-6), ‖inp‖ stored in norm.
// The TTT heads are rows of their own: [N, H·Dh] is N·H rows of Dh.
template <typename T>
void l2norm_forward(T* out, T* norm, const T* inp, int64_t N, int64_t C);
template <typename T>
void l2norm_backward(T* dinp, const T* dout, const T* inp, const T* norm, int64_t N, int64_t C);

// Activation fake quantization of BitLinear inputs (§2.1, act_bits = 8): per row
// γ = max(max|x|, 1e-5), out = clamp(round(x·127/γ), −127, 127) · γ/127 (round half to even,
// as the inference kernel). act_bits = 0 copies. Its backward is the straight-through
// estimator, the identity: the consumer's gradient w.r.t. out is used as the gradient w.r.t. inp.
template <typename T>
void act_quant_forward(T* out, const T* inp, int64_t N, int64_t C, int act_bits);

// Weight fake quantization (§2.1): β = mean(|w|) over the tensor, out = clamp(round(w/(β+1e-8)),
// −1, 1) · β. Backward: straight-through (identity), so the matmul's dweight is the master
// weight's gradient. Returns β.
template <typename T>
T weight_quant_forward(T* out, const T* w, int64_t n);

// out[N, OC] = inp[N, C] · weight[OC, C]ᵀ + bias (bias may be nullptr). scratch: C·OC values
// (weight transposed so the product runs as axpys).
template <typename T>
void matmul_forward(T* out, const T* inp, const T* weight, const T* bias, int64_t N, int64_t C,
                    int64_t OC, T* scratch);
// dinp += dout · weight; dweight += doutᵀ · inp; dbias += Σ_n dout (dinp/dbias may be nullptr).
template <typename T>
void matmul_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                     int64_t N, int64_t C, int64_t OC);

// SwiGLU's product: out = silu(gate) · up, silu(g) = g·σ(g).
template <typename T>
void swiglu_forward(T* out, const T* gate, const T* up, int64_t n);
// dgate += dout · up · σ(g)(1 + g(1 − σ(g))); dup += dout · silu(g).
template <typename T>
void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n);

// The delta rule's step size: out = scale · σ(inp) elementwise (η_t = inner_lr · σ(lr·x + b)).
template <typename T>
void sigmoid_scale_forward(T* out, const T* inp, int64_t n, T scale);
// dinp += dout · scale · σ(1 − σ), from the forward's input.
template <typename T>
void sigmoid_scale_backward(T* dinp, const T* dout, const T* inp, int64_t n, T scale);

// out = a + b elementwise (the residual connections); its backward is the identity to both.
template <typename T>
void residual_forward(T* out, const T* a, const T* b, int64_t n);

// Softmax cross-entropy over rows of V logits with integer targets: losses[n] = logsumexp −
// logit[target]; logits are replaced by the probabilities (the backward reads them). Returns the
// mean loss (accumulated in double).
template <typename T>
double crossentropy_forward(T* losses, T* logits, const int32_t* targets, int64_t N, int64_t V);
// dlogits = (probs − onehot(target)) · dloss, with dloss = 1/N for the mean loss; may alias probs.
template <typename T>
void crossentropy_backward(T* dlogits, const T* probs, const int32_t* targets, int64_t N, int64_t V,
                           T dloss);

}  // namespace bitttt::train
