// AVX-512 bodies of fast_ops.hpp, on the vector exp of kernels/cpu/simd_avx512.hpp.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "kernels/cpu/simd_avx512.hpp"

namespace bitttt::train {
namespace {

constexpr int64_t kParallelMin = 1 << 15;

// The largest lane, through memory (GCC 12's _mm512_reduce_max_ps trips -Wmaybe-uninitialized).
inline float reduce_max(__m512 v) {
    alignas(64) float t[16];
    _mm512_store_ps(t, v);
    float m = t[0];
    for (int i = 1; i < 16; ++i) m = t[i] > m ? t[i] : m;
    return m;
}

// σ(g) = 1 / (1 + e^−g)
inline __m512 sigmoid16(__m512 g) {
    const __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(
        one, _mm512_add_ps(one, kernels::simd::exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), g))));
}

}  // namespace

void exp_avx512(float* out, const float* x, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = kernels::simd::lane_mask(n - i);
        _mm512_mask_storeu_ps(out + i, m, kernels::simd::exp_ps(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

double crossentropy_forward_avx512(float* losses, float* logits, const int32_t* targets, int64_t N,
                                   int64_t V) {
    constexpr int64_t kBlock = 1024;  // fp32 lane sums over 1024 values, then into a double
#pragma omp parallel for schedule(static) if (N * V > kParallelMin)
    for (int64_t row = 0; row < N; ++row) {
        float* z = logits + row * V;
        const float ninf = -INFINITY;
        __m512 vmx = _mm512_set1_ps(ninf);
        for (int64_t v = 0; v < V; v += 16)
            vmx = _mm512_maskz_max_ps(
                0xFFFF, vmx,
                _mm512_mask_loadu_ps(_mm512_set1_ps(ninf), kernels::simd::lane_mask(V - v), z + v));
        const float mx = reduce_max(vmx);
        const __m512 vm = _mm512_set1_ps(mx);
        // −log p_target = log Σ exp(z − mx) − (z_target − mx): no log of an underflowed p.
        const float target_shifted = z[targets[row]] - mx;
        double sum = 0.0;
        for (int64_t b = 0; b < V; b += kBlock) {
            const int64_t e = b + kBlock < V ? b + kBlock : V;
            __m512 s = _mm512_setzero_ps();
            for (int64_t v = b; v < e; v += 16) {
                const __mmask16 m = kernels::simd::lane_mask(e - v);
                const __m512 p =
                    kernels::simd::exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, z + v), vm));
                _mm512_mask_storeu_ps(z + v, m, p);
                s = _mm512_mask_add_ps(s, m, s, p);
            }
            sum += static_cast<double>(kernels::simd::sum_lanes(s));
        }
        const __m512 inv = _mm512_set1_ps(static_cast<float>(1.0 / sum));
        for (int64_t v = 0; v < V; v += 16) {
            const __mmask16 m = kernels::simd::lane_mask(V - v);
            _mm512_mask_storeu_ps(z + v, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, z + v), inv));
        }
        losses[row] = static_cast<float>(std::log(sum)) - target_shifted;
    }
    double total = 0.0;
    for (int64_t row = 0; row < N; ++row) total += losses[row];
    return total / static_cast<double>(N);
}

void swiglu_forward_avx512(float* out, const float* gate, const float* up, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = kernels::simd::lane_mask(n - i);
        const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
        const __m512 u = _mm512_maskz_loadu_ps(m, up + i);
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_mul_ps(g, sigmoid16(g)), u));
    }
}

void swiglu_backward_avx512(float* dgate, float* dup, const float* dout, const float* gate,
                            const float* up, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = kernels::simd::lane_mask(n - i);
        const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
        const __m512 u = _mm512_maskz_loadu_ps(m, up + i);
        const __m512 d = _mm512_maskz_loadu_ps(m, dout + i);
        const __m512 s = sigmoid16(g);
        // dgate += d·u·s·(1 + g·(1 − s)), dup += d·g·s
        const __m512 dg = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(d, u), s),
                                        _mm512_fmadd_ps(g, _mm512_sub_ps(one, s), one));
        _mm512_mask_storeu_ps(dgate + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dgate + i), dg));
        const __m512 du = _mm512_mul_ps(_mm512_mul_ps(d, g), s);
        _mm512_mask_storeu_ps(dup + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dup + i), du));
    }
}

}  // namespace bitttt::train
