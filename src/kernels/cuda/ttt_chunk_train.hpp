// The TTT scan of TRAINING on the GPU in the chunked form of DESIGN.md §2.3a (forward and
// backward, both rules): the per-token rank-1 recurrence becomes per-chunk matrix products, most of
// them batched over every (sequence, head, chunk) on tensor cores; only the state's passage from
// chunk to chunk stays sequential. Plain C++ declarations (no CUDA types): compiles without nvcc.
//
// Same contract as ttt_scan_train.hpp (layouts, aliasing, += on the gradients, checkpoints = W at
// the start of every chunk of s.chunk tokens, [B·H][chunks][Dh][Dh], so either kernel's checkpoints
// serve the other's backward), with the chunk of the recurrence = s.chunk (at most 64).
// ttt_scan_forward/backward call these where they win (ttt_scan_uses_chunked_form); they are
// public for tests and benchmarks.
//
// Math (S = Wᵀ; per chunk of C tokens: rows K, V, Q, η; S0 the state at the chunk's start):
//   R = I + tril(diag(η) K Kᵀ, −1),  T = R⁻¹ diag(η),  Wk = T K,  U = T V
//   U' = U − Wk S0 = T (V − K S0),   S_C = S0 + Kᵀ U'
//   O  = Q S0 + M U',  M = tril(Q Kᵀ) (strictly lower for read_before)
// Backward, G = ∂L/∂S_C carried from the last chunk to the first (G = 0 after the last token):
//   dU' = Mᵀ dO + K G,  G ← G + Qᵀ dO − Wkᵀ dU'          (sequential, like the forward's S)
//   then per chunk, independently: X = V − K S0, U' = T X, Z = R⁻ᵀ dU', dX = diag(η) Z,
//   dL = −tril(Z U'ᵀ, −1), dη = rowsum(Z ⊙ X) + rowsum(dL ⊙ K Kᵀ), Ĝ = diag(η) dL,
//   dM = mask ⊙ (dO U'ᵀ), dV = dX, dQ = dM K + dO S0ᵀ,
//   dK = (Ĝ + Ĝᵀ) K + dMᵀ Q − dX S0ᵀ + U' Gᵀ        (G = ∂L/∂S at the chunk's end)
// (derived from the implicit form R U' = diag(η) X; checked against the token loop and finite
// differences in double precision, and on the GPU against train::ttt_scan_* in
// tests/cuda/ttt_chunk_train_cuda_test.cpp).
//
// Precision: the batched products run through cuBLAS in TF32 (tensor cores, fp32 accumulation) by
// default, or in full fp32 (ttt_chunk_set_tf32(false), for tests); the sequential passage of the
// state is fp32 on the CUDA cores in both. Deterministic (no atomics).
// Workspace: ttt_chunk_workspace_bytes(s) device bytes (about 11 padded copies of q plus one
// checkpoint-sized buffer). With one head and T a multiple of the chunk the inputs are already in
// the padded layout and are used in place (no copies; y written and dq, dk accumulated directly).
// Bad shapes or null pointers throw bitttt::Error before anything runs.
#pragma once

#include <cstddef>

#include "kernels/cuda/device.hpp"
#include "train/ttt_bptt.hpp"

namespace bitttt::cuda {

// Shapes the chunked kernels handle: Dh a multiple of 32 in [64, 512], chunk in [1, 64].
bool ttt_chunk_supported(const train::TttScanShape& s);

size_t ttt_chunk_workspace_bytes(const train::TttScanShape& s);

void ttt_chunk_forward(float* y, float* checkpoints, const float* q, const float* k, const float* v,
                       const float* eta, float eta_const, const train::TttScanShape& s,
                       void* workspace, const Stream& stream);

void ttt_chunk_backward(float* dq, float* dk, float* dv, float* deta, const float* dy,
                        const float* checkpoints, const float* q, const float* k, const float* v,
                        const float* eta, float eta_const, const train::TttScanShape& s,
                        void* workspace, const Stream& stream);

// true (the default): the batched products in TF32; false: in fp32 (slower, for tests). Not
// thread-safe.
void ttt_chunk_set_tf32(bool on);

}  // namespace bitttt::cuda
