// bf16 products with fp32 accumulation for CPU training (the opt-in `--cpu-precision bf16`, as
// torch.autocast("cpu", bfloat16) runs its matrix products).
//
// C[m, n] (+)= alpha · Σ_k bf16(A(i, k)) · bf16(B(k, n)), where bf16() rounds an fp32 operand to
// the nearest bfloat16 (ties to even; 8 significant bits, relative error ≤ 2⁻⁹) and the sums are
// fp32. The product of two bf16 values is exact in fp32, so the only roundings are the operands'
// and the fp32 additions.
//
// The AVX-512 BF16 instruction vdpbf16ps adds the two products of a pair of neighbouring k to one
// fp32 lane: acc += a[2p+1]·b[2p+1], then acc += a[2p]·b[2p] (Intel's definition: two roundings
// to nearest, denormal inputs and results flushed to zero). The operands are therefore packed once
// ("panels") with the pairs along k in one 32-bit word, the even k in the low half:
//   A panels: kBf16Rows = 4 rows of A each, [ceil(m/4)][k_pairs][4] words;
//   B panels: kBf16Cols = 64 columns of B each, [ceil(n/64)][k_pairs][64] words;
// zero padded past m, n and an odd k. A 4 x 64 tile of C lives in 16 zmm registers while k runs:
// per pair, 4 loads of B, 4 broadcasts of A, 16 vdpbf16ps (64 multiply-adds each).
//
// Every C element is summed by one thread, over k blocks of kBf16DepthPairs pairs: per block
// s = Σ over its pairs (odd then even product, in k order), then c = c + alpha·s (c = alpha·s for
// the first block without accumulate), as gemm_bf16_reference spells out; results do not depend
// on the thread count.
//
// Kernels (Bf16Kernel): kNative (vdpbf16ps; needs has_avx512_bf16()), kEmulated (AVX-512F: the
// pair's products as two FMAs in the same order, no denormal flushing) and kScalar (the
// reference). kAuto picks the first the CPU and active_isa() allow.
#pragma once

#include <cstdint>

#include "core/aligned_buffer.hpp"

namespace bitttt::train {

inline constexpr int64_t kBf16Rows = 4;
inline constexpr int64_t kBf16Cols = 64;
inline constexpr int64_t kBf16DepthPairs = 256;

// One operand in panels of `width` (kBf16Rows for A, kBf16Cols for B) elements along m or n.
struct Bf16Panels {
    AlignedBuffer<uint32_t> data;  // at least panels() * pairs() * width words (grows only)
    int64_t count = 0;             // rows of A (m) or columns of B (n)
    int64_t depth = 0;             // k
    int64_t width = 0;
    int64_t pairs() const { return (depth + 1) / 2; }
    int64_t panels() const { return (count + width - 1) / width; }
};

// bf16 bits of x, rounded to nearest even (NaN stays a quiet NaN; as io::f32_to_bf16).
uint16_t bf16_round(float x);

// Packs A(i, k) = a[i*a_rs + k*a_cs] (i < m, k < depth) into A panels (out grows as needed).
// vector: the AVX-512 packer where the CPU has it and one stride is 1; off, the scalar loop (the
// same words; tests).
void pack_bf16_a(Bf16Panels& out, const float* a, int64_t a_rs, int64_t a_cs, int64_t m,
                 int64_t depth, bool vector = true);
// Packs B(k, j) = b[k*b_rs + j*b_cs] (k < depth, j < n) into B panels.
void pack_bf16_b(Bf16Panels& out, const float* b, int64_t b_rs, int64_t b_cs, int64_t depth,
                 int64_t n, bool vector = true);

enum class Bf16Kernel { kAuto, kNative, kEmulated, kScalar };
// The kernel kAuto resolves to on this CPU (kScalar below Isa::kAvx512).
Bf16Kernel bf16_kernel_available();
const char* bf16_kernel_name(Bf16Kernel kernel);

// C[a.count, b.count] row-major (+)= alpha · A·B. a and b must have the same depth and widths
// kBf16Rows / kBf16Cols. Asking for a kernel the CPU lacks throws Error.
void gemm_bf16(float* c, const Bf16Panels& a, const Bf16Panels& b, float alpha, bool accumulate,
               Bf16Kernel kernel = Bf16Kernel::kAuto);

// The scalar twin: the same sums in the same order (see above), with no denormal flushing.
void gemm_bf16_reference(float* c, const Bf16Panels& a, const Bf16Panels& b, float alpha,
                         bool accumulate);

}  // namespace bitttt::train
