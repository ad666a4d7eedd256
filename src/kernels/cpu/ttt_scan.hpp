// The `reconstruct` TTT recurrence of DESIGN.md §2.2 over a sequence (the projections around it
// are batched ternary products, see model/ttt_layer.hpp).
//
// For each token t, with the features f_t = down(x_t) already computed:
//     f̂_t = f_t / (‖f_t‖₂ + 1e-6)
//     z_t = W f̂_t                      (read before the update)
//     W  ← W − η (z_t − f̂_t) f̂_tᵀ       (one gradient step on ½‖W f̂ − f̂‖²)
//
// State layout: the kernels keep S = Wᵀ, row-major (s[j * dt + i] = W[i][j]), i.e. W stored
// column-major, as in §2.3a. Then both halves of a step are row operations on S:
//     z   = Σ_j f̂[j] · S[j, :]           (an axpy per row)
//     S[j, :] += (−η f̂[j]) · (z − f̂)     (an axpy per row)
// so the SIMD versions stream S once per pass, applying the previous tokens' pending update to each
// row on the way and reading the new tokens' z from it (two tokens per pass, see
// ttt_scan_avx512.cpp).
//
// Stability: W − I evolves as (W − I)(I − η f̂ f̂ᵀ) and ‖f̂‖ < 1, so for 0 ≤ η ≤ 2 the norm of
// W − I never grows: finite inputs and a finite start state give finite outputs.
#pragma once

#include <cstdint>

namespace bitttt::kernels {

// Runs the recurrence over `tokens` tokens. s: dt*dt floats (S = Wᵀ, see above), updated in place.
// f: token t's features at f + t * f_stride (dt floats); z: written at z + t * z_stride.
// z may alias f when the strides are equal (each token's features are read before its output is
// written). Dispatches on active_isa(); allocates nothing for dt <= kTttScanMaxStackDim.
void ttt_scan_reconstruct(float* s, int64_t dt, float eta, const float* f, int64_t f_stride,
                          int64_t tokens, float* z, int64_t z_stride);

// The scalar reference (the obvious loops, one token after another) every version is tested
// against.
void ttt_scan_reconstruct_scalar(float* s, int64_t dt, float eta, const float* f, int64_t f_stride,
                                 int64_t tokens, float* z, int64_t z_stride);

// Per-ISA versions (each in a translation unit compiled for its ISA; call the dispatcher).
void ttt_scan_reconstruct_avx2(float* s, int64_t dt, float eta, const float* f, int64_t f_stride,
                               int64_t tokens, float* z, int64_t z_stride);
void ttt_scan_reconstruct_avx512(float* s, int64_t dt, float eta, const float* f, int64_t f_stride,
                                 int64_t tokens, float* z, int64_t z_stride);

// Larger states still work; their per-token scratch (3·dt floats) then comes from the heap once per
// call.
inline constexpr int64_t kTttScanMaxStackDim = 256;

// ‖f‖₂ + 1e-6 → the factor that normalizes f (shared so every ISA divides the same way).
inline constexpr float kTttNormEps = 1e-6f;

}  // namespace bitttt::kernels
