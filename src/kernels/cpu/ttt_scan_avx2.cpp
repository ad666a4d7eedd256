// AVX2 TTT `reconstruct` scan, two tokens per pass over S = Wᵀ: the same algorithm as the AVX-512
// version (see ttt_scan_avx512.cpp for the math), with 8-float vectors. Columns go in blocks of up
// to 32 floats (4 registers); narrow states use two accumulator sets (even/odd rows). Masked
// loads/stores (slow on some CPUs) are used only for the last vector of a row when dt is not a
// multiple of 8; scratch rows are padded with zeros, so they are read and written whole.
#include <immintrin.h>

#include <cmath>

#include "kernels/cpu/simd_avx2.hpp"
#include "kernels/cpu/ttt_scan.hpp"
#include "kernels/cpu/ttt_scan_scratch.hpp"

namespace bitttt::kernels {
namespace {

using simd::lane_mask;
using simd::sum_lanes;

constexpr int64_t kLanes = 8;

struct Pass {  // as in ttt_scan_avx512.cpp
    const float* fa;
    const float* fb;
    const float* c0;
    const float* c1;
    float* e0;
    float* e1;
    float* za;
    float* zb;
    float eta_dot;
};

// Column block [col, col + 8·NV); with kMaskLast the last vector covers only the lanes in `last`.
template <int NV, bool kMaskLast, bool kTwo>
void pass_block(float* s, int64_t dt, int64_t col, __m256i last, const Pass& p) {
    constexpr int kSets = NV <= 2 ? 2 : 1;
    auto masked = [](int v) { return kMaskLast && v == NV - 1; };
    auto load = [&](const float* q, int v) {
        return masked(v) ? _mm256_maskload_ps(q, last) : _mm256_loadu_ps(q);
    };
    auto store = [&](float* q, int v, __m256 x) {
        if (masked(v))
            _mm256_maskstore_ps(q, last, x);
        else
            _mm256_storeu_ps(q, x);
    };
    __m256 e0[NV], e1[NV], acc_a[kSets][NV], acc_b[kSets][NV];
    for (int v = 0; v < NV; ++v) {
        e0[v] = _mm256_loadu_ps(p.e0 + col + v * kLanes);  // padded scratch: zeros past dt
        e1[v] = _mm256_loadu_ps(p.e1 + col + v * kLanes);
        for (int k = 0; k < kSets; ++k) acc_a[k][v] = acc_b[k][v] = _mm256_setzero_ps();
    }
    auto row_step = [&](int64_t j, int k) {
        float* row = s + j * dt + col;
        const __m256 c0 = _mm256_set1_ps(p.c0[j]), c1 = _mm256_set1_ps(p.c1[j]);
        const __m256 fa = _mm256_set1_ps(p.fa[j]);
        const __m256 fb = kTwo ? _mm256_set1_ps(p.fb[j]) : fa;
        for (int v = 0; v < NV; ++v) {
            __m256 x = load(row + v * kLanes, v);
            x = _mm256_fmadd_ps(c0, e0[v], x);
            x = _mm256_fmadd_ps(c1, e1[v], x);
            store(row + v * kLanes, v, x);
            acc_a[k][v] = _mm256_fmadd_ps(fa, x, acc_a[k][v]);
            if constexpr (kTwo) acc_b[k][v] = _mm256_fmadd_ps(fb, x, acc_b[k][v]);
        }
    };
    int64_t j = 0;
    for (; j + kSets <= dt; j += kSets)
        for (int k = 0; k < kSets; ++k) row_step(j + k, k);
    for (; j < dt; ++j) row_step(j, 0);

    const __m256 eta_dot = _mm256_set1_ps(p.eta_dot);
    for (int v = 0; v < NV; ++v) {
        const int64_t i = col + v * kLanes;
        __m256 za = acc_a[0][v], zb = acc_b[0][v];
        for (int k = 1; k < kSets; ++k) {
            za = _mm256_add_ps(za, acc_a[k][v]);
            zb = _mm256_add_ps(zb, acc_b[k][v]);
        }
        // Past dt: z is 0 (masked loads give 0) and f̂ is 0, so the padded e stays 0.
        const __m256 ea = _mm256_sub_ps(za, _mm256_loadu_ps(p.fa + i));
        store(p.za + i, v, za);
        _mm256_storeu_ps(p.e0 + i, ea);
        if constexpr (kTwo) {
            zb = _mm256_fnmadd_ps(eta_dot, ea, zb);  // z_b = W f̂_b − η (f̂_a·f̂_b) e_a
            store(p.zb + i, v, zb);
            _mm256_storeu_ps(p.e1 + i, _mm256_sub_ps(zb, _mm256_loadu_ps(p.fb + i)));
        } else {
            _mm256_storeu_ps(p.e1 + i, _mm256_setzero_ps());
        }
    }
}

template <bool kMaskLast, bool kTwo>
void pass_tail(int64_t nv, float* s, int64_t dt, int64_t col, __m256i last, const Pass& p) {
    switch (nv) {
        case 1:
            return pass_block<1, kMaskLast, kTwo>(s, dt, col, last, p);
        case 2:
            return pass_block<2, kMaskLast, kTwo>(s, dt, col, last, p);
        case 3:
            return pass_block<3, kMaskLast, kTwo>(s, dt, col, last, p);
        default:
            return pass_block<4, kMaskLast, kTwo>(s, dt, col, last, p);
    }
}

template <bool kTwo>
void pass(float* s, int64_t dt, const Pass& p) {
    const __m256i full = _mm256_set1_epi32(-1);
    int64_t col = 0;
    for (; col + 4 * kLanes <= dt; col += 4 * kLanes)
        pass_block<4, false, kTwo>(s, dt, col, full, p);
    const int64_t rem = dt - col;
    if (rem == 0) return;
    const int64_t nv = (rem + kLanes - 1) / kLanes;
    const int64_t in_last = rem - (nv - 1) * kLanes;
    if (in_last == kLanes)
        pass_tail<false, kTwo>(nv, s, dt, col, full, p);
    else
        pass_tail<true, kTwo>(nv, s, dt, col, lane_mask(in_last), p);
}

// out = f / (‖f‖ + ε); out is a padded scratch row (zeros past dt).
void normalize(const float* f, int64_t dt, float* out) {
    const int64_t full_end = dt / kLanes * kLanes;
    __m256 sq = _mm256_setzero_ps();
    for (int64_t i = 0; i < dt; i += kLanes) {
        const __m256 x = i < full_end ? _mm256_loadu_ps(f + i)
                                      : _mm256_maskload_ps(f + i, lane_mask(dt - full_end));
        _mm256_storeu_ps(out + i, x);
        sq = _mm256_fmadd_ps(x, x, sq);
    }
    const __m256 scale = _mm256_set1_ps(1.0f / (std::sqrt(sum_lanes(sq)) + kTttNormEps));
    for (int64_t i = 0; i < dt; i += kLanes)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(out + i), scale));
}

float dot(const float* a, const float* b, int64_t dt) {  // padded scratch rows
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < dt; i += kLanes)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    return sum_lanes(acc);
}

void scale_neg(const float* x, float eta, int64_t dt, float* out) {
    const __m256 neg_eta = _mm256_set1_ps(-eta);
    for (int64_t i = 0; i < dt; i += kLanes)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(neg_eta, _mm256_loadu_ps(x + i)));
}

}  // namespace

void ttt_scan_reconstruct_avx2(float* s, int64_t dt, float eta, const float* f, int64_t f_stride,
                               int64_t tokens, float* z, int64_t z_stride) {
    TttScanScratch scratch(dt);  // zero-filled: no update is pending before the first token
    float* fa = scratch.row(0);
    float* fb = scratch.row(1);
    float* c0 = scratch.row(2);
    float* c1 = scratch.row(3);
    Pass p{fa, fb, c0, c1, scratch.row(4), scratch.row(5), nullptr, nullptr, 0.0f};
    int64_t t = 0;
    for (; t + 2 <= tokens; t += 2) {
        normalize(f + t * f_stride, dt, fa);  // before z is written: z may alias f
        normalize(f + (t + 1) * f_stride, dt, fb);
        p.eta_dot = eta * dot(fa, fb, dt);
        p.za = z + t * z_stride;
        p.zb = z + (t + 1) * z_stride;
        pass<true>(s, dt, p);
        scale_neg(fa, eta, dt, c0);
        scale_neg(fb, eta, dt, c1);
    }
    if (t < tokens) {
        normalize(f + t * f_stride, dt, fa);
        p.za = z + t * z_stride;
        pass<false>(s, dt, p);
        scale_neg(fa, eta, dt, c0);
        for (int64_t i = 0; i < dt; ++i) c1[i] = 0.0f;
    }
    // Apply the last pending update: S[j,:] += c0[j]·e0 + c1[j]·e1.
    const int64_t full_end = dt / kLanes * kLanes;
    const __m256i tail = lane_mask(dt - full_end);
    for (int64_t j = 0; j < dt; ++j) {
        const __m256 a = _mm256_set1_ps(c0[j]), b = _mm256_set1_ps(c1[j]);
        float* row = s + j * dt;
        for (int64_t i = 0; i < dt; i += kLanes) {
            const bool part = i >= full_end;
            __m256 x = part ? _mm256_maskload_ps(row + i, tail) : _mm256_loadu_ps(row + i);
            x = _mm256_fmadd_ps(a, _mm256_loadu_ps(p.e0 + i), x);
            x = _mm256_fmadd_ps(b, _mm256_loadu_ps(p.e1 + i), x);
            if (part)
                _mm256_maskstore_ps(row + i, tail, x);
            else
                _mm256_storeu_ps(row + i, x);
        }
    }
}

}  // namespace bitttt::kernels
