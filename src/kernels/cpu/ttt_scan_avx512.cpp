// AVX-512 TTT `reconstruct` scan. S = Wᵀ (dt×dt) stays in L1/L2; each token streams it once:
// row j of S first receives the previous token's update S[j,:] += c[j]·e (c = −η f̂_{t−1},
// e = z_{t−1} − f̂_{t−1}), then feeds the new read z_t += f̂_t[j]·S[j,:]. Delaying each update to the
// next token's pass halves the traffic over S; the last update is applied after the loop.
// Columns go in blocks of up to 64 floats (4 registers) so z accumulates in registers; two sets of
// accumulators (even/odd rows) hide the FMA latency. Columns past dt are masked off.
#include <immintrin.h>

#include <cmath>

#include "kernels/cpu/ttt_scan.hpp"
#include "kernels/cpu/ttt_scan_scratch.hpp"

namespace bitttt::kernels {
namespace {

constexpr int64_t kLanes = 16;

// Sum of the 16 lanes, by swapping halves, quarters, pairs, neighbours. (The maskz forms: GCC 12's
// unmasked ones, like _mm512_reduce_add_ps, start from an undefined register and trip
// -Wmaybe-uninitialized.)
inline float sum_lanes(__m512 x) {
    x = _mm512_add_ps(x, _mm512_maskz_shuffle_f32x4(0xFFFF, x, x, 0x4E));
    x = _mm512_add_ps(x, _mm512_maskz_shuffle_f32x4(0xFFFF, x, x, 0xB1));
    x = _mm512_add_ps(x, _mm512_maskz_permute_ps(0xFFFF, x, 0x4E));
    x = _mm512_add_ps(x, _mm512_maskz_permute_ps(0xFFFF, x, 0xB1));
    return _mm512_cvtss_f32(x);
}

inline __mmask16 lane_mask(int64_t n) {  // the first n (1..16) lanes
    return static_cast<__mmask16>(n >= kLanes ? 0xFFFF : (1u << n) - 1);
}

// One column block [col, col + 16·NV) (the last vector masked by `last`): update S with the
// pending (c, e), accumulate z_t, then turn e into the new error z_t − f̂_t for these columns.
template <int NV>
void scan_block(float* s, int64_t dt, int64_t col, __mmask16 last, const float* fh, const float* c,
                float* e, float* zt) {
    __mmask16 mask[NV];
    __m512 ev[NV], acc0[NV], acc1[NV];
    for (int v = 0; v < NV; ++v) {
        mask[v] = v == NV - 1 ? last : 0xFFFF;
        ev[v] = _mm512_maskz_loadu_ps(mask[v], e + col + v * kLanes);
        acc0[v] = _mm512_setzero_ps();
        acc1[v] = _mm512_setzero_ps();
    }
    int64_t j = 0;
    for (; j + 1 < dt; j += 2) {
        float* r0 = s + j * dt + col;
        float* r1 = r0 + dt;
        const __m512 c0 = _mm512_set1_ps(c[j]), c1 = _mm512_set1_ps(c[j + 1]);
        const __m512 f0 = _mm512_set1_ps(fh[j]), f1 = _mm512_set1_ps(fh[j + 1]);
        for (int v = 0; v < NV; ++v) {
            __m512 x0 = _mm512_maskz_loadu_ps(mask[v], r0 + v * kLanes);
            __m512 x1 = _mm512_maskz_loadu_ps(mask[v], r1 + v * kLanes);
            x0 = _mm512_fmadd_ps(c0, ev[v], x0);
            x1 = _mm512_fmadd_ps(c1, ev[v], x1);
            _mm512_mask_storeu_ps(r0 + v * kLanes, mask[v], x0);
            _mm512_mask_storeu_ps(r1 + v * kLanes, mask[v], x1);
            acc0[v] = _mm512_fmadd_ps(f0, x0, acc0[v]);
            acc1[v] = _mm512_fmadd_ps(f1, x1, acc1[v]);
        }
    }
    if (j < dt) {
        float* r0 = s + j * dt + col;
        const __m512 c0 = _mm512_set1_ps(c[j]), f0 = _mm512_set1_ps(fh[j]);
        for (int v = 0; v < NV; ++v) {
            __m512 x0 = _mm512_maskz_loadu_ps(mask[v], r0 + v * kLanes);
            x0 = _mm512_fmadd_ps(c0, ev[v], x0);
            _mm512_mask_storeu_ps(r0 + v * kLanes, mask[v], x0);
            acc0[v] = _mm512_fmadd_ps(f0, x0, acc0[v]);
        }
    }
    for (int v = 0; v < NV; ++v) {
        const __m512 zv = _mm512_add_ps(acc0[v], acc1[v]);
        _mm512_mask_storeu_ps(zt + col + v * kLanes, mask[v], zv);
        const __m512 fv = _mm512_maskz_loadu_ps(mask[v], fh + col + v * kLanes);
        _mm512_mask_storeu_ps(e + col + v * kLanes, mask[v], _mm512_sub_ps(zv, fv));
    }
}

// Runs scan_block over all columns: full blocks of 64, then one block for the remainder.
void scan_columns(float* s, int64_t dt, const float* fh, const float* c, float* e, float* zt) {
    int64_t col = 0;
    for (; col + 4 * kLanes <= dt; col += 4 * kLanes)
        scan_block<4>(s, dt, col, 0xFFFF, fh, c, e, zt);
    const int64_t rem = dt - col;
    if (rem == 0) return;
    const int64_t nv = (rem + kLanes - 1) / kLanes;
    const __mmask16 last = lane_mask(rem - (nv - 1) * kLanes);
    switch (nv) {
        case 1:
            return scan_block<1>(s, dt, col, last, fh, c, e, zt);
        case 2:
            return scan_block<2>(s, dt, col, last, fh, c, e, zt);
        case 3:
            return scan_block<3>(s, dt, col, last, fh, c, e, zt);
        default:
            return scan_block<4>(s, dt, col, last, fh, c, e, zt);
    }
}

}  // namespace

void ttt_scan_reconstruct_avx512(float* s, int64_t dt, float eta, const float* f, int64_t f_stride,
                                 int64_t tokens, float* z, int64_t z_stride) {
    TttScanScratch scratch(dt);  // zero-filled: the pending update before token 0 is 0·0
    float* fh = scratch.row(0);
    float* c = scratch.row(1);
    float* e = scratch.row(2);
    const __m512 neg_eta = _mm512_set1_ps(-eta);
    for (int64_t t = 0; t < tokens; ++t) {
        const float* ft = f + t * f_stride;
        // f̂ = f / (‖f‖ + ε), into scratch before z_t is written (z may alias f).
        __m512 sq = _mm512_setzero_ps();
        for (int64_t i = 0; i < dt; i += kLanes) {
            const __m512 x = _mm512_maskz_loadu_ps(lane_mask(dt - i), ft + i);
            sq = _mm512_fmadd_ps(x, x, sq);
        }
        const float inv_norm = 1.0f / (std::sqrt(sum_lanes(sq)) + kTttNormEps);
        const __m512 scale = _mm512_set1_ps(inv_norm);
        for (int64_t i = 0; i < dt; i += kLanes) {
            const __mmask16 m = lane_mask(dt - i);
            _mm512_mask_storeu_ps(fh + i, m,
                                  _mm512_mul_ps(_mm512_maskz_loadu_ps(m, ft + i), scale));
        }
        scan_columns(s, dt, fh, c, e, z + t * z_stride);
        // The update this token owes, applied during the next token's pass: c = −η f̂_t.
        for (int64_t i = 0; i < dt; i += kLanes) {
            const __mmask16 m = lane_mask(dt - i);
            _mm512_mask_storeu_ps(c + i, m,
                                  _mm512_mul_ps(neg_eta, _mm512_maskz_loadu_ps(m, fh + i)));
        }
    }
    // Apply the last token's update: S[j,:] += c[j] · e.
    for (int64_t j = 0; j < dt; ++j) {
        const __m512 cj = _mm512_set1_ps(c[j]);
        float* row = s + j * dt;
        for (int64_t i = 0; i < dt; i += kLanes) {
            const __mmask16 m = lane_mask(dt - i);
            const __m512 x = _mm512_maskz_loadu_ps(m, row + i);
            _mm512_mask_storeu_ps(row + i, m,
                                  _mm512_fmadd_ps(cj, _mm512_maskz_loadu_ps(m, e + i), x));
        }
    }
}

}  // namespace bitttt::kernels
