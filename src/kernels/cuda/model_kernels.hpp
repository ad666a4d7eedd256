// CUDA kernels of the model forward that kernels.hpp does not have (DESIGN.md §5): the TTT
// recurrence of both rules over a chunk of tokens, the per-head L2 normalization and step sizes of
// the `delta` rule, embedding lookups and the fp32 GEMV of an unconverted lm_head.
//
// As in kernels.hpp: every pointer is a DEVICE pointer, arguments are checked on the host (Error
// naming the argument), work is enqueued on `stream` without waiting, and results match the CPU
// references (src/model/delta_rule.hpp, forward.cpp) within a few ulps (float sums in another
// order, expf).
#pragma once

#include <cstdint>

#include "kernels/cuda/device.hpp"
#include "kernels/cuda/kernels.hpp"

namespace bitttt::cuda {

// The delta-rule scan of src/model/delta_rule.hpp on the GPU, same fields and semantics (device
// pointers): per head, W_t = W_{t-1} − η_t (W_{t-1} k̂_t − v_t) k̂_tᵀ and o_t = W q̂_t read after
// (delta) or before (reconstruct) the update. Rows of W are independent recurrences, so one warp
// owns one row for all `tokens` tokens in order (the row stays in registers for Dh <= 2048): one
// launch runs a whole prompt chunk, and a decode token is one pass over W.
struct DeltaScanArgs {
    float* w = nullptr;  // [heads, dh, dh], row-major per head
    int64_t heads = 1;
    int64_t head_dim = 0;
    int64_t tokens = 0;
    const float* k = nullptr;  // unit norm per head
    int64_t k_stride = 0;
    const float* v = nullptr;
    int64_t v_stride = 0;
    const float* q = nullptr;  // null: q = k
    int64_t q_stride = 0;
    const float* eta = nullptr;  // token t, head h at eta[t * eta_stride + h]
    int64_t eta_stride = 0;
    bool read_after_update = true;
    float* out = nullptr;  // must not alias k, v or q
    int64_t out_stride = 0;
};
void delta_rule_scan(const DeltaScanArgs& args, const Stream& stream);

// x̂ = x / (‖x‖₂ + 1e-6) for every head segment of dh values of n rows (row t at x + t*stride),
// in place: the unit keys/queries of both TTT rules.
void l2_normalize_heads(float* x, int64_t n, int64_t stride, int64_t heads, int64_t dh,
                        const Stream& stream);

// The delta rule's step sizes: eta[t*heads + h] = inner_lr · sigmoid(lr_w[h] · u_t + lr_b[h]) for
// n rows u_t of d floats (row t at u + t*d); lr_w [heads, d].
void delta_step_sizes(const float* lr_w, const float* lr_b, int64_t heads, int64_t d,
                      const float* u, int64_t n, float inner_lr, float* eta, const Stream& stream);

// x[t, :] = table[ids[t], :] for t < n (ids on the device, already checked to be in range);
// table [V, d] of floats or of bf16 bit patterns (bf16 = true).
void embed_lookup(const void* table, bool bf16, int64_t d, const int32_t* ids, int64_t n, float* x,
                  const Stream& stream);

// y[r] = Σ_k w[r, k] x[k] for r < rows (fp32 weights, row-major), fp32 accumulation.
void f32_gemv(const float* w, int64_t rows, int64_t cols, const float* x, float* y,
              const Stream& stream);

}  // namespace bitttt::cuda

namespace bitttt::cuda {

// ---- one token's norm / SiLU and quantization spread over several blocks (decode) ----
//
// The single-block kernels of kernels.hpp (rmsnorm_quantize, silu_mul_quantize,
// quantize_activations) are latency-bound for one token: one SM reads the whole row and reduces
// it three times. These spread the row over ceil(k/1024) blocks that agree on the row's statistics
// through a grid barrier in `workspace` (kWideWorkspaceBytes of device memory, zeroed once, one per
// stream: two launches on different streams must not share it). Partials are summed in a fixed
// order, so results are deterministic; they equal the single-block kernels' except that the sum of
// squares is added in another order (a normalized value may differ in the last bit). m = 1 only,
// k <= kMaxWideCols; out.q 16-byte aligned, zero padded to packed_cols(k).
inline constexpr int64_t kWideWorkspaceBytes = 4096;
inline constexpr int64_t kMaxWideCols = 64 * 1024;
void rmsnorm_quantize_wide(const float* x, int64_t d, const float* weight, float eps,
                           const QuantizedActivations& out, void* workspace, const Stream& stream);
void silu_mul_quantize_wide(const float* gate, const float* up, int64_t n,
                            const QuantizedActivations& out, void* workspace, const Stream& stream);
void quantize_activations_wide(const float* x, int64_t k, const QuantizedActivations& out,
                               void* workspace, const Stream& stream);

}  // namespace bitttt::cuda

namespace bitttt::cuda {

// ---- the decode GEMV with its input quantization fused in ----
//
// y_j = W_j · xq for j < count (as ternary_gemv_batch), where xq is not read from memory but
// computed inside every block from the float row a[0, k):
//     norm_weight == null: xq = quantize_activations(a)                  (bit-identical)
//     otherwise:           xq = quantize_activations(rmsnorm(a; norm_weight, eps))
// (the RMSNorm's double sum of squares is added in another order than rmsnorm_quantize's, so
// a normalized value may differ in the last bit). Every block redoes the row's reductions from L2
// (k floats) instead of waiting for a separate single-block kernel: one kernel less on the critical
// path of a decode token. k <= kMaxFusedGemvCols.
inline constexpr int64_t kMaxFusedGemvCols = 16384;
void ternary_gemv_fused(const kernels::TernaryWeights* w, float* const* y, int count,
                        const float* a, int64_t k, const float* norm_weight, float eps,
                        bool accumulate, const Stream& stream);

}  // namespace bitttt::cuda
