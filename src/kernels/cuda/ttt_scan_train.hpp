// The TTT scan of TRAINING on the GPU, forward and backward through every state (BPTT), for both
// rules (DESIGN.md §2.2, §2.3, §2.3a). Plain C++ declarations (no CUDA types): compiles without
// nvcc.
//
// Same math, layout and accumulation as train::ttt_scan_forward/backward (src/train/ttt_bptt.hpp):
//   q, k, v, y, dq, dk, dv are [B·T, H·Dh]; eta, deta are [B·T, H]; eta == nullptr means the
//   constant eta_const (deta is then ignored); q, k, v may alias each other and so may dq, dk, dv
//   (`reconstruct`); dq, dk, dv, deta are ACCUMULATED (+=); y is overwritten.
// checkpoints: s.checkpoint_floats() floats, exactly the CPU's content: W (row-major, W[i][j]) at
//   the start of every chunk of s.chunk tokens, [B·H][chunks][Dh][Dh]. A forward on the GPU and a
//   backward on the CPU (or the reverse) therefore agree; the backward recomputes each chunk's
//   states from its checkpoint.
// Every pointer is a DEVICE pointer (fp32). Both calls are asynchronous on `stream`.
// `workspace` holds ttt_scan_workspace_bytes(s) device bytes (nullptr allowed when that is 0); the
//   same size serves the forward and the backward; nothing in it survives between calls. The fast
//   backward keeps per-block partial sums there: (2·row_blocks + 1)·B·T·H·Dh + row_blocks·B·T·H
//   floats, row_blocks = the number of blocks one state's rows are split over (1 to 13 for Dh <=
//   256; e.g. 8 at B=16, Dh=256: 285 MB for B·T = 16384 tokens). The forward needs none.
// Both versions are deterministic (fixed summation orders, no atomics). Sizes: Dh <= 256 runs the
// fast version (larger Dh the simple one); s.chunk * rows of the block must fit in shared memory
// next to the staging buffers, which holds for chunk <= 128 (otherwise the simple version runs).
// Bad shapes or null pointers throw bitttt::Error before anything is enqueued.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/device.hpp"
#include "train/ttt_bptt.hpp"

namespace bitttt::cuda {

size_t ttt_scan_workspace_bytes(const train::TttScanShape& s);

void ttt_scan_forward(float* y, float* checkpoints, const float* q, const float* k, const float* v,
                      const float* eta, float eta_const, const train::TttScanShape& s,
                      void* workspace, const Stream& stream);

void ttt_scan_backward(float* dq, float* dk, float* dv, float* deta, const float* dy,
                       const float* checkpoints, const float* q, const float* k, const float* v,
                       const float* eta, float eta_const, const train::TttScanShape& s,
                       void* workspace, const Stream& stream);

// The chunked form (ttt_chunk_train.hpp: per-chunk products on tensor cores) replaces the token
// recurrence below where it wins: heads of Dh >= 128 (a multiple of 32, at most 512) with chunks of
// at least 32 tokens (shorter chunks leave the products too little work). It computes the same
// function with the same checkpoints, in TF32 products (tolerance: see its test).
bool ttt_scan_uses_chunked_form(const train::TttScanShape& s);
// The chunk a model should use for heads of Dh: 64 where the chunked form runs, else 16.
int64_t ttt_scan_preferred_chunk(int64_t Dh);
// For tests and benchmarks: false keeps the token recurrence for every shape (also
// BITTTT_CUDA_TTT_CHUNKED=0 in the environment, read once per process). Not thread-safe.
void ttt_scan_set_chunked(bool on);

// For tests and benchmarks: true makes every later call use the first, simple version (one block
// per sequence and head, one thread per state row, W and G in the workspace) instead of the fast
// one (state in registers, rows split over warps and blocks; Dh <= 256). Not thread-safe.
void ttt_scan_force_simple(bool on);

}  // namespace bitttt::cuda
