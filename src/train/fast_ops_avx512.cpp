// AVX-512 bodies of fast_ops.hpp (the exp's method is described there).
#include <immintrin.h>

#include <cmath>
#include <cstdint>

namespace bitttt::train {
namespace {

constexpr int64_t kParallelMin = 1 << 15;

inline __mmask16 lanes(int64_t n) {
    return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

inline __m512 exp16(__m512 x) {
    // Clamp (keeping NaN: vmaxps/vminps return the second operand when either is NaN) so that
    // r stays finite; e^-104 is 0 and e^89 is inf in fp32 either way.
    x = _mm512_maskz_max_ps(0xFFFF, _mm512_set1_ps(-104.0f), x);
    x = _mm512_maskz_min_ps(0xFFFF, _mm512_set1_ps(89.0f), x);
    const __m512 n =
        _mm512_maskz_roundscale_ps(0xFFFF, _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // ln 2 = 0.693359375 (exact in 9 bits, so n·hi is exact for |n| < 2^15) − 2.12194440e-4.
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(0xFFFF, p, n);
}

// Lane reductions through memory (GCC 12's _mm512_reduce_* trip -Wmaybe-uninitialized, as do its
// unmasked max/min/roundscale/scalef: hence the maskz forms with all lanes).
inline float reduce_max(__m512 v) {
    alignas(64) float t[16];
    _mm512_store_ps(t, v);
    float m = t[0];
    for (int i = 1; i < 16; ++i) m = t[i] > m ? t[i] : m;
    return m;
}
inline float reduce_add(__m512 v) {
    alignas(64) float t[16];
    _mm512_store_ps(t, v);
    float s = 0.0f;
    for (float x : t) s += x;
    return s;
}

// σ(g) = 1 / (1 + e^−g)
inline __m512 sigmoid16(__m512 g) {
    const __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), g))));
}

}  // namespace

void exp_avx512(float* out, const float* x, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = lanes(n - i);
        _mm512_mask_storeu_ps(out + i, m, exp16(_mm512_maskz_loadu_ps(m, x + i)));
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
                0xFFFF, vmx, _mm512_mask_loadu_ps(_mm512_set1_ps(ninf), lanes(V - v), z + v));
        const float mx = reduce_max(vmx);
        const __m512 vm = _mm512_set1_ps(mx);
        // −log p_target = log Σ exp(z − mx) − (z_target − mx): no log of an underflowed p.
        const float target_shifted = z[targets[row]] - mx;
        double sum = 0.0;
        for (int64_t b = 0; b < V; b += kBlock) {
            const int64_t e = b + kBlock < V ? b + kBlock : V;
            __m512 s = _mm512_setzero_ps();
            for (int64_t v = b; v < e; v += 16) {
                const __mmask16 m = lanes(e - v);
                const __m512 p = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, z + v), vm));
                _mm512_mask_storeu_ps(z + v, m, p);
                s = _mm512_mask_add_ps(s, m, s, p);
            }
            sum += static_cast<double>(reduce_add(s));
        }
        const __m512 inv = _mm512_set1_ps(static_cast<float>(1.0 / sum));
        for (int64_t v = 0; v < V; v += 16) {
            const __mmask16 m = lanes(V - v);
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
        const __mmask16 m = lanes(n - i);
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
        const __mmask16 m = lanes(n - i);
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
