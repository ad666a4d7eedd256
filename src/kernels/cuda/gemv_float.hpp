// Decode GEMVs that read their input as a float row and quantize it on the fly, so that a decode
// token needs no separate RMSNorm / SiLU / quantization kernels between its products.
//
// A single-block norm/quantize kernel between two GEMVs costs ~6 us on an H100 (it needs the whole
// row's max and sum of squares before it can write one int8 value), ~2 ms per token of a 70B
// model. Here the kernel that WRITES a row also publishes what its reader needs, while it writes:
//   - partials[g] = Σ v_j² over the 16 rows j of its row group g (fixed order: deterministic);
//   - key = max over j of (bits(|v_j · g_j|) << 32) | j by atomicMax, g the weight of the RMSNorm
//     that will read the row (1 without one); an unsigned max over these keys picks the largest
//     magnitude (non-negative floats order like their bits) and remembers where it is.
// The reader (ternary_gemv_float) then computes, in every warp and without a block-wide pass,
//     inv = 1 / sqrt(Σ partials / k + eps)                       (RMSNorm, as rmsnorm_scalar)
//     gamma = max(|(a_j* · inv) · g_j*|, 1e-5), j* = key's index (as quantize_activations_scalar)
// and quantizes each 16-column block of the row as it streams the weights of that block.
//
// Exactness: without a norm, gamma and every int8 value are bit-identical to
// quantize_activations_scalar, so the outputs are bit-identical to quantize + ternary_matmul. With
// a norm, the sum of squares is added in another order than the CPU's (as the other GPU RMSNorms),
// and j* maximizes |a_j · g_j| rather than |(a_j · inv) · g_j|, which differ only when two values
// tie to within a rounding: gamma may then be one ulp off the CPU's.
//
// Keys are accumulated with atomicMax: they must be 0 before their producer runs (row_stats
// zeroes a token's keys). Every pointer is a DEVICE pointer; float rows and norm weights must be
// 16-byte aligned.
#pragma once

#include <cstdint>

#include "kernels/cpu/ternary.hpp"
#include "kernels/cuda/device.hpp"

namespace bitttt::cuda {

// Variants of the decode kernels that give the same values, so that benchmarks can measure them
// against each other and tests can check every one (outputs bit for bit; the published
// sum-of-squares partials too, unless the team size differs: they are then added in another
// order). The process default comes from the environment (read once):
// BITTTT_CUDA_GEMV_PREFETCH (0, 1 or 2), BITTTT_CUDA_DECODE_PROLOGUE (0 or 1),
// BITTTT_CUDA_SMALL_SPLIT (0 to 8; 0: the old path), BITTTT_CUDA_SMALL_EARLY (0 or 1) and
// BITTTT_CUDA_SMALL_MAX_MB (1 to 1024). A launch uses the variant
// set when it is enqueued (a captured graph keeps it).
struct DecodeVariant {
    // Which on-the-fly GEMVs keep two unrolled steps of weights in flight per thread instead of
    // one (gemv_core.cuh RowGroupStream's kPrefetch): 0 none, 1 the SwiGLU GEMV, 2 all.
    // Measured on an H100 (bench/RESULTS.md): 70B chain 121.7 tokens/s with 1, 115.7 with 0.
    int gemv_prefetch = 1;
    // How the kernels that read a producer's statistics load them after the PDL wait. 0: one
    // after the other (partials, then the absmax key, then the value at its index). 1: the key
    // first and the value at its index as soon as it arrives, a lane's partials in batches of 8
    // loads, the TTT step's f in batches of 8: fewer dependent L2 round trips. Measured on an
    // H100 (bench/RESULTS.md): 1 gains 0.3% with GEMV prefetch 1 and loses 3% without; asking
    // the first input lines into L1 as well lost 10%, the code was dropped.
    int prologue = 0;
    // The small single-matrix GEMVs (packed weights up to small_max_mb: the TTT projections of a
    // 70B model, 160 latency-bound 4 MB kernels per token). 0: the kernel above (the old path). S
    // = 1..8: small_gemv_kernel, whose row group is split into S column slices, one block each, in
    // a thread block cluster (S = 1: no split, no cluster); each block's integer row sums go
    // through distributed shared memory to the cluster's first block, which writes the rows
    // (integer sums: the same bits in any order) in the layout of the kernel above, so outputs,
    // keys and partials are bit-identical to it. Measured on an H100 (bench/RESULTS.md, 70B
    // chain): S = 1 with early loads 124.9 tokens/s vs 122.2 with the old path; splitting is
    // slower (S = 2: 119.7 / 113.0 without / with early loads, S = 8: 99.4): the kernels are bound
    // by the latency after their PDL wait, which the cluster barriers lengthen.
    int small_split = 1;
    // With small_split > 0: 1 loads the first unrolled step's RMSNorm weights and the output's
    // norm before the PDL wait, and the input row and the accumulated output right after it,
    // together with the statistics (one dependent round trip less: ttt.down alone 0.367 instead
    // of 0.473 ms per token); 0 loads them where used.
    int small_early = 1;
    // The bound on the packed weights of a "small" GEMV, in MiB (1 to 1024; 8 takes the TTT
    // projections of a 70B model, 64 also its MLP down projection).
    int small_max_mb = 8;
};
DecodeVariant decode_variant();
// Sets the variant of later launches (benchmarks, tests); fails on out-of-range levels.
void set_decode_variant(const DecodeVariant& variant);

// What the producer of a row of n values publishes for its reader.
struct RowStats {
    double* partials = nullptr;         // [ceil(n / 16)] sums of squares per 16 values; null: none
    int64_t groups = 0;                 // ceil(n / 16)
    unsigned long long* key = nullptr;  // absmax key (see above); null: none
};

// The input row of ternary_gemv_float: a[0, k), optionally RMS-normalized with weight `norm`
// (then stats.partials must be set), with the statistics its producer wrote.
struct FloatRow {
    const float* a = nullptr;
    int64_t k = 0;
    const float* norm = nullptr;
    float eps = 0.0f;
    RowStats stats;
};

// Statistics of an existing row x[0, d) (the token's embedding: it has no producing GEMV), for
// a reader with RMSNorm weight next_norm (null: none); out.key is written, not accumulated. First
// zeroes zero_keys[0, zero_count) (the keys the rest of the token accumulates into; they may
// include out.key). One block.
void row_stats(const float* x, int64_t d, const float* next_norm, const RowStats& out,
               unsigned long long* zero_keys, int64_t zero_count, const Stream& stream);

// y = W · q(in) [+ y when accumulate], q(in) the int8 quantization of in.a (after its RMSNorm),
// results as ternary_gemv_batch gives for the same int8 row. Publishes out_stats of the written y
// (partials and/or key; either may be null) for a reader with RMSNorm weight out_norm (null: none).
void ternary_gemv_float(const kernels::TernaryWeights& w, const FloatRow& in, float* y,
                        bool accumulate, const RowStats& out_stats, const float* out_norm,
                        const Stream& stream);

// The MLP's first half in one pass: h = silu(gate · q(in)) * (up · q(in)) (silu_mul_scalar's
// formula on the two GEMV outputs), gate and up of the same shape; publishes out_stats of h (no
// norm follows it). Every activation block is quantized once for both matrices.
void ternary_gemv_swiglu(const kernels::TernaryWeights& gate, const kernels::TernaryWeights& up,
                         const FloatRow& in, float* h, const RowStats& out_stats,
                         const Stream& stream);

}  // namespace bitttt::cuda
