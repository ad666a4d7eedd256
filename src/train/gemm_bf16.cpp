// Packing, dispatch and the scalar reference of the bf16 training products (gemm_bf16.hpp).
#include "train/gemm_bf16.hpp"

#include <algorithm>
#include <bit>

#include "core/cpu_features.hpp"
#include "core/error.hpp"

namespace bitttt::train {

// gemm_bf16_avx512bf16.cpp / gemm_bf16_avx512.cpp (compiled with their ISA's flags).
void gemm_bf16_native(float* c, const Bf16Panels& a, const Bf16Panels& b, float alpha,
                      bool accumulate);
void gemm_bf16_emulated(float* c, const Bf16Panels& a, const Bf16Panels& b, float alpha,
                        bool accumulate);
void pack_panels_avx512(uint32_t* dst, const float* src, int64_t es, int64_t ks, int64_t count,
                        int64_t depth, int64_t width);

uint16_t bf16_round(float x) {
    uint32_t u = std::bit_cast<uint32_t>(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);  // a carry into the exponent is the correct rounding
    return static_cast<uint16_t>(u >> 16);
}

namespace {

inline uint32_t pair_word(float even, float odd) {
    return uint32_t{bf16_round(even)} | (uint32_t{bf16_round(odd)} << 16);
}

// Packs X(e, k) = src[e*es + k*ks] (e < count elements along m or n, k < depth) into panels of
// `width` elements (dst: ceil(count/width) * pairs * width words; padding left alone). Work goes
// in groups of max(width, 16) elements times blocks of 16 pairs, and within a block along
// whichever index is contiguous in memory, so each source cache line is consumed whole while it
// is loaded (sources with rows 64 KiB apart, like lm_head's dlogits read transposed, otherwise
// lose their lines to cache-set conflicts before the next panel uses them).
void pack_panels_scalar(uint32_t* dst, const float* src, int64_t es, int64_t ks, int64_t count,
                        int64_t depth, int64_t width) {
    const int64_t kp = (depth + 1) / 2;
    const int64_t group = std::max<int64_t>(width, 16);
    const int64_t groups = (count + group - 1) / group;
    constexpr int64_t kBlock = 16;
    const int64_t full_pairs = depth / 2;  // pairs with both halves inside depth
#pragma omp parallel for schedule(static) if (count * depth > (1 << 16))
    for (int64_t g = 0; g < groups; ++g) {
        const int64_t e0 = g * group, e1 = std::min(count, e0 + group);
        for (int64_t p0 = 0; p0 < kp; p0 += kBlock) {
            const int64_t p1 = std::min(kp, p0 + kBlock), pf = std::min(p1, full_pairs);
            auto at = [&](int64_t e, int64_t p) -> uint32_t& {
                return dst[((e / width) * kp + p) * width + e % width];
            };
            if (ks == 1) {
                for (int64_t e = e0; e < e1; ++e) {
                    const float* s = src + e * es;
                    for (int64_t p = p0; p < pf; ++p) at(e, p) = pair_word(s[2 * p], s[2 * p + 1]);
                }
            } else {
                for (int64_t p = p0; p < pf; ++p) {
                    const float* s0 = src + 2 * p * ks;
                    const float* s1 = s0 + ks;
                    for (int64_t e = e0; e < e1; ++e) at(e, p) = pair_word(s0[e * es], s1[e * es]);
                }
            }
            if (pf < p1)  // an odd depth: the last pair's odd half is zero
                for (int64_t e = e0; e < e1; ++e)
                    at(e, pf) = pair_word(src[e * es + (depth - 1) * ks], 0.0f);
        }
    }
}

// pack_bf16_a / pack_bf16_b: the AVX-512 packer where the source is contiguous along k or
// along the elements (every use in training), else the scalar one; then the padding's zeros.
void pack_panels(Bf16Panels& out, const float* src, int64_t es, int64_t ks, int64_t count,
                 int64_t depth, int64_t width, bool vector) {
    check(count > 0 && depth > 0, ErrorKind::kInvalidArgument, "pack_bf16: empty operand [{}, {}]",
          count, depth);
    out.count = count, out.depth = depth, out.width = width;
    const int64_t kp = out.pairs(), panels = out.panels();
    // Grow only: a step packs operands of many sizes into the same panels, and a resize to
    // another size would free, allocate and zero the buffer each time (lm_head's 64 MiB twice a
    // step, with their page faults). Words past this operand's are never read.
    const auto words = static_cast<size_t>(panels * kp * width);
    if (out.data.size() < words) out.data.resize(words);
    uint32_t* const dst = out.data.data();
    if (vector && active_isa() >= Isa::kAvx512 && (ks == 1 || es == 1)) {
        pack_panels_avx512(dst, src, es, ks, count, depth, width);
    } else {
        pack_panels_scalar(dst, src, es, ks, count, depth, width);
    }
    // Padding elements past count (the last panel's) stay zero.
    for (int64_t e = count; e < panels * width; ++e)
        for (int64_t p = 0; p < kp; ++p) dst[((e / width) * kp + p) * width + e % width] = 0;
}

inline float odd_half(uint32_t w) {
    return std::bit_cast<float>(w & 0xFFFF0000u);
}
inline float even_half(uint32_t w) {
    return std::bit_cast<float>(w << 16);
}

}  // namespace

void pack_bf16_a(Bf16Panels& out, const float* a, int64_t a_rs, int64_t a_cs, int64_t m,
                 int64_t depth, bool vector) {
    pack_panels(out, a, a_rs, a_cs, m, depth, kBf16Rows, vector);
}

void pack_bf16_b(Bf16Panels& out, const float* b, int64_t b_rs, int64_t b_cs, int64_t depth,
                 int64_t n, bool vector) {
    pack_panels(out, b, b_cs, b_rs, n, depth, kBf16Cols, vector);
}

Bf16Kernel bf16_kernel_available() {
    if (active_isa() < Isa::kAvx512) return Bf16Kernel::kScalar;
    return has_avx512_bf16() ? Bf16Kernel::kNative : Bf16Kernel::kEmulated;
}

const char* bf16_kernel_name(Bf16Kernel kernel) {
    switch (kernel) {
        case Bf16Kernel::kAuto:
            return "auto";
        case Bf16Kernel::kNative:
            return "avx512bf16";
        case Bf16Kernel::kEmulated:
            return "avx512f";
        case Bf16Kernel::kScalar:
            return "scalar";
    }
    return "?";
}

namespace {
void check_operands(const Bf16Panels& a, const Bf16Panels& b) {
    check(a.width == kBf16Rows && b.width == kBf16Cols && a.depth == b.depth && a.count > 0 &&
              b.count > 0,
          ErrorKind::kInvalidArgument,
          "gemm_bf16: operands are not A panels [{}, {}] and B panels [{}, {}] of one depth",
          a.count, a.depth, b.depth, b.count);
}
}  // namespace

void gemm_bf16(float* c, const Bf16Panels& a, const Bf16Panels& b, float alpha, bool accumulate,
               Bf16Kernel kernel) {
    check_operands(a, b);
    const Bf16Kernel best = bf16_kernel_available();
    if (kernel == Bf16Kernel::kAuto) kernel = best;
    check(kernel == Bf16Kernel::kScalar ||
              (kernel == Bf16Kernel::kEmulated && best != Bf16Kernel::kScalar) || kernel == best,
          ErrorKind::kInvalidArgument, "gemm_bf16: the {} kernel needs a CPU feature missing here",
          bf16_kernel_name(kernel));
    switch (kernel) {
        case Bf16Kernel::kNative:
            return gemm_bf16_native(c, a, b, alpha, accumulate);
        case Bf16Kernel::kEmulated:
            return gemm_bf16_emulated(c, a, b, alpha, accumulate);
        default:
            return gemm_bf16_reference(c, a, b, alpha, accumulate);
    }
}

void gemm_bf16_reference(float* c, const Bf16Panels& a, const Bf16Panels& b, float alpha,
                         bool accumulate) {
    check_operands(a, b);
    const int64_t m = a.count, n = b.count, kp = a.pairs();
#pragma omp parallel for schedule(static) if (m * n * kp > (1 << 18))
    for (int64_t i = 0; i < m; ++i) {
        const uint32_t* ap = a.data.data() + (i / kBf16Rows) * kp * kBf16Rows + i % kBf16Rows;
        for (int64_t j = 0; j < n; ++j) {
            const uint32_t* bp = b.data.data() + (j / kBf16Cols) * kp * kBf16Cols + j % kBf16Cols;
            float out = c[i * n + j];
            for (int64_t p0 = 0; p0 < kp; p0 += kBf16DepthPairs) {
                float s = 0.0f;
                for (int64_t p = p0; p < std::min(kp, p0 + kBf16DepthPairs); ++p) {
                    const uint32_t x = ap[p * kBf16Rows], y = bp[p * kBf16Cols];
                    // Each product is exact; a volatile-free fp32 add rounds once (no FMA
                    // contraction can change an exact product's sum).
                    s += odd_half(x) * odd_half(y);
                    s += even_half(x) * even_half(y);
                }
                out = (p0 == 0 && !accumulate) ? alpha * s : out + alpha * s;
            }
            c[i * n + j] = out;
        }
    }
}

}  // namespace bitttt::train
