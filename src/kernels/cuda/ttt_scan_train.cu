// The TTT scan of training on the GPU (see ttt_scan_train.hpp for the contract and
// train/ttt_bptt.hpp for the math). This first version is the simple one: one block per
// (sequence, head), one thread per row of the state, W (and G) in the workspace in global memory.
//
// Backward: for each chunk (last to first) the block reloads W from the chunk's checkpoint, runs
// the chunk forward again keeping e_t = W_{t-1} k_t − v_t (Dh floats per token), and then walks the
// chunk backward, undoing each step exactly as it was made: W_{t-1} = W_t + η_t e_t k_tᵀ. Only W,
// G and the chunk's e_t are held (no per-token states).
#include <cuda_runtime.h>

#include <algorithm>

#include "core/error.hpp"
#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/ttt_scan_train.hpp"

namespace bitttt::cuda {
namespace {

struct ScanDims {
    int64_t B, T, H, Dh, chunk, chunks;
    bool read_before;
};

ScanDims dims_of(const train::TttScanShape& s) {
    return {s.B, s.T, s.H, s.Dh, s.chunk, s.chunks(), s.read_before};
}

// Floats of workspace per (sequence, head): W, G, the chunk's e_t and u.
int64_t simple_floats_per_pair(const train::TttScanShape& s) {
    return 2 * s.Dh * s.Dh + s.chunk * s.Dh + s.Dh;
}

constexpr int kSimpleThreads = 128;

__global__ void scan_forward_simple(float* y, float* checkpoints, const float* q, const float* k,
                                    const float* v, const float* eta, float eta_const, ScanDims d,
                                    float* workspace) {
    const int64_t bh = blockIdx.x, b = bh / d.H, h = bh % d.H, Dh = d.Dh, dd = Dh * Dh;
    const int64_t Dt = d.H * Dh;
    float* w = workspace + bh * dd;  // W row-major; thread i owns row i
    float* ckpt = checkpoints + bh * d.chunks * dd;
    for (int64_t i = threadIdx.x; i < Dh; i += blockDim.x)
        for (int64_t j = 0; j < Dh; ++j) w[i * Dh + j] = 0.0f;
    for (int64_t t = 0; t < d.T; ++t) {
        const int64_t row = b * d.T + t, off = row * Dt + h * Dh;
        const float et = eta ? eta[row * d.H + h] : eta_const;
        const float *qt = q + off, *kt = k + off;
        for (int64_t i = threadIdx.x; i < Dh; i += blockDim.x) {
            float* wi = w + i * Dh;
            if (t % d.chunk == 0)
                for (int64_t j = 0; j < Dh; ++j) ckpt[(t / d.chunk) * dd + i * Dh + j] = wi[j];
            if (d.read_before) {
                float sum = 0.0f;
                for (int64_t j = 0; j < Dh; ++j) sum += wi[j] * qt[j];
                y[off + i] = sum;
            }
            float z = 0.0f;
            for (int64_t j = 0; j < Dh; ++j) z += wi[j] * kt[j];
            const float a = -et * (z - v[off + i]);
            for (int64_t j = 0; j < Dh; ++j) wi[j] += a * kt[j];
            if (!d.read_before) {
                float sum = 0.0f;
                for (int64_t j = 0; j < Dh; ++j) sum += wi[j] * qt[j];
                y[off + i] = sum;
            }
        }
    }
}

// Phases per token alternate between "thread per row i" (row-local updates of W and G) and
// "thread per column j" (the column sums of dq and dk, and every write of element j of dq, dk, dv,
// so that aliased gradients are updated by one thread).
__global__ void scan_backward_simple(float* dq, float* dk, float* dv, float* deta, const float* dy,
                                     const float* checkpoints, const float* q, const float* k,
                                     const float* v, const float* eta, float eta_const, ScanDims d,
                                     float* workspace) {
    const int64_t bh = blockIdx.x, b = bh / d.H, h = bh % d.H, Dh = d.Dh, dd = Dh * Dh;
    const int64_t Dt = d.H * Dh;
    float* w = workspace + bh * (2 * dd + d.chunk * Dh + Dh);
    float* g = w + dd;
    float* e_chunk = g + dd;
    float* u = e_chunk + d.chunk * Dh;
    const float* ckpt = checkpoints + bh * d.chunks * dd;
    for (int64_t i = threadIdx.x; i < Dh; i += blockDim.x)
        for (int64_t j = 0; j < Dh; ++j) g[i * Dh + j] = 0.0f;
    for (int64_t c = d.chunks - 1; c >= 0; --c) {
        const int64_t t0 = c * d.chunk, t1 = min(d.T, t0 + d.chunk);
        __syncthreads();
        // Rows: W = W_{t0}, then forward to W_{t1} keeping e_t.
        for (int64_t i = threadIdx.x; i < Dh; i += blockDim.x) {
            float* wi = w + i * Dh;
            for (int64_t j = 0; j < Dh; ++j) wi[j] = ckpt[c * dd + i * Dh + j];
            for (int64_t t = t0; t < t1; ++t) {
                const int64_t row = b * d.T + t, off = row * Dt + h * Dh;
                const float et = eta ? eta[row * d.H + h] : eta_const;
                const float* kt = k + off;
                float z = 0.0f;
                for (int64_t j = 0; j < Dh; ++j) z += wi[j] * kt[j];
                const float e = z - v[off + i];
                e_chunk[(t - t0) * Dh + i] = e;
                const float a = -et * e;
                for (int64_t j = 0; j < Dh; ++j) wi[j] += a * kt[j];
            }
        }
        __syncthreads();
        for (int64_t t = t1 - 1; t >= t0; --t) {
            const int64_t row = b * d.T + t, off = row * Dt + h * Dh;
            const float et = eta ? eta[row * d.H + h] : eta_const;
            const float *qt = q + off, *kt = k + off, *dyt = dy + off;
            const float* et_vec = e_chunk + (t - t0) * Dh;
            if (!d.read_before) {  // W = W_t: dq += W_tᵀ dy, then G += dy qᵀ
                for (int64_t j = threadIdx.x; j < Dh; j += blockDim.x) {
                    float acc = dq[off + j];
                    for (int64_t i = 0; i < Dh; ++i) acc += dyt[i] * w[i * Dh + j];
                    dq[off + j] = acc;
                }
                __syncthreads();
                for (int64_t i = threadIdx.x; i < Dh; i += blockDim.x)
                    for (int64_t j = 0; j < Dh; ++j) g[i * Dh + j] += dyt[i] * qt[j];
            }
            // Rows: W ← W_{t-1} = W_t + η e kᵀ, u = G k.
            for (int64_t i = threadIdx.x; i < Dh; i += blockDim.x) {
                const float a = et * et_vec[i];
                float* wi = w + i * Dh;
                float ui = 0.0f;
                for (int64_t j = 0; j < Dh; ++j) {
                    wi[j] += a * kt[j];
                    ui += g[i * Dh + j] * kt[j];
                }
                u[i] = ui;
            }
            __syncthreads();
            // Columns: dk −= η (Gᵀe + W_{t-1}ᵀu), dv += η u, (read before) dq += W_{t-1}ᵀ dy.
            for (int64_t j = threadIdx.x; j < Dh; j += blockDim.x) {
                float tmp = 0.0f;
                for (int64_t i = 0; i < Dh; ++i) tmp += et_vec[i] * g[i * Dh + j];
                for (int64_t i = 0; i < Dh; ++i) tmp += u[i] * w[i * Dh + j];
                dv[off + j] += et * u[j];
                dk[off + j] -= et * tmp;
                if (d.read_before) {
                    float acc = dq[off + j];
                    for (int64_t i = 0; i < Dh; ++i) acc += dyt[i] * w[i * Dh + j];
                    dq[off + j] = acc;
                }
            }
            if (threadIdx.x == 0 && deta && eta) {
                float eu = 0.0f;
                for (int64_t i = 0; i < Dh; ++i) eu += et_vec[i] * u[i];
                deta[row * d.H + h] -= eu;
            }
            __syncthreads();
            // Rows: G −= η u kᵀ, (read before) G += dy qᵀ.
            for (int64_t i = threadIdx.x; i < Dh; i += blockDim.x) {
                const float a = -et * u[i];
                for (int64_t j = 0; j < Dh; ++j) {
                    float gij = g[i * Dh + j] + a * kt[j];
                    if (d.read_before) gij += dyt[i] * qt[j];
                    g[i * Dh + j] = gij;
                }
            }
            __syncthreads();
        }
    }
}

void check_shape(const train::TttScanShape& s, const char* what) {
    check(s.B >= 1 && s.T >= 1 && s.H >= 1 && s.Dh >= 1 && s.chunk >= 1,
          ErrorKind::kInvalidArgument, "CUDA: {}: bad shape B={} T={} H={} Dh={} chunk={}", what,
          s.B, s.T, s.H, s.Dh, s.chunk);
    check(s.B * s.H < detail::kMaxDim && s.Dh <= 4096 &&
              s.B * s.T * s.H * s.Dh < detail::kMaxDim * 64,
          ErrorKind::kInvalidArgument, "CUDA: {}: shape B={} T={} H={} Dh={} is too large", what,
          s.B, s.T, s.H, s.Dh);
}

}  // namespace

size_t ttt_scan_workspace_bytes(const train::TttScanShape& s) {
    check_shape(s, "ttt_scan_workspace_bytes");
    return static_cast<size_t>(s.B * s.H * simple_floats_per_pair(s)) * sizeof(float);
}

void ttt_scan_forward(float* y, float* checkpoints, const float* q, const float* k, const float* v,
                      const float* eta, float eta_const, const train::TttScanShape& s,
                      void* workspace, const Stream& stream) {
    check_shape(s, "ttt_scan_forward");
    check(y && checkpoints && q && k && v && workspace, ErrorKind::kInvalidArgument,
          "CUDA: ttt_scan_forward: null buffer");
    scan_forward_simple<<<static_cast<unsigned>(s.B * s.H), kSimpleThreads, 0,
                          detail::raw(stream)>>>(y, checkpoints, q, k, v, eta, eta_const,
                                                 dims_of(s), static_cast<float*>(workspace));
    detail::check_launch("ttt_scan_forward");
}

void ttt_scan_backward(float* dq, float* dk, float* dv, float* deta, const float* dy,
                       const float* checkpoints, const float* q, const float* k, const float* v,
                       const float* eta, float eta_const, const train::TttScanShape& s,
                       void* workspace, const Stream& stream) {
    check_shape(s, "ttt_scan_backward");
    check(dq && dk && dv && dy && checkpoints && q && k && v && workspace,
          ErrorKind::kInvalidArgument, "CUDA: ttt_scan_backward: null buffer");
    scan_backward_simple<<<static_cast<unsigned>(s.B * s.H), kSimpleThreads, 0,
                           detail::raw(stream)>>>(dq, dk, dv, deta, dy, checkpoints, q, k, v, eta,
                                                  eta_const, dims_of(s),
                                                  static_cast<float*>(workspace));
    detail::check_launch("ttt_scan_backward");
}

}  // namespace bitttt::cuda
