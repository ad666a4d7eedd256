// The 8-bit code of the AdamW moments (`--gpu-optimizer-state int8`, train_ops.hpp
// train_adamw_int8_moments): blockwise absmax scaling with a small floating-point code per
// element, shared by the GPU kernels and the host (upload/download of the moments).
//
// The flat moment buffer is cut into blocks of kMomentBlock consecutive elements; each block keeps
// one fp32 scale s and one byte per element, value = s · decode(byte). The code is a float with a
// 4-bit exponent (bias 15, subnormals below 2^-14) and M mantissa bits:
//   decode(c) = (2^M + f) · 2^(e − 15 − M) for e = c >> M ≥ 1, f · 2^(−14 − M) for e = 0,
// increasing with c, from 0 to decode(max) ≈ 2. s = absmax(block) / decode(max), so the block's
// largest magnitude gets the top code and the smallest nonzero magnitude coded is 2^-17 (m) or
// 2^-18 (√v) of it, with a relative step of 2^-M above 2^-14 of it: the dynamic range a moment
// needs within a block (a linear int8 code would zero everything below absmax / 255).
//   m (signed): sign bit + a 7-bit magnitude code, M = 3.
//   v (non-negative): √v with an 8-bit code, M = 4. Coding √v halves the exponent range v needs,
//     and keeps √v̂ (the denominator of the update) within 2^-4 of the true one.
// Encoding rounds stochastically between the two neighbouring codes (probability proportional to
// the distance, so E[decode] = x: unbiased, like the bf16 moments' rounding); the host rounds to
// nearest (u = 0.5). Plain C++ (host) that nvcc compiles for the device too.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define BITTTT_HD __host__ __device__ __forceinline__
#else
#define BITTTT_HD inline
#endif

namespace bitttt::cuda::moment_code {

constexpr int kMomentBlock = 256;
constexpr int kMantM = 3;  // m: sign + E4M3
constexpr int kMantV = 4;  // √v: E4M4
constexpr int kMaxM = 127, kMaxV = 255;

// The float's bit pattern (host and device).
BITTTT_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(x);
#else
    uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    return u;
#endif
}
BITTTT_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float x;
    std::memcpy(&x, &u, sizeof x);
    return x;
#endif
}

// The magnitude of code c (M mantissa bits). A normal code is an fp32 with the exponent rebased
// from bias 15 to 127: bits (c + (112 << M)) << (23 − M); a subnormal one f · 2^(−14 − M).
BITTTT_HD float decode_mag(int c, int M) {
    if (c < (1 << M)) return static_cast<float>(c) / static_cast<float>(1u << (14 + M));
    return bits_float(static_cast<uint32_t>(c + (112 << M)) << (23 - M));
}

// The code of x >= 0 (clamped to max_code): lo, the largest code with decode(lo) <= x, or lo + 1
// when u < (x − decode(lo)) / (decode(lo + 1) − decode(lo)). u uniform in [0, 1): stochastic
// rounding; u = 0.5: round to nearest. Both are exact in fp32: above 2^-14, lo is x's exponent
// and top M mantissa bits and the fraction is its remaining 23 − M bits; below, x · 2^(14+M) is
// exact.
BITTTT_HD int encode_mag(float x, int M, int max_code, float u) {
    if (!(x > 0.0f)) return 0;
    if (x >= decode_mag(max_code, M)) return max_code;
    if (x < 6.103515625e-05f) {  // 2^-14: subnormal codes
        const float t = x * static_cast<float>(1u << (14 + M));
        const int lo = static_cast<int>(t);
        return u < t - static_cast<float>(lo) ? lo + 1 : lo;
    }
    const uint32_t b = float_bits(x);
    const int shift = 23 - M;
    const int lo = static_cast<int>(b >> shift) - (112 << M);
    const float frac =
        static_cast<float>(b & ((1u << shift) - 1u)) / static_cast<float>(1u << shift);
    return u < frac ? lo + 1 : lo;
}

// Block scales: absmax / decode(max).
BITTTT_HD float scale_m(float absmax) {
    return absmax / decode_mag(kMaxM, kMantM);
}
BITTTT_HD float scale_v(float absmax_sqrt) {
    return absmax_sqrt / decode_mag(kMaxV, kMantV);
}

// m: byte = sign << 7 | magnitude code.
BITTTT_HD uint8_t encode_m(float m, float scale, float u) {
    if (!(scale > 0.0f)) return 0;
    const int c = encode_mag(fabsf(m) / scale, kMantM, kMaxM, u);
    return static_cast<uint8_t>((m < 0.0f && c != 0 ? 0x80 : 0) | c);
}
BITTTT_HD float decode_m(uint8_t b, float scale) {
    const float mag = decode_mag(b & 0x7f, kMantM) * scale;
    return b & 0x80 ? -mag : mag;
}
// v: the code of √v; decode returns v (the square of the decoded √v).
BITTTT_HD uint8_t encode_v(float v, float scale, float u) {
    if (!(scale > 0.0f)) return 0;
    return static_cast<uint8_t>(encode_mag(sqrtf(fmaxf(v, 0.0f)) / scale, kMantV, kMaxV, u));
}
BITTTT_HD float decode_v(uint8_t b, float scale) {
    const float r = decode_mag(b, kMantV) * scale;
    return r * r;
}

// The random numbers of the stochastic rounding: a counter-based hash (splitmix64's finalizer) of
// (seed, element), 24 bits each for m (which 0) and v (which 1), as u in [0, 1).
BITTTT_HD uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
BITTTT_HD float random_u(uint64_t seed, int64_t i, int which) {
    const uint64_t r = mix64(seed + static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ull);
    const uint32_t bits = static_cast<uint32_t>(which ? r >> 40 : (r >> 8) & 0xffffffu);
    return static_cast<float>(bits) * (1.0f / 16777216.0f);
}

}  // namespace bitttt::cuda::moment_code
