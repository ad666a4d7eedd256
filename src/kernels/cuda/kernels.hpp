// CUDA inference kernels (DESIGN.md §5): the GPU versions of the CPU kernels in src/kernels/cpu,
// behind plain C++ declarations (no CUDA types; see device.hpp).
//
// Every pointer argument is a DEVICE pointer. Every function checks its arguments on the host
// (throws bitttt::Error naming the argument), enqueues its kernels on `stream` and returns without
// waiting. Results match the CPU scalar references:
//   - ternary_matmul: bit-identical to kernels::ternary_matmul_scalar (exact int32 dot products,
//     then the same float rescale float(acc) * (beta * act_scale));
//   - quantize_activations: bit-identical to kernels::quantize_activations_scalar;
//   - rmsnorm: the same formula; the double sum of squares is added in another order, so a result
//     may differ from the CPU's in the last bit in rare cases;
//   - silu_mul, the TTT step and the bf16 GEMV: float results within a few ulps (expf and the order
//     of float sums differ from the CPU's).
#pragma once

#include <cstdint>

#include "kernels/cpu/ternary.hpp"
#include "kernels/cuda/device.hpp"

namespace bitttt::cuda {

// Per-token int8 activations on the device, as the ternary products read them:
// q [m rows of `stride` bytes, packed_cols(k) used, zero padded; stride % 16 == 0, q 16-byte
// aligned], scale[i] = gamma_i / 127, sum[i] = Σ_k q[i, k] (the products use packed codes
// c = w + 1 and subtract this sum, see kernels/cpu/ternary.hpp).
struct QuantizedActivations {
    int8_t* q = nullptr;
    int64_t stride = 0;
    float* scale = nullptr;
    int32_t* sum = nullptr;
};

// ---- activation quantization and the pointwise ops around the products ----

// Per-token absmax int8 quantization of x [m, k] (row i at x + i*x_stride), DESIGN.md §2.1.
void quantize_activations(const float* x, int64_t m, int64_t k, int64_t x_stride,
                          const QuantizedActivations& out, const Stream& stream);

// y = x / sqrt(mean(x²) + eps) * weight for m rows of length d (y may equal x).
void rmsnorm(const float* x, int64_t m, int64_t d, int64_t x_stride, const float* weight, float eps,
             float* y, int64_t y_stride, const Stream& stream);

// rmsnorm followed by quantize_activations of the normalized rows, in one pass per row (the
// normalized floats are never written): the input of every BitLinear that follows a norm.
// Like the GEMV's weights, `weight` is read before the previous kernel has finished (PDL): it must
// not be written by the kernel launched just before.
void rmsnorm_quantize(const float* x, int64_t m, int64_t d, int64_t x_stride, const float* weight,
                      float eps, const QuantizedActivations& out, const Stream& stream);

// out[i] = silu(gate[i]) * up[i] for i < n (out may alias gate or up).
void silu_mul(const float* gate, const float* up, int64_t n, float* out, const Stream& stream);

// silu_mul of m rows of n values (row i at gate/up + i*stride) followed by quantize_activations:
// the input of the MLP's down projection.
void silu_mul_quantize(const float* gate, const float* up, int64_t m, int64_t n, int64_t stride,
                       const QuantizedActivations& out, const Stream& stream);

// ---- ternary x int8 products ----

// y[i, n] = float(Σ_k Wq[n, k] xq[i, k]) * (w.scale * x.scale[i]), plus the old y[i, n] when
// `accumulate` (a fused residual add: y + that product, in this order). w.codes is a device copy
// of the packed layout of kernels/cpu/ternary.hpp, 16-byte aligned. m == 1 runs the decode GEMV
// (streams the packed weights once at close to memory bandwidth); m > 1 runs a tiled dp4a GEMM.
// The decode GEMV starts loading weights before the previous kernel on the stream has finished
// (Programmatic Dependent Launch): weights must not be written by the kernel launched just before
// it (upload them with DeviceBuffer copies, or put any other kernel in between).
void ternary_matmul(const kernels::TernaryWeights& w, const QuantizedActivations& x, int64_t m,
                    float* y, int64_t y_stride, bool accumulate, const Stream& stream);

// Decode GEMV of up to kMaxGemvBatch matrices with the same input (one launch, e.g. the MLP's
// gate and up projections): y_j = W_j x for j < count; every W_j has x's column count.
inline constexpr int kMaxGemvBatch = 3;
void ternary_gemv_batch(const kernels::TernaryWeights* w, float* const* y, int count,
                        const QuantizedActivations& x, bool accumulate, const Stream& stream);

// ---- the TTT `reconstruct` step (DESIGN.md §2.2) for one token ----

// W [dt, dt] row-major on the device (W[i][j] at w[i*dt + j]; the CPU scan keeps its transpose
// S = Wᵀ), updated in place:
//     f̂ = f / (‖f‖₂ + 1e-6);  z = W f̂;  W ← W − η (z − f̂) f̂ᵀ
// z [dt] is written (it must not alias f). One pass over W: row i's update needs only z_i, so
// each row is read once, reduced to z_i and written back. With z_absmax_key, z's largest magnitude
// is also published there (atomic max of the key of gemv_float.hpp, which must start at 0): the
// statistics that let the next GEMV quantize z on the fly. With prefetch_state, W is read before
// the previous kernel on the stream has finished (PDL, as the GEMVs read their weights): W must
// not be written by the kernel launched just before (in a decode token the TTT down projection
// runs just before the step; W was last written a whole token earlier).
void ttt_reconstruct_step(float* w, int64_t dt, float eta, const float* f, float* z,
                          const Stream& stream, unsigned long long* z_absmax_key = nullptr,
                          bool prefetch_state = false);

// The same step with its state write taken off the token's critical path: W is kept one update
// behind, the update of the last token (e = z − f̂ and f̂) waits in `pending`, and each step first
// applies it (W_t = W_{t-1} − η e f̂ᵀ, row by row, written back) and then computes z = W_t f̂ for
// this token and leaves its own update pending. The values are those of ttt_reconstruct_step, bit
// for bit, once ttt_apply_pending has run. With `early` the pending update is applied before the
// previous kernel on the stream has finished (PDL): neither W nor `pending` may be written by the
// kernel launched just before (in a decode token the TTT down projection runs just before the
// step). The idea: W's 2·dt² floats of reading and writing overlap the down projection, a
// latency-bound GEMV that leaves most of the memory bandwidth idle. Measured 3% SLOWER than the
// plain step in the 70B decode chain on an H100 (bench/RESULTS.md): kept for `bench cuda-decode`
// as a comparison; sessions use ttt_reconstruct_step.
// pending: ttt_pending_floats(dt) floats on the device, 16-byte aligned, zeroed before the first
// step (zero = nothing pending); one buffer per state. W alone is the state only after
// ttt_apply_pending (e.g. before saving it or running the prompt scan on it). hold_rows keeps
// rows of up to 2048 floats in registers across the wait (~120 registers a thread); without it
// W_t is written before the wait and read again after it (mostly from L2) by a kernel of ~40
// registers, whose blocks all fit on the SMs beside the down projection. Both sum z in the same
// order (bit-identical); dt % 4 != 0 or unaligned W takes a scalar path.
int64_t ttt_pending_floats(int64_t dt);
void ttt_reconstruct_step_deferred(float* w, int64_t dt, float eta, const float* f, float* z,
                                   float* pending, const Stream& stream,
                                   unsigned long long* z_absmax_key = nullptr, bool early = false,
                                   bool hold_rows = true);
void ttt_apply_pending(float* w, int64_t dt, float* pending, const Stream& stream);

// ---- dense bf16 products (embeddings and lm_head stay floating point, DESIGN.md §2) ----

// y[n] = Σ_k bf16_to_float(w[n, k]) x[k] for n < rows (w row-major, bf16 bit patterns,
// 16-byte aligned, cols % 8 == 0), accumulated in fp32.
void bf16_gemv(const uint16_t* w, int64_t rows, int64_t cols, const float* x, float* y,
               const Stream& stream);

// out[k] = bf16_to_float(row[k]) for k < n (an embedding lookup).
void bf16_to_float(const uint16_t* row, int64_t n, float* out, const Stream& stream);

// ---- random data generated on the device (benchmarks of models too large to build on the host) --

// Packed ternary codes for a [rows, cols] matrix: uniform in {-1, 0, +1}, padding code 1
// (weight 0), a function of (seed, byte index) only.
void fill_random_ternary(uint8_t* codes, int64_t rows, int64_t cols, uint64_t seed,
                         const Stream& stream);
// n floats uniform in [lo, hi).
void fill_random_uniform(float* x, int64_t n, float lo, float hi, uint64_t seed,
                         const Stream& stream);
// n bf16 values uniform in [-amplitude, amplitude).
void fill_random_bf16(uint16_t* x, int64_t n, float amplitude, uint64_t seed, const Stream& stream);

// Reads `bytes` bytes (a multiple of 16, 16-byte aligned) with 16-byte loads spread over the
// whole GPU and writes one word per block to sink (sink: kReadProbeMaxBlocks words): the
// streaming-read reference for bandwidth-bound kernels.
inline constexpr int kReadProbeMaxBlocks = 4096;
void read_probe(const void* data, int64_t bytes, uint32_t* sink, const Stream& stream);

}  // namespace bitttt::cuda
