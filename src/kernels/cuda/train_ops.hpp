// CUDA versions of the training ops of src/train/ops.hpp (DESIGN.md §2, §2.4), fp32, with the
// same semantics: every X_backward ACCUMULATES (+=) into its gradient outputs, the caller zeroes
// them first. Every pointer is a DEVICE pointer; every launcher enqueues on `stream` and returns
// without waiting. bf16 tensors are passed as uint16_t bit patterns (no CUDA types here).
//
// Differences from the CPU ops, all within float rounding: sums run in another order (warp and
// block reductions; the rmsnorm/l2norm sums of squares are still in double), expf instead of
// std::exp, and the column sums of embedding_backward / rmsnorm_backward's dweight /
// column_sum_accumulate use float atomics (their order varies between runs).
//
// The bf16 path of the BitLinear products (train_model.cpp) stores quantized activations as their
// integer codes in bf16 (exact: |code| <= 127 needs 7 bits of mantissa) with one fp32 scale per row
// (γ/127), and ternary weights as codes {-1, 0, 1} in bf16 with β per tensor, so the product of
// codes accumulated in fp32 is exact and the scales are applied once afterwards (DESIGN.md §2.1).
//
// The int8 forward products (int8_gemm.hpp) read the same codes as int8: the quantizing ops take
// an optional `codes8` output (act_bits 8 / quantized weights only) beside the bf16 one, and the
// ops that read a raw product of codes take a flag saying it holds int32 (the int8 product's
// output, converted exactly) instead of fp32; the results are the same bit for bit. Both come
// last in the argument lists (defaults: no int8 codes, fp32 products).
#pragma once

#include <cstdint>

#include "kernels/cuda/device.hpp"

namespace bitttt::cuda {

// out[n, :] = wte[tokens[n], :]; tokens must be < V (the caller checks on the host).
void train_embedding_forward(float* out, const int32_t* tokens, const float* wte, int64_t N,
                             int64_t C, const Stream& stream);
// dwte[tokens[n], :] += dout[n, :] (float atomics).
void train_embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int64_t N,
                              int64_t C, const Stream& stream);

// RMSNorm of rows: out = inp · rstd · weight (weight nullptr: ones), rstd stored per row.
void train_rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight,
                           int64_t N, int64_t C, float eps, const Stream& stream);
// dinp += rstd (w ⊙ dout − inp · rstd² · mean(w ⊙ dout ⊙ inp)); dweight += Σ_n dout inp rstd
// (dweight nullptr: skipped).
void train_rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                            const float* weight, const float* rstd, int64_t N, int64_t C,
                            const Stream& stream);

// The same, then the bf16 forms of the updated dinp that the next BitLinear backward reads, as
// train_to_bf16_pair(dinp_bf16, dinp_scaled_bf16, dinp, row_scale) would write them (in the same
// pass where a row fits the registers).
void train_rmsnorm_backward_pair(float* dinp, float* dweight, uint16_t* dinp_bf16,
                                 uint16_t* dinp_scaled_bf16, const float* row_scale,
                                 const float* dout, const float* inp, const float* weight,
                                 const float* rstd, int64_t N, int64_t C, const Stream& stream);

// RMSNorm fused with the activation quantization of train_act_quant_forward (the normed row is
// recomputed, never stored): rstd, codes and scale as the two ops in a row would write them.
void train_rmsnorm_quant_forward(float* rstd, uint16_t* codes, float* scale, const float* inp,
                                 const float* weight, int64_t N, int64_t C, float eps, int act_bits,
                                 const Stream& stream, int8_t* codes8 = nullptr);

// The residual add of a rescaled product followed by the next branch's fused RMSNorm +
// quantization: h = a + b · row_scale[n] · scalar[0] (as train_residual_scaled_forward; stored),
// then rstd, codes and scale of h as train_rmsnorm_quant_forward would write them (bit for bit),
// in one pass where a row fits the registers (C % 4 == 0, C <= 1024), else the two ops.
// b_i32: b holds int32 (an int8 product).
void train_residual_norm_quant(float* h, const float* a, const float* b, const float* row_scale,
                               const float* scalar, float* rstd, uint16_t* codes, float* scale,
                               const float* weight, int64_t N, int64_t C, float eps, int act_bits,
                               const Stream& stream, int8_t* codes8 = nullptr, bool b_i32 = false);

// L2 normalization of rows of C: out = inp / (‖inp‖ + 1e-6), ‖inp‖ stored in norm.
void train_l2norm_forward(float* out, float* norm, const float* inp, int64_t N, int64_t C,
                          const Stream& stream);
void train_l2norm_backward(float* dinp, const float* dout, const float* inp, const float* norm,
                           int64_t N, int64_t C, const Stream& stream);

// Per-row absmax activation fake quantization (act_bits 8; round half to even, as the CPU):
//   γ = max(max|x|, 1e-5), code = clamp(rint(x · (127/γ)), −127, 127), x_q = code · (γ/127).
// Writes any of: out (the fake-quantized floats x_q), codes (bf16 of code) and scale (γ/127 per
// row); nullptr outputs are skipped. act_bits 0: out = x, codes = bf16(x), scale = 1.
// Its backward is the straight-through estimator (the identity), so it has no kernel.
void train_act_quant_forward(float* out, uint16_t* codes, float* scale, const float* inp, int64_t N,
                             int64_t C, int act_bits, const Stream& stream,
                             int8_t* codes8 = nullptr);

// Weight fake quantization of `count` tensors of one flat buffer at once: tensor i is
// w[offsets[i] .. offsets[i] + sizes[i]) (offsets, sizes: device arrays). Per tensor
// β = mean|w| (double sum), code = clamp(rint(w / (β + 1e-8)), −1, 1); writes beta[i] and any of
// out[offset + j] = code · β (fp32) and codes[offset + j] = bf16(code). quantize false: out = w,
// codes = bf16(w) and beta = 1 (the unquantized model of the gradient checks). max_size: the
// largest sizes[i]; partial: train_weight_beta_partials(count, max_size) doubles of scratch.
void train_weight_quant_forward(float* out, uint16_t* codes, float* beta, double* partial,
                                const float* w, const int64_t* offsets, const int64_t* sizes,
                                int count, int64_t max_size, bool quantize, const Stream& stream);
// Its two halves, for a model that keeps the codes of one layer at a time: the betas of all
// tensors (once per forward), then the codes / fp32 values of a run of tensors whenever they are
// needed, with the betas, offsets and sizes of that run (pointers into the full arrays), written at
// out[offsets[i] − out_base + j] and codes[offsets[i] − out_base + j] (out_base: the run's first
// offset, so the run lands at the start of a buffer of its span). Same values as the whole call.
int64_t train_weight_beta_partials(int count, int64_t max_size);
void train_weight_beta(float* beta, double* partial, const float* w, const int64_t* offsets,
                       const int64_t* sizes, int count, int64_t max_size, bool quantize,
                       const Stream& stream);
// codes8 (quantize only): the ternary codes as int8 too, at the same offsets.
void train_weight_quant_apply(float* out, uint16_t* codes, const float* beta, const float* w,
                              const int64_t* offsets, const int64_t* sizes, int count,
                              int64_t max_size, int64_t out_base, bool quantize,
                              const Stream& stream, int8_t* codes8 = nullptr);

// out = silu(gate) · up; backward: dgate += dout · up · σ(g)(1 + g(1 − σ(g))), dup += dout ·
// silu(g).
void train_swiglu_forward(float* out, const float* gate, const float* up, int64_t n,
                          const Stream& stream);
void train_swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                           const float* up, int64_t n, const Stream& stream);

// The MLP's fused forward: quantizes swi = silu(g) · u per row exactly as train_swiglu_forward
// followed by train_act_quant_forward would (swi is never stored), where g and u are the raw
// products of codes rescaled on the fly, g = gate[n, :] · row_scale[n] · beta_gate[0] and
// u = up[n, :] · row_scale[n] · beta_up[0] (row_scale nullptr: gate and up are final). gate and up
// are left as they are: the backward rescales them the same way (bit-identical values).
// raw_i32: gate and up hold int32 (int8 products).
void train_swiglu_quant_forward(const float* gate, const float* up, const float* row_scale,
                                const float* beta_gate, const float* beta_up, float* out,
                                uint16_t* codes, float* scale, int64_t N, int64_t M, int act_bits,
                                const Stream& stream, int8_t* codes8 = nullptr,
                                bool raw_i32 = false);
// The MLP's fused backward for the bf16 products: the gradients of train_swiglu_backward, written
// (not accumulated) as bf16, each plain and multiplied by row_scale[n] (the γ/127 of the products'
// input): the two forms the BitLinear backward reads. With beta_gate (and beta_up), gate and up
// are the raw products of codes of train_swiglu_quant_forward, rescaled here as it does by
// row_scale[n] · beta; beta_gate nullptr: gate and up are final. dout16 (non-null): dout in bf16
// (dout is not read; GpuMemoryOptions::bf16_dx).
void train_swiglu_backward_bf16(uint16_t* dgate, uint16_t* dgate_scaled, uint16_t* dup,
                                uint16_t* dup_scaled, const float* row_scale,
                                const float* beta_gate, const float* beta_up, const float* dout,
                                const float* gate, const float* up, int64_t N, int64_t M,
                                const Stream& stream, bool raw_i32 = false,
                                const uint16_t* dout16 = nullptr);

// out = scale · σ(inp); backward dinp += dout · scale · σ (1 − σ).
void train_sigmoid_scale_forward(float* out, const float* inp, int64_t n, float scale,
                                 const Stream& stream);
void train_sigmoid_scale_backward(float* dinp, const float* dout, const float* inp, int64_t n,
                                  float scale, const Stream& stream);

// The delta rule's step-size projection (ttt.lr, fp32, H = heads outputs of rows of D):
// logit[n, h] = Σ_c x[n, c] · w[h, c] + bias[h] and eta = scale · σ(logit), in one pass over x;
// its input gradient dx[n, c] = Σ_h dlogit[n, h] · w[h, c] (written, not accumulated).
void train_lr_gate_forward(float* logit, float* eta, const float* x, const float* w,
                           const float* bias, int64_t N, int64_t D, int64_t H, float scale,
                           const Stream& stream);
void train_lr_gate_dx(float* dx, const float* dlogit, const float* w, int64_t N, int64_t D,
                      int64_t H, const Stream& stream);

// out = a + b (the residual connection; its backward is the identity).
void train_residual_forward(float* out, const float* a, const float* b, int64_t n,
                            const Stream& stream);
// out[n, c] = a[n, c] + b[n, c] · row_scale[n] · scalar[0]: the rescale of a product of codes
// (train_scale_rows) fused into the residual add that consumes it.
void train_residual_scaled_forward(float* out, const float* a, const float* b,
                                   const float* row_scale, const float* scalar, int64_t N,
                                   int64_t C, const Stream& stream, bool b_i32 = false);

// x[n, c] *= row_scale[n] · scalar[0] for N rows of C (either may be nullptr = 1): the rescale
// of a product of codes, (Σ code_x code_w) · γ_n/127 · β.
// i32: x holds the int32 of an int8 product on entry (floats after).
void train_scale_rows(float* x, const float* row_scale, const float* scalar, int64_t N, int64_t C,
                      const Stream& stream, bool i32 = false);
// out[n, c] += bias[c].
void train_add_bias(float* out, const float* bias, int64_t N, int64_t C, const Stream& stream);
// dst[c] += Σ_n src[n, c] (a bias gradient).
void train_column_sum_accumulate(float* dst, const float* src, int64_t N, int64_t C,
                                 const Stream& stream);

// bf16 copies for the tensor-core products: out = bf16(in), round to nearest even; with row_scale,
// out[n, c] = bf16(in[n, c] · row_scale[n]) for N rows of C.
void train_to_bf16(uint16_t* out, const float* in, int64_t n, const Stream& stream);
void train_to_bf16_rows(uint16_t* out, const float* in, const float* row_scale, int64_t N,
                        int64_t C, const Stream& stream);
// Both in one pass over `in` (the two inputs of a BitLinear backward): plain = bf16(in),
// scaled = bf16(in[n, c] · row_scale[n]).
void train_to_bf16_pair(uint16_t* plain, uint16_t* scaled, const float* in, const float* row_scale,
                        int64_t N, int64_t C, const Stream& stream);

// The fused softmax cross-entropy, forward and backward in one pass over each row of V logits:
// losses[n] = logsumexp(z) − z[target] and the gradient of the mean loss
// dlogits[n, :] = (softmax(z) − onehot(target)) · dloss, written as fp32 (dlogits_f32, which may
// alias logits) or bf16 (dlogits_bf16), whichever is not nullptr. No probability buffer.
void train_crossentropy_fused(float* losses, float* dlogits_f32, uint16_t* dlogits_bf16,
                              const float* logits, const int32_t* targets, int64_t N, int64_t V,
                              float dloss, const Stream& stream);
// out[0] = Σ x[i] / n in double (one block: a fixed order).
void train_mean(double* out, const float* x, int64_t n, const Stream& stream);

// Global gradient norm: out[0] = √(Σ g²) in double. partial: train_norm_partials(n) doubles.
// Gradients in fp32 or as bf16 bits (--gpu-grad-precision bf16; the same formulas in fp32 after
// the exact widening, in every launcher below).
int64_t train_norm_partials(int64_t n);
void train_global_norm(double* out, double* partial, const float* g, int64_t n,
                       const Stream& stream);
void train_global_norm(double* out, double* partial, const uint16_t* g, int64_t n,
                       const Stream& stream);

// One AdamW step over the whole flat buffer, as train::adamw_update with decay per element
// (decay_bits: bit j % 32 of word j / 32 set, j = i >> decay_shift, = weight decay on element i:
// decay_shift 0 is 1 bit per parameter instead of a byte, 4 one bit per 16 parameters, enough for
// ParamLayout whose tensors start at multiples of 16). bc1 = 1 − β1^t, bc2 = 1 − β2^t (computed on
// the host as the CPU does). The clipping scale comes from the device: s = norm > clip ? clip /
// norm : 1. When the norm (or *loss, if given) is not finite, nothing is updated (the host reports
// the step).
void train_adamw(float* params, const float* grads, float* m, float* v, const uint32_t* decay_bits,
                 int64_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                 float bc1, float bc2, const double* norm, const double* loss, float grad_clip,
                 const Stream& stream, int decay_shift = 0);
void train_adamw(float* params, const uint16_t* grads, float* m, float* v,
                 const uint32_t* decay_bits, int64_t n, float lr, float beta1, float beta2,
                 float eps, float weight_decay, float bc1, float bc2, const double* norm,
                 const double* loss, float grad_clip, const Stream& stream, int decay_shift = 0);
// The same with the moments m, v stored as bf16 (half the optimizer state): each element's step
// runs in fp32 exactly as train_adamw (the parameter update uses this step's fp32 moments), then
// the new moments are rounded to bf16 stochastically (unbiased: the expected stored value is the
// fp32 one) with random bits hashed from (element, seed); pass a seed that changes every step.
void train_adamw_bf16_moments(float* params, const float* grads, uint16_t* m, uint16_t* v,
                              const uint32_t* decay_bits, int64_t n, float lr, float beta1,
                              float beta2, float eps, float weight_decay, float bc1, float bc2,
                              const double* norm, const double* loss, float grad_clip,
                              uint64_t seed, const Stream& stream, int decay_shift = 0);
void train_adamw_bf16_moments(float* params, const uint16_t* grads, uint16_t* m, uint16_t* v,
                              const uint32_t* decay_bits, int64_t n, float lr, float beta1,
                              float beta2, float eps, float weight_decay, float bc1, float bc2,
                              const double* norm, const double* loss, float grad_clip,
                              uint64_t seed, const Stream& stream, int decay_shift = 0);

}  // namespace bitttt::cuda
