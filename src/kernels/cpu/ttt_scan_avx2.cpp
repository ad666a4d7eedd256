// AVX2 TTT `reconstruct` scan, one token per pass over S = Wᵀ: row j of S first receives the
// previous token's update S[j,:] += c[j]·e (c = −η f̂_{t−1}, e = z_{t−1} − f̂_{t−1}), then feeds the
// new read z_t += f̂_t[j]·S[j,:], so S is loaded and stored once per token; the last update is
// applied after the loop. Columns go in blocks of up to 32 floats (4 registers), two accumulator
// sets (even/odd rows). Masked loads/stores (slow on some CPUs) are used only for the last vector
// of a row when dt is not a multiple of 8.
#include <immintrin.h>

#include <cmath>

#include "kernels/cpu/ttt_scan.hpp"
#include "kernels/cpu/ttt_scan_scratch.hpp"

namespace bitttt::kernels {
namespace {

constexpr int64_t kLanes = 8;

// All-ones in the first n (0..8) lanes.
inline __m256i lane_mask(int64_t n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), idx);
}

template <bool kMasked>
inline __m256 load(const float* p, __m256i m) {
    if constexpr (kMasked)
        return _mm256_maskload_ps(p, m);
    else
        return _mm256_loadu_ps(p);
}
template <bool kMasked>
inline void store(float* p, __m256i m, __m256 x) {
    if constexpr (kMasked)
        _mm256_maskstore_ps(p, m, x);
    else
        _mm256_storeu_ps(p, x);
}

// One column block of NV vectors; with kMaskLast the last one covers only the lanes in `last`.
template <int NV, bool kMaskLast>
void scan_block(float* s, int64_t dt, int64_t col, __m256i last, const float* fh, const float* c,
                float* e, float* zt) {
    __m256 ev[NV], acc0[NV], acc1[NV];
    for (int v = 0; v < NV; ++v) {
        ev[v] = _mm256_loadu_ps(e + col + v * kLanes);  // scratch rows are padded: always readable
        acc0[v] = _mm256_setzero_ps();
        acc1[v] = _mm256_setzero_ps();
    }
    // Row access through the mask only for the last vector of a masked block.
    auto row_load = [&](const float* p, int v) {
        return (kMaskLast && v == NV - 1) ? load<true>(p, last) : load<false>(p, last);
    };
    auto row_store = [&](float* p, int v, __m256 x) {
        if (kMaskLast && v == NV - 1)
            store<true>(p, last, x);
        else
            store<false>(p, last, x);
    };
    int64_t j = 0;
    for (; j + 1 < dt; j += 2) {
        float* r0 = s + j * dt + col;
        float* r1 = r0 + dt;
        const __m256 c0 = _mm256_set1_ps(c[j]), c1 = _mm256_set1_ps(c[j + 1]);
        const __m256 f0 = _mm256_set1_ps(fh[j]), f1 = _mm256_set1_ps(fh[j + 1]);
        for (int v = 0; v < NV; ++v) {
            __m256 x0 = _mm256_fmadd_ps(c0, ev[v], row_load(r0 + v * kLanes, v));
            __m256 x1 = _mm256_fmadd_ps(c1, ev[v], row_load(r1 + v * kLanes, v));
            row_store(r0 + v * kLanes, v, x0);
            row_store(r1 + v * kLanes, v, x1);
            acc0[v] = _mm256_fmadd_ps(f0, x0, acc0[v]);
            acc1[v] = _mm256_fmadd_ps(f1, x1, acc1[v]);
        }
    }
    if (j < dt) {
        float* r0 = s + j * dt + col;
        const __m256 c0 = _mm256_set1_ps(c[j]), f0 = _mm256_set1_ps(fh[j]);
        for (int v = 0; v < NV; ++v) {
            __m256 x0 = _mm256_fmadd_ps(c0, ev[v], row_load(r0 + v * kLanes, v));
            row_store(r0 + v * kLanes, v, x0);
            acc0[v] = _mm256_fmadd_ps(f0, x0, acc0[v]);
        }
    }
    for (int v = 0; v < NV; ++v) {
        const __m256 zv = _mm256_add_ps(acc0[v], acc1[v]);
        // Lanes past dt of e hold garbage-free values: z there is 0 (masked loads give 0) and f̂ is
        // 0.
        _mm256_storeu_ps(e + col + v * kLanes,
                         _mm256_sub_ps(zv, _mm256_loadu_ps(fh + col + v * kLanes)));
        if (kMaskLast && v == NV - 1)
            store<true>(zt + col + v * kLanes, last, zv);
        else
            store<false>(zt + col + v * kLanes, last, zv);
    }
}

template <bool kMaskLast>
void scan_tail(int64_t nv, float* s, int64_t dt, int64_t col, __m256i last, const float* fh,
               const float* c, float* e, float* zt) {
    switch (nv) {
        case 1:
            return scan_block<1, kMaskLast>(s, dt, col, last, fh, c, e, zt);
        case 2:
            return scan_block<2, kMaskLast>(s, dt, col, last, fh, c, e, zt);
        case 3:
            return scan_block<3, kMaskLast>(s, dt, col, last, fh, c, e, zt);
        default:
            return scan_block<4, kMaskLast>(s, dt, col, last, fh, c, e, zt);
    }
}

void scan_columns(float* s, int64_t dt, const float* fh, const float* c, float* e, float* zt) {
    const __m256i full = _mm256_set1_epi32(-1);
    int64_t col = 0;
    for (; col + 4 * kLanes <= dt; col += 4 * kLanes)
        scan_block<4, false>(s, dt, col, full, fh, c, e, zt);
    const int64_t rem = dt - col;
    if (rem == 0) return;
    const int64_t nv = (rem + kLanes - 1) / kLanes;
    const int64_t in_last = rem - (nv - 1) * kLanes;
    if (in_last == kLanes)
        scan_tail<false>(nv, s, dt, col, full, fh, c, e, zt);
    else
        scan_tail<true>(nv, s, dt, col, lane_mask(in_last), fh, c, e, zt);
}

}  // namespace

void ttt_scan_reconstruct_avx2(float* s, int64_t dt, float eta, const float* f, int64_t f_stride,
                               int64_t tokens, float* z, int64_t z_stride) {
    TttScanScratch scratch(dt);  // zero-filled (padding included): the update before token 0 is 0·0
    float* fh = scratch.row(0);
    float* c = scratch.row(1);
    float* e = scratch.row(2);
    const int64_t full_end = dt / kLanes * kLanes;
    const __m256i tail = lane_mask(dt - full_end);
    for (int64_t t = 0; t < tokens; ++t) {
        const float* ft = f + t * f_stride;
        // f̂ = f / (‖f‖ + ε), copied into the (padded) scratch first: z may alias f.
        __m256 sq = _mm256_setzero_ps();
        for (int64_t i = 0; i < full_end; i += kLanes) {
            const __m256 x = _mm256_loadu_ps(ft + i);
            _mm256_storeu_ps(fh + i, x);
            sq = _mm256_fmadd_ps(x, x, sq);
        }
        if (full_end < dt) {
            const __m256 x = _mm256_maskload_ps(ft + full_end, tail);
            _mm256_storeu_ps(fh + full_end, x);
            sq = _mm256_fmadd_ps(x, x, sq);
        }
        alignas(32) float parts[kLanes];
        _mm256_store_ps(parts, sq);
        float sum_sq = 0.0f;
        for (float p : parts) sum_sq += p;
        const __m256 scale = _mm256_set1_ps(1.0f / (std::sqrt(sum_sq) + kTttNormEps));
        for (int64_t i = 0; i < dt; i += kLanes)
            _mm256_storeu_ps(fh + i, _mm256_mul_ps(_mm256_loadu_ps(fh + i), scale));
        scan_columns(s, dt, fh, c, e, z + t * z_stride);
        const __m256 neg_eta = _mm256_set1_ps(-eta);
        for (int64_t i = 0; i < dt; i += kLanes)
            _mm256_storeu_ps(c + i, _mm256_mul_ps(neg_eta, _mm256_loadu_ps(fh + i)));
    }
    // Apply the last token's update: S[j,:] += c[j] · e.
    for (int64_t j = 0; j < dt; ++j) {
        const __m256 cj = _mm256_set1_ps(c[j]);
        float* row = s + j * dt;
        int64_t i = 0;
        for (; i < full_end; i += kLanes)
            _mm256_storeu_ps(row + i,
                             _mm256_fmadd_ps(cj, _mm256_loadu_ps(e + i), _mm256_loadu_ps(row + i)));
        if (i < dt)
            _mm256_maskstore_ps(
                row + i, tail,
                _mm256_fmadd_ps(cj, _mm256_loadu_ps(e + i), _mm256_maskload_ps(row + i, tail)));
    }
}

}  // namespace bitttt::kernels
