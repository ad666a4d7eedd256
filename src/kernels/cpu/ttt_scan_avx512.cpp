// AVX-512 TTT `reconstruct` scan, two tokens per pass over S = Wᵀ (dt×dt, in L1/L2).
//
// For tokens a = t and b = t+1, with W the state before a (pending updates included):
//     z_a = W f̂_a,   e_a = z_a − f̂_a
//     z_b = (W − η e_a f̂_aᵀ) f̂_b = W f̂_b − η (f̂_a·f̂_b) e_a,   e_b = z_b − f̂_b
// so one pass over S gives both W f̂_a and W f̂_b. The pass first applies the pair's predecessor's
// rank-2 update S[j,:] += c0[j]·e0 + c1[j]·e1 (c = −η f̂ of the previous two tokens), so each row
// of S is loaded and stored once per two tokens; the last pair's update is applied after the loop.
// An odd last token runs a one-token pass (its second pending slot is zero).
//
// Columns go in blocks of up to 64 floats (4 registers) so z accumulates in registers; narrow
// states use two sets of accumulators (even/odd rows) to hide the FMA latency. Columns past dt are
// masked off; scratch rows are padded with zeros.
#include <immintrin.h>

#include <cmath>

#include "kernels/cpu/simd_avx512.hpp"
#include "kernels/cpu/ttt_scan.hpp"
#include "kernels/cpu/ttt_scan_scratch.hpp"

namespace bitttt::kernels {
namespace {

using simd::lane_mask;
using simd::sum_lanes;

constexpr int64_t kLanes = 16;

// What one pass reads and writes besides S.
struct Pass {
    const float* fa;  // f̂ of token a
    const float* fb;  // f̂ of token b (two-token passes)
    const float* c0;  // pending update: S[j,:] += c0[j]·e0 + c1[j]·e1
    const float* c1;
    float* e0;  // in: pending e0, e1; out: e_a, e_b (zero for one-token passes)
    float* e1;
    float* za;  // outputs z_a, z_b
    float* zb;
    float eta_dot;  // η (f̂_a·f̂_b)
};

// One column block [col, col + 16·NV) of a pass over tokens a (and b when kTwo).
template <int NV, bool kTwo>
void pass_block(float* s, int64_t dt, int64_t col, __mmask16 last, const Pass& p) {
    constexpr int kSets = NV <= 2 ? 2 : 1;  // accumulator sets (rows j ≡ k mod kSets)
    __mmask16 mask[NV];
    __m512 e0[NV], e1[NV], acc_a[kSets][NV], acc_b[kSets][NV];
    for (int v = 0; v < NV; ++v) {
        mask[v] = v == NV - 1 ? last : 0xFFFF;
        e0[v] = _mm512_maskz_loadu_ps(mask[v], p.e0 + col + v * kLanes);
        e1[v] = _mm512_maskz_loadu_ps(mask[v], p.e1 + col + v * kLanes);
        for (int k = 0; k < kSets; ++k) acc_a[k][v] = acc_b[k][v] = _mm512_setzero_ps();
    }
    auto row_step = [&](int64_t j, int k) {
        float* row = s + j * dt + col;
        const __m512 c0 = _mm512_set1_ps(p.c0[j]), c1 = _mm512_set1_ps(p.c1[j]);
        const __m512 fa = _mm512_set1_ps(p.fa[j]);
        const __m512 fb = kTwo ? _mm512_set1_ps(p.fb[j]) : fa;
        for (int v = 0; v < NV; ++v) {
            __m512 x = _mm512_maskz_loadu_ps(mask[v], row + v * kLanes);
            x = _mm512_fmadd_ps(c0, e0[v], x);
            x = _mm512_fmadd_ps(c1, e1[v], x);
            _mm512_mask_storeu_ps(row + v * kLanes, mask[v], x);
            acc_a[k][v] = _mm512_fmadd_ps(fa, x, acc_a[k][v]);
            if constexpr (kTwo) acc_b[k][v] = _mm512_fmadd_ps(fb, x, acc_b[k][v]);
        }
    };
    int64_t j = 0;
    for (; j + kSets <= dt; j += kSets)
        for (int k = 0; k < kSets; ++k) row_step(j + k, k);
    for (; j < dt; ++j) row_step(j, 0);

    const __m512 eta_dot = _mm512_set1_ps(p.eta_dot);
    for (int v = 0; v < NV; ++v) {
        const int64_t i = col + v * kLanes;
        __m512 za = acc_a[0][v], zb = acc_b[0][v];
        for (int k = 1; k < kSets; ++k) {
            za = _mm512_add_ps(za, acc_a[k][v]);
            zb = _mm512_add_ps(zb, acc_b[k][v]);
        }
        const __m512 ea = _mm512_sub_ps(za, _mm512_maskz_loadu_ps(mask[v], p.fa + i));
        _mm512_mask_storeu_ps(p.za + i, mask[v], za);
        _mm512_mask_storeu_ps(p.e0 + i, mask[v], ea);
        if constexpr (kTwo) {
            zb = _mm512_fnmadd_ps(eta_dot, ea, zb);  // z_b = W f̂_b − η (f̂_a·f̂_b) e_a
            _mm512_mask_storeu_ps(p.zb + i, mask[v], zb);
            _mm512_mask_storeu_ps(p.e1 + i, mask[v],
                                  _mm512_sub_ps(zb, _mm512_maskz_loadu_ps(mask[v], p.fb + i)));
        } else {
            _mm512_mask_storeu_ps(p.e1 + i, mask[v], _mm512_setzero_ps());
        }
    }
}

template <bool kTwo>
void pass(float* s, int64_t dt, const Pass& p) {
    int64_t col = 0;
    for (; col + 4 * kLanes <= dt; col += 4 * kLanes) pass_block<4, kTwo>(s, dt, col, 0xFFFF, p);
    const int64_t rem = dt - col;
    if (rem == 0) return;
    const int64_t nv = (rem + kLanes - 1) / kLanes;
    const __mmask16 last = lane_mask(rem - (nv - 1) * kLanes);
    switch (nv) {
        case 1:
            return pass_block<1, kTwo>(s, dt, col, last, p);
        case 2:
            return pass_block<2, kTwo>(s, dt, col, last, p);
        case 3:
            return pass_block<3, kTwo>(s, dt, col, last, p);
        default:
            return pass_block<4, kTwo>(s, dt, col, last, p);
    }
}

// out = f / (‖f‖ + ε), zero past dt.
void normalize(const float* f, int64_t dt, float* out) {
    __m512 sq = _mm512_setzero_ps();
    for (int64_t i = 0; i < dt; i += kLanes) {
        const __m512 x = _mm512_maskz_loadu_ps(lane_mask(dt - i), f + i);
        sq = _mm512_fmadd_ps(x, x, sq);
    }
    const __m512 scale = _mm512_set1_ps(1.0f / (std::sqrt(sum_lanes(sq)) + kTttNormEps));
    for (int64_t i = 0; i < dt; i += kLanes) {
        const __mmask16 m = lane_mask(dt - i);
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, f + i), scale));
    }
}

float dot(const float* a, const float* b, int64_t dt) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < dt; i += kLanes) {
        const __mmask16 m = lane_mask(dt - i);
        acc =
            _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc);
    }
    return sum_lanes(acc);
}

// out = −η x (zero past dt: x is zero there).
void scale_neg(const float* x, float eta, int64_t dt, float* out) {
    const __m512 neg_eta = _mm512_set1_ps(-eta);
    for (int64_t i = 0; i < dt; i += kLanes)
        _mm512_store_ps(out + i, _mm512_mul_ps(neg_eta, _mm512_load_ps(x + i)));
}

}  // namespace

void ttt_scan_reconstruct_avx512(float* s, int64_t dt, float eta, const float* f, int64_t f_stride,
                                 int64_t tokens, float* z, int64_t z_stride) {
    TttScanScratch scratch(dt);  // zero-filled: no update is pending before the first token
    Pass p{};
    float* fa = scratch.row(0);
    float* fb = scratch.row(1);
    float* c0 = scratch.row(2);
    float* c1 = scratch.row(3);
    p.fa = fa;
    p.fb = fb;
    p.c0 = c0;
    p.c1 = c1;
    p.e0 = scratch.row(4);
    p.e1 = scratch.row(5);
    int64_t t = 0;
    for (; t + 2 <= tokens; t += 2) {
        // Both f̂ go to scratch before z is written (z may alias f).
        normalize(f + t * f_stride, dt, fa);
        normalize(f + (t + 1) * f_stride, dt, fb);
        p.eta_dot = eta * dot(fa, fb, dt);
        p.za = z + t * z_stride;
        p.zb = z + (t + 1) * z_stride;
        pass<true>(s, dt, p);
        scale_neg(fa, eta, dt, c0);  // the pair's update, applied by the next pass
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
    for (int64_t j = 0; j < dt; ++j) {
        const __m512 a = _mm512_set1_ps(c0[j]), b = _mm512_set1_ps(c1[j]);
        float* row = s + j * dt;
        for (int64_t i = 0; i < dt; i += kLanes) {
            const __mmask16 m = lane_mask(dt - i);
            __m512 x = _mm512_maskz_loadu_ps(m, row + i);
            x = _mm512_fmadd_ps(a, _mm512_load_ps(p.e0 + i), x);
            x = _mm512_fmadd_ps(b, _mm512_load_ps(p.e1 + i), x);
            _mm512_mask_storeu_ps(row + i, m, x);
        }
    }
}

}  // namespace bitttt::kernels
