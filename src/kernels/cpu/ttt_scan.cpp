// The TTT `reconstruct` scan: the scalar reference and the ISA dispatch.
#include <cmath>

#include "core/cpu_features.hpp"
#include "kernels/cpu/ttt_scan.hpp"
#include "kernels/cpu/ttt_scan_scratch.hpp"

namespace bitttt::kernels {

void ttt_scan_reconstruct_scalar(float* s, int64_t dt, float eta, const float* f, int64_t f_stride,
                                 int64_t tokens, float* z, int64_t z_stride) {
    TttScanScratch scratch(dt);
    float* fh = scratch.row(0);  // f̂_t
    float* e = scratch.row(1);   // z_t − f̂_t
    for (int64_t t = 0; t < tokens; ++t) {
        const float* ft = f + t * f_stride;
        float* zt = z + t * z_stride;
        float sum_sq = 0.0f;
        for (int64_t j = 0; j < dt; ++j) sum_sq += ft[j] * ft[j];
        const float inv_norm = 1.0f / (std::sqrt(sum_sq) + kTttNormEps);
        for (int64_t j = 0; j < dt; ++j) fh[j] = ft[j] * inv_norm;  // before zt: they may alias
        // z = W f̂ = Σ_j f̂[j] S[j, :]
        for (int64_t i = 0; i < dt; ++i) zt[i] = 0.0f;
        for (int64_t j = 0; j < dt; ++j)
            for (int64_t i = 0; i < dt; ++i) zt[i] += fh[j] * s[j * dt + i];
        // W −= η (z − f̂) f̂ᵀ, i.e. S[j, :] += (−η f̂[j]) (z − f̂)
        for (int64_t i = 0; i < dt; ++i) e[i] = zt[i] - fh[i];
        for (int64_t j = 0; j < dt; ++j) {
            const float c = -eta * fh[j];
            for (int64_t i = 0; i < dt; ++i) s[j * dt + i] += c * e[i];
        }
    }
}

void ttt_scan_reconstruct(float* s, int64_t dt, float eta, const float* f, int64_t f_stride,
                          int64_t tokens, float* z, int64_t z_stride) {
    if (dt <= 0 || tokens <= 0) return;
    switch (active_isa()) {
        case Isa::kAvx512:
            return ttt_scan_reconstruct_avx512(s, dt, eta, f, f_stride, tokens, z, z_stride);
        case Isa::kAvx2:
            return ttt_scan_reconstruct_avx2(s, dt, eta, f, f_stride, tokens, z, z_stride);
        case Isa::kScalar:
            break;
    }
    ttt_scan_reconstruct_scalar(s, dt, eta, f, f_stride, tokens, z, z_stride);
}

}  // namespace bitttt::kernels
