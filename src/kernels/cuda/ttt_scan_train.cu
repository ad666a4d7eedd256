// The TTT scan of training on the GPU (see ttt_scan_train.hpp for the contract and
// train/ttt_bptt.hpp for the math). Two versions with one meaning:
//   - simple: one block per (sequence, head), one thread per row of the state, W and G in the
//     workspace in global memory (the reference on the GPU, and the path for Dh > 256);
//   - fast (below, "the fast version"): the state in registers, rows split over warps and blocks.
//
// Backward of both: for each chunk (last to first) W is reloaded from the chunk's checkpoint, the
// chunk is run forward again keeping e_t = W_{t-1} k_t − v_t (Dh floats per token), and then walked
// backward, undoing each step exactly as it was made: W_{t-1} = W_t + η_t e_t k_tᵀ (fp32 round-off
// of at most `chunk` steps; no per-token states are stored). Only W, G and the chunk's e_t are
// held.
#include <cuda_pipeline.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>

#include "core/error.hpp"
#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/ttt_chunk_train.hpp"
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

// ---- the fast version: state in registers, rows split over warps and blocks ----
//
// A block owns R = warps·RT consecutive rows of one (sequence, head)'s state (blockIdx.y picks
// which R rows); a warp owns RT of them, and lane l holds columns l, l+32, .., l+32(NC−1) of each
// (W, and G in the backward, live in registers: 32·NC ≥ Dh, padded columns and rows stay exactly
// 0 because their k, q, v and dy are read as 0). Row sums (W k, W q, G k) are transposing warp
// reductions (row_sums), broadcast from one lane so that every lane uses the same value. Column
// sums over rows (dq, dk of the backward) are summed within each thread over its RT rows, written
// per warp to shared memory and added over the warps of the block in a fixed order, per block into
// the workspace, then over blocks by a second kernel that also does every += into dq, dk, dv, deta
// (one thread per element: aliased gradients are safe). Everything is deterministic. Per token the
// block reads k, q (and v, dy, η) from shared memory, staged a tile of tokens at a time.

// Rows are split over more (smaller) blocks until the grid has this many blocks: about one per SM
// of an H100. BITTTT_CUDA_TTT_TARGET_BLOCKS overrides it (for tuning; read once per process).
int target_blocks() {
    static const int value = [] {
        const char* env = std::getenv("BITTTT_CUDA_TTT_TARGET_BLOCKS");
        const int v = env ? std::atoi(env) : 0;
        return v > 0 ? v : 128;
    }();
    return value;
}
constexpr int kMaxWarps = 16;
constexpr size_t kMaxSmemBytes = 200 * 1024;

struct FastPlan {
    bool fast = false;
    int nc = 0, rt = 0;  // columns per lane / 32, rows per warp
    int warps = 0, rows = 0, row_blocks = 0;
    int fwd_tile = 0, bwd_tile = 0;
    size_t fwd_smem = 0, bwd_smem = 0;
};

bool g_force_simple = false;

// Floats of one shared-memory stage of `tile` tokens (see Stage below).
__host__ __device__ constexpr int stage_floats(int tile, int cols, int R) {
    return tile * (2 * cols + R + 1);
}

FastPlan plan_of(const train::TttScanShape& s) {
    FastPlan p;
    if (g_force_simple || s.Dh > 256) return p;
    p.nc = s.Dh <= 32 ? 1 : s.Dh <= 64 ? 2 : s.Dh <= 128 ? 4 : 8;
    p.rt = p.nc <= 4 ? 8 : 4;
    const int64_t cols = 32 * p.nc;
    p.warps = static_cast<int>(std::min<int64_t>(kMaxWarps, (s.Dh + p.rt - 1) / p.rt));
    auto row_blocks = [&](int warps) { return (s.Dh + warps * p.rt - 1) / (warps * p.rt); };
    while (p.warps > 2 && s.B * s.H * row_blocks(p.warps) < target_blocks())
        p.warps = (p.warps + 1) / 2;
    p.rows = p.warps * p.rt;
    p.row_blocks = static_cast<int>(row_blocks(p.warps));
    p.fwd_tile = 16;
    const int rows = p.rows, c32 = static_cast<int>(cols);
    p.fwd_smem = sizeof(float) *
                 static_cast<size_t>(2 * stage_floats(p.fwd_tile, c32, rows) + p.fwd_tile * rows);
    p.bwd_tile = static_cast<int>(
        std::clamp<int64_t>(16384 / (p.warps * 2 * cols), 1, std::min<int64_t>(16, s.chunk)));
    // The layout of scan_backward_fast: two stages, dvs and eus, es, ckb, red.
    p.bwd_smem = sizeof(float) * static_cast<size_t>(2 * stage_floats(p.bwd_tile, c32, rows) +
                                                     2 * p.bwd_tile * rows + s.chunk * rows +
                                                     rows * cols + p.bwd_tile * p.warps * 2 * cols);
    p.fast = p.bwd_smem <= kMaxSmemBytes;
    return p;
}

// Floats of the fast backward's workspace: per block column sums of dq and dk per token, η·u per
// element (dv) and −Σ e_i u_i per block and token (deta).
int64_t fast_workspace_floats(const train::TttScanShape& s, const FastPlan& p) {
    const int64_t nh = s.B * s.T * s.H;
    return p.row_blocks * nh * 2 * s.Dh + nh * s.Dh + p.row_blocks * nh;
}

// Row sums of a warp's RT rows (RT a power of two <= 32): v[r] holds lane l's partial of row r.
// A transposing reduction: each halving step exchanges half of the remaining values, so the warp
// needs log2(RT) + ... shuffles, not 5·RT. Returns the full sum of row `row_of_lane(lane)`, the
// same value in the 32/RT lanes of that row (additions in the same order up to commutation).
template <int RT>
__device__ __forceinline__ constexpr int log2_of() {
    return RT <= 1 ? 0 : 1 + log2_of<RT / 2>();
}

template <int RT>
__device__ __forceinline__ int row_of_lane(int lane) {
    return lane >> (5 - log2_of<RT>());
}

template <int RT>
__device__ __forceinline__ float row_sum_scatter(float (&v)[RT], int lane) {
    constexpr int kLog = log2_of<RT>();
#pragma unroll
    for (int step = 0; step < kLog; ++step) {
        const int mask = 16 >> step, half = RT >> (step + 1);
        const bool upper = (lane & mask) != 0;
#pragma unroll
        for (int i = 0; i < half; ++i) {
            const float send = upper ? v[i] : v[i + half];
            const float keep = upper ? v[i + half] : v[i];
            v[i] = keep + __shfl_xor_sync(0xffffffffu, send, mask);
        }
    }
    float x = v[0];
#pragma unroll
    for (int mask = 16 >> kLog; mask > 0; mask >>= 1) x += __shfl_xor_sync(0xffffffffu, x, mask);
    return x;
}

// v[r] ← the full sum of row r over the warp, in every lane (one lane's value is broadcast).
template <int RT>
__device__ __forceinline__ void row_sums(float (&v)[RT], int lane) {
    const float mine = row_sum_scatter<RT>(v, lane);
#pragma unroll
    for (int r = 0; r < RT; ++r) v[r] = __shfl_sync(0xffffffffu, mine, r << (5 - log2_of<RT>()));
}

// Traps (a launch error at the next synchronization, never a silent overrun) when a kernel's
// shared-memory layout needs more than the launch gave it: plan_of must match the kernels.
__device__ __forceinline__ void check_smem_end(const float* smem, const float* end) {
    unsigned bytes;
    asm volatile("mov.u32 %0, %%dynamic_smem_size;" : "=r"(bytes));
    if (static_cast<size_t>(end - smem) * sizeof(float) > bytes) __trap();
}

// Shared-memory staging of a tile of tokens: k (and q) [tile][32·NC], one value per state row of
// the block [tile][R] (v, or dy in the backward walk), η [tile]. Two of them alternate: the copies
// for the next tile (cp.async, no registers, no waiting) are in flight while the current one is
// computed, so the scan never waits for global memory.
struct Stage {
    float *ks, *qs, *rows, *etas;
};

__device__ Stage stage_at(float* base, int tile, int cols, int R) {
    return {base, base + tile * cols, base + 2 * tile * cols, base + 2 * tile * cols + tile * R};
}

// Issues the copies of n tokens from ta (zeros for padded columns and rows) and commits them.
__device__ void stage_async(const Stage& st, const ScanDims& d, int64_t b, int64_t h, int64_t row0,
                            int R, int cols, int64_t ta, int n, const float* k, const float* q,
                            const float* rowvec, const float* eta, float eta_const) {
    const int64_t Dh = d.Dh, Dt = d.H * Dh;
    for (int idx = threadIdx.x; idx < n * cols; idx += blockDim.x) {
        const int tt = idx / cols, j = idx % cols;
        const int64_t off = (b * d.T + ta + tt) * Dt + h * Dh + j;
        if (j < Dh) {
            __pipeline_memcpy_async(st.ks + idx, k + off, sizeof(float));
            if (q) __pipeline_memcpy_async(st.qs + idx, q + off, sizeof(float));
        } else {
            st.ks[idx] = 0.0f;
            st.qs[idx] = 0.0f;
        }
    }
    for (int idx = threadIdx.x; idx < n * R; idx += blockDim.x) {
        const int tt = idx / R;
        const int64_t i = row0 + idx % R;
        if (i < Dh)
            __pipeline_memcpy_async(st.rows + idx, rowvec + (b * d.T + ta + tt) * Dt + h * Dh + i,
                                    sizeof(float));
        else
            st.rows[idx] = 0.0f;
    }
    for (int idx = threadIdx.x; idx < n; idx += blockDim.x) {
        if (eta)
            __pipeline_memcpy_async(st.etas + idx, eta + (b * d.T + ta + idx) * d.H + h,
                                    sizeof(float));
        else
            st.etas[idx] = eta_const;
    }
    __pipeline_commit();
}

template <int NC, int RT>
__global__ void __launch_bounds__(kMaxWarps * 32)
    scan_forward_fast(float* y, float* checkpoints, const float* q, const float* k, const float* v,
                      const float* eta, float eta_const, ScanDims d, int R, int tile) {
    constexpr int kCols = 32 * NC;
    extern __shared__ float smem[];
    // Stage 0 or 1 (computed, not an array: a dynamically indexed array would live in local
    // memory).
    auto stages = [&](int64_t which) {
        return stage_at(smem + (which & 1) * stage_floats(tile, kCols, R), tile, kCols, R);
    };
    float* ys = smem + 2 * stage_floats(tile, kCols, R);  // [tile][R]
    check_smem_end(smem, ys + tile * R);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t bh = blockIdx.x, b = bh / d.H, h = bh % d.H, Dh = d.Dh, dd = Dh * Dh;
    const int64_t Dt = d.H * Dh, row0 = int64_t{blockIdx.y} * R;
    float* ckpt = checkpoints + bh * d.chunks * dd;
    float w[RT][NC];
#pragma unroll
    for (int r = 0; r < RT; ++r)
#pragma unroll
        for (int c = 0; c < NC; ++c) w[r][c] = 0.0f;
    const int64_t ntiles = (d.T + tile - 1) / tile;
    stage_async(stages(0), d, b, h, row0, R, kCols, 0, static_cast<int>(min(int64_t{tile}, d.T)), k,
                q, v, eta, eta_const);
    for (int64_t ti = 0; ti < ntiles; ++ti) {
        const int64_t ta = ti * tile;
        const int n = static_cast<int>(min(int64_t{tile}, d.T - ta));
        if (ti + 1 < ntiles) {
            const int64_t tb = ta + tile;
            stage_async(stages(ti + 1), d, b, h, row0, R, kCols, tb,
                        static_cast<int>(min(int64_t{tile}, d.T - tb)), k, q, v, eta, eta_const);
            __pipeline_wait_prior(1);
        } else {
            __pipeline_wait_prior(0);
        }
        __syncthreads();
        const Stage st = stages(ti);
        for (int tt = 0; tt < n; ++tt) {
            const int64_t t = ta + tt;
            if (t % d.chunk == 0) {
                float* dst = ckpt + (t / d.chunk) * dd;
#pragma unroll
                for (int r = 0; r < RT; ++r) {
                    const int64_t i = row0 + warp * RT + r;
                    if (i >= Dh) continue;
#pragma unroll
                    for (int c = 0; c < NC; ++c) {
                        const int64_t j = lane + 32 * c;
                        if (j < Dh) dst[i * Dh + j] = w[r][c];
                    }
                }
            }
            float kk[NC], qq[NC];
#pragma unroll
            for (int c = 0; c < NC; ++c) {
                kk[c] = st.ks[tt * kCols + lane + 32 * c];
                qq[c] = st.qs[tt * kCols + lane + 32 * c];
            }
            // y = W q (before or after the update): only the lanes that end up holding a row's sum
            // write it (one lane per row).
            float* yrow = ys + tt * R + warp * RT + row_of_lane<RT>(lane);
            const bool writer = (lane & ((32 / RT) - 1)) == 0;
            float z[RT], yp[RT];
            if (d.read_before) {
#pragma unroll
                for (int r = 0; r < RT; ++r) {
                    yp[r] = 0.0f;
#pragma unroll
                    for (int c = 0; c < NC; ++c) yp[r] += w[r][c] * qq[c];
                }
                const float yv = row_sum_scatter<RT>(yp, lane);
                if (writer) *yrow = yv;
            }
#pragma unroll
            for (int r = 0; r < RT; ++r) {
                z[r] = 0.0f;
#pragma unroll
                for (int c = 0; c < NC; ++c) z[r] += w[r][c] * kk[c];
            }
            row_sums<RT>(z, lane);
            const float et = st.etas[tt];
#pragma unroll
            for (int r = 0; r < RT; ++r) {
                const float a = -et * (z[r] - st.rows[tt * R + warp * RT + r]);
#pragma unroll
                for (int c = 0; c < NC; ++c) w[r][c] += a * kk[c];
            }
            if (!d.read_before) {
#pragma unroll
                for (int r = 0; r < RT; ++r) {
                    yp[r] = 0.0f;
#pragma unroll
                    for (int c = 0; c < NC; ++c) yp[r] += w[r][c] * qq[c];
                }
                const float yv = row_sum_scatter<RT>(yp, lane);
                if (writer) *yrow = yv;
            }
        }
        __syncthreads();  // ys complete; this stage may be overwritten from the next iteration on
        for (int idx = threadIdx.x; idx < n * R; idx += blockDim.x) {
            const int tt = idx / R;
            const int64_t i = row0 + idx % R;
            if (i < Dh) y[(b * d.T + ta + tt) * Dt + h * Dh + i] = ys[idx];
        }
    }
}

// Workspace pointers of the fast backward (see fast_workspace_floats).
struct BackwardParts {
    float* dqk;   // [row_blocks][B·T·H][2][Dh]: column sums of this block's rows (dq, dk)
    float* dv;    // [B·T·H][Dh]
    float* deta;  // [row_blocks][B·T·H]
};

// The backward's steps, in order: for each chunk from the last, its tiles forward (recompute, from
// the checkpoint) and then backward (walk).
struct Step {
    int64_t ch = -1, ti = 0;
    bool walk = false;
};

__device__ int64_t tiles_in_chunk(const ScanDims& d, int64_t ch, int tile) {
    const int64_t len = min(d.T, (ch + 1) * d.chunk) - ch * d.chunk;
    return (len + tile - 1) / tile;
}

__device__ Step next_step(const ScanDims& d, Step s, int tile) {
    const int64_t nt = tiles_in_chunk(d, s.ch, tile);
    if (!s.walk) {
        if (s.ti + 1 < nt) return {s.ch, s.ti + 1, false};
        return {s.ch, nt - 1, true};
    }
    if (s.ti > 0) return {s.ch, s.ti - 1, true};
    return {s.ch - 1, 0, false};  // ch = -1: done
}

template <int NC, int RT>
__global__ void __launch_bounds__(kMaxWarps * 32)
    scan_backward_fast(BackwardParts parts, const float* dy, const float* checkpoints,
                       const float* q, const float* k, const float* v, const float* eta,
                       float eta_const, ScanDims d, int R, int tile) {
    constexpr int kCols = 32 * NC;
    extern __shared__ float smem[];
    const int warps = blockDim.x >> 5;
    // Stage 0 or 1 (computed, not an array: a dynamically indexed array would live in local
    // memory).
    auto stages = [&](int64_t which) {
        return stage_at(smem + (which & 1) * stage_floats(tile, kCols, R), tile, kCols, R);
    };
    float* dvs = smem + 2 * stage_floats(tile, kCols, R);  // [tile][R]: η u_i
    float* eus = dvs + tile * R;                           // [tile][R]: −e_i u_i
    float* es = eus + tile * R;                            // [chunk][R]: e_t of the chunk
    float* ckb = es + d.chunk * R;                         // [R][kCols]: the chunk's W_{t0}
    float* red = ckb + R * kCols;                          // [tile][warps][2][kCols]
    check_smem_end(smem, red + tile * warps * 2 * kCols);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t bh = blockIdx.x, b = bh / d.H, h = bh % d.H, Dh = d.Dh, dd = Dh * Dh;
    const int64_t row0 = int64_t{blockIdx.y} * R, NH = d.B * d.T * d.H;
    const float* ckpt = checkpoints + bh * d.chunks * dd;

    // Stages a step: its tokens, and for the first tile of a chunk also W_{t0} (into ckb).
    auto stage = [&](const Step& s, const Stage& st) {
        const int64_t t0 = s.ch * d.chunk, t1 = min(d.T, t0 + d.chunk), ta = t0 + s.ti * tile;
        const int n = static_cast<int>(min(int64_t{tile}, t1 - ta));
        if (!s.walk && s.ti == 0) {
            for (int idx = threadIdx.x; idx < R * kCols; idx += blockDim.x) {
                const int64_t i = row0 + idx / kCols, j = idx % kCols;
                if (i < Dh && j < Dh)
                    __pipeline_memcpy_async(ckb + idx, ckpt + s.ch * dd + i * Dh + j,
                                            sizeof(float));
                else
                    ckb[idx] = 0.0f;
            }
        }
        stage_async(st, d, b, h, row0, R, kCols, ta, n, k, s.walk ? q : nullptr, s.walk ? dy : v,
                    eta, eta_const);
    };

    float w[RT][NC], g[RT][NC];
#pragma unroll
    for (int r = 0; r < RT; ++r)
#pragma unroll
        for (int c = 0; c < NC; ++c) g[r][c] = 0.0f;
    Step cur{d.chunks - 1, 0, false};
    int parity = 0;
    stage(cur, stages(0));
    while (cur.ch >= 0) {
        const Step nxt = next_step(d, cur, tile);
        if (nxt.ch >= 0) {
            stage(nxt, stages(parity ^ 1));
            __pipeline_wait_prior(1);
        } else {
            __pipeline_wait_prior(0);
        }
        __syncthreads();
        const Stage st = stages(parity);
        const int64_t t0 = cur.ch * d.chunk, t1 = min(d.T, t0 + d.chunk), ta = t0 + cur.ti * tile;
        const int n = static_cast<int>(min(int64_t{tile}, t1 - ta));
        if (!cur.walk) {
            if (cur.ti == 0) {  // W = W_{t0}
#pragma unroll
                for (int r = 0; r < RT; ++r)
#pragma unroll
                    for (int c = 0; c < NC; ++c)
                        w[r][c] = ckb[(warp * RT + r) * kCols + lane + 32 * c];
            }
            // Forward through the tile, keeping e_t.
            for (int tt = 0; tt < n; ++tt) {
                float kk[NC];
#pragma unroll
                for (int c = 0; c < NC; ++c) kk[c] = st.ks[tt * kCols + lane + 32 * c];
                const float et = st.etas[tt];
                float z[RT];
#pragma unroll
                for (int r = 0; r < RT; ++r) {
                    z[r] = 0.0f;
#pragma unroll
                    for (int c = 0; c < NC; ++c) z[r] += w[r][c] * kk[c];
                }
                row_sums<RT>(z, lane);
#pragma unroll
                for (int r = 0; r < RT; ++r) {
                    const float e = z[r] - st.rows[tt * R + warp * RT + r];
                    if (lane == 0) es[(ta + tt - t0) * R + warp * RT + r] = e;
                    const float a = -et * e;
#pragma unroll
                    for (int c = 0; c < NC; ++c) w[r][c] += a * kk[c];
                }
            }
            __syncthreads();  // this stage may be overwritten from the next iteration on
        } else {
            // Walk the tile backward.
            for (int tt = n - 1; tt >= 0; --tt) {
                float kk[NC], qq[NC], pq[NC], pk[NC], dyr[RT], er[RT], u[RT];
#pragma unroll
                for (int c = 0; c < NC; ++c) {
                    kk[c] = st.ks[tt * kCols + lane + 32 * c];
                    qq[c] = st.qs[tt * kCols + lane + 32 * c];
                    pq[c] = 0.0f;
                    pk[c] = 0.0f;
                }
                const float et = st.etas[tt];
#pragma unroll
                for (int r = 0; r < RT; ++r) {
                    dyr[r] = st.rows[tt * R + warp * RT + r];
                    er[r] = es[(ta + tt - t0) * R + warp * RT + r];
                }
                if (!d.read_before) {  // W = W_t: dq += W_tᵀ dy, G += dy qᵀ
#pragma unroll
                    for (int r = 0; r < RT; ++r)
#pragma unroll
                        for (int c = 0; c < NC; ++c) {
                            pq[c] += w[r][c] * dyr[r];
                            g[r][c] += dyr[r] * qq[c];
                        }
                }
                // W ← W_{t-1} = W_t + η e kᵀ (the step undone); u = G k.
#pragma unroll
                for (int r = 0; r < RT; ++r) {
                    const float a = et * er[r];
                    u[r] = 0.0f;
#pragma unroll
                    for (int c = 0; c < NC; ++c) {
                        w[r][c] += a * kk[c];
                        u[r] += g[r][c] * kk[c];
                    }
                }
                row_sums<RT>(u, lane);
                // dk −= η (Gᵀe + W_{t-1}ᵀu); then G −= η u kᵀ; (read before) dq, G += dy qᵀ.
#pragma unroll
                for (int r = 0; r < RT; ++r) {
                    const float a = -et * u[r];
#pragma unroll
                    for (int c = 0; c < NC; ++c) {
                        pk[c] += g[r][c] * er[r] + w[r][c] * u[r];
                        g[r][c] += a * kk[c];
                        if (d.read_before) {
                            pq[c] += w[r][c] * dyr[r];
                            g[r][c] += dyr[r] * qq[c];
                        }
                    }
                }
                float* out = red + (tt * warps + warp) * 2 * kCols;
#pragma unroll
                for (int c = 0; c < NC; ++c) {
                    out[lane + 32 * c] = pq[c];
                    out[kCols + lane + 32 * c] = -et * pk[c];
                }
                if (lane == 0)
#pragma unroll
                    for (int r = 0; r < RT; ++r) {
                        dvs[tt * R + warp * RT + r] = et * u[r];
                        eus[tt * R + warp * RT + r] = -er[r] * u[r];
                    }
            }
            __syncthreads();
            // Sums over the block's warps (fixed order) into this block's slice of the workspace.
            const int dh = static_cast<int>(Dh);
            for (int idx = threadIdx.x; idx < n * 2 * dh; idx += blockDim.x) {
                const int tt = idx / (2 * dh), vec = (idx / dh) % 2, j = idx % dh;
                float sum = 0.0f;
                for (int wi = 0; wi < warps; ++wi)
                    sum += red[(tt * warps + wi) * 2 * kCols + vec * kCols + j];
                const int64_t rh = (b * d.T + ta + tt) * d.H + h;
                parts.dqk[((blockIdx.y * NH + rh) * 2 + vec) * Dh + j] = sum;
            }
            for (int idx = threadIdx.x; idx < n * R; idx += blockDim.x) {
                const int tt = idx / R;
                const int64_t i = row0 + idx % R;
                if (i < Dh) parts.dv[((b * d.T + ta + tt) * d.H + h) * Dh + i] = dvs[idx];
            }
            for (int tt = threadIdx.x; tt < n; tt += blockDim.x) {
                float sum = 0.0f;
                for (int r = 0; r < R; ++r) sum += eus[tt * R + r];
                parts.deta[blockIdx.y * NH + (b * d.T + ta + tt) * d.H + h] = sum;
            }
            __syncthreads();  // red, dvs, eus and this stage are free again
        }
        cur = nxt;
        parity ^= 1;
    }
}

// dq, dk, dv, deta += the backward's parts; one thread per (token, head, column).
__global__ void add_backward_parts(float* dq, float* dk, float* dv, float* deta, bool with_deta,
                                   BackwardParts parts, int64_t NH, int64_t H, int64_t Dh,
                                   int row_blocks) {
    const int64_t idx = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
    if (idx >= NH * Dh) return;
    const int64_t rh = idx / Dh, j = idx % Dh;
    const int64_t off = (rh / H) * H * Dh + (rh % H) * Dh + j;  // = idx: heads are contiguous
    float sq = 0.0f, sk = 0.0f, se = 0.0f;
    for (int rb = 0; rb < row_blocks; ++rb) {
        sq += parts.dqk[((rb * NH + rh) * 2) * Dh + j];
        sk += parts.dqk[((rb * NH + rh) * 2 + 1) * Dh + j];
        if (j == 0) se += parts.deta[rb * NH + rh];
    }
    dq[off] += sq;
    dk[off] += sk;
    dv[off] += parts.dv[idx];
    if (with_deta && j == 0) deta[rh] += se;
}

template <int NC, int RT>
void launch_fast(bool backward, const FastPlan& p, const train::TttScanShape& s, float* y,
                 float* checkpoints, const float* checkpoints_in, const float* q, const float* k,
                 const float* v, const float* eta, float eta_const, const float* dy,
                 BackwardParts parts, cudaStream_t stream) {
    const dim3 grid(static_cast<unsigned>(s.B * s.H), static_cast<unsigned>(p.row_blocks));
    const dim3 block(static_cast<unsigned>(p.warps * 32));
    if (!backward) {
        auto kernel = scan_forward_fast<NC, RT>;
        detail::check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                static_cast<int>(p.fwd_smem)),
                           "ttt_scan_forward: cudaFuncSetAttribute");
        kernel<<<grid, block, p.fwd_smem, stream>>>(y, checkpoints, q, k, v, eta, eta_const,
                                                    dims_of(s), p.rows, p.fwd_tile);
        detail::check_launch("ttt_scan_forward");
    } else {
        auto kernel = scan_backward_fast<NC, RT>;
        detail::check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                static_cast<int>(p.bwd_smem)),
                           "ttt_scan_backward: cudaFuncSetAttribute");
        kernel<<<grid, block, p.bwd_smem, stream>>>(parts, dy, checkpoints_in, q, k, v, eta,
                                                    eta_const, dims_of(s), p.rows, p.bwd_tile);
        detail::check_launch("ttt_scan_backward");
    }
}

void dispatch_fast(bool backward, const FastPlan& p, const train::TttScanShape& s, float* y,
                   float* checkpoints, const float* checkpoints_in, const float* q, const float* k,
                   const float* v, const float* eta, float eta_const, const float* dy,
                   BackwardParts parts, cudaStream_t stream) {
    switch (p.nc) {
        case 1:
            return launch_fast<1, 8>(backward, p, s, y, checkpoints, checkpoints_in, q, k, v, eta,
                                     eta_const, dy, parts, stream);
        case 2:
            return launch_fast<2, 8>(backward, p, s, y, checkpoints, checkpoints_in, q, k, v, eta,
                                     eta_const, dy, parts, stream);
        case 4:
            return launch_fast<4, 8>(backward, p, s, y, checkpoints, checkpoints_in, q, k, v, eta,
                                     eta_const, dy, parts, stream);
        default:
            return launch_fast<8, 4>(backward, p, s, y, checkpoints, checkpoints_in, q, k, v, eta,
                                     eta_const, dy, parts, stream);
    }
}

void check_shape(const train::TttScanShape& s, const char* what) {
    check(s.B >= 1 && s.T >= 1 && s.H >= 1 && s.Dh >= 1 && s.chunk >= 1,
          ErrorKind::kInvalidArgument, "CUDA: {}: bad shape B={} T={} H={} Dh={} chunk={}", what,
          s.B, s.T, s.H, s.Dh, s.chunk);
    check(s.B * s.H <= 65535 * 1024 && s.Dh <= 4096 && s.chunk <= s.T + 4096 &&
              s.B * s.T * s.H * s.Dh < detail::kMaxDim * 32,
          ErrorKind::kInvalidArgument, "CUDA: {}: shape B={} T={} H={} Dh={} is too large", what,
          s.B, s.T, s.H, s.Dh);
}

}  // namespace

void ttt_scan_force_simple(bool on) {
    g_force_simple = on;
}

namespace {
bool& chunked_flag() {
    static bool on = [] {
        const char* env = std::getenv("BITTTT_CUDA_TTT_CHUNKED");
        return !(env && env[0] == '0');
    }();
    return on;
}
}  // namespace

void ttt_scan_set_chunked(bool on) {
    chunked_flag() = on;
}

bool ttt_scan_uses_chunked_form(const train::TttScanShape& s) {
    return chunked_flag() && !g_force_simple && s.Dh >= 128 && s.chunk >= 32 &&
           ttt_chunk_supported(s);
}

int64_t ttt_scan_preferred_chunk(int64_t Dh) {
    train::TttScanShape s;
    s.Dh = Dh, s.chunk = 64;
    return ttt_scan_uses_chunked_form(s) ? 64 : 16;
}

size_t ttt_scan_workspace_bytes(const train::TttScanShape& s) {
    check_shape(s, "ttt_scan_workspace_bytes");
    if (ttt_scan_uses_chunked_form(s)) return ttt_chunk_workspace_bytes(s);
    const FastPlan p = plan_of(s);
    const int64_t floats =
        p.fast ? fast_workspace_floats(s, p) : s.B * s.H * simple_floats_per_pair(s);
    return static_cast<size_t>(floats) * sizeof(float);
}

void ttt_scan_forward(float* y, float* checkpoints, const float* q, const float* k, const float* v,
                      const float* eta, float eta_const, const train::TttScanShape& s,
                      void* workspace, const Stream& stream) {
    check_shape(s, "ttt_scan_forward");
    if (ttt_scan_uses_chunked_form(s))
        return ttt_chunk_forward(y, checkpoints, q, k, v, eta, eta_const, s, workspace, stream);
    check(y && checkpoints && q && k && v, ErrorKind::kInvalidArgument,
          "CUDA: ttt_scan_forward: null buffer");
    const FastPlan p = plan_of(s);
    if (p.fast) {
        dispatch_fast(false, p, s, y, checkpoints, nullptr, q, k, v, eta, eta_const, nullptr, {},
                      detail::raw(stream));
        return;
    }
    check(workspace != nullptr, ErrorKind::kInvalidArgument,
          "CUDA: ttt_scan_forward: null workspace");
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
    if (ttt_scan_uses_chunked_form(s))
        return ttt_chunk_backward(dq, dk, dv, deta, dy, checkpoints, q, k, v, eta, eta_const, s,
                                  workspace, stream);
    check(dq && dk && dv && dy && checkpoints && q && k && v && workspace,
          ErrorKind::kInvalidArgument, "CUDA: ttt_scan_backward: null buffer");
    const FastPlan p = plan_of(s);
    if (p.fast) {
        const int64_t nh = s.B * s.T * s.H;
        float* ws = static_cast<float*>(workspace);
        const BackwardParts parts{ws, ws + p.row_blocks * nh * 2 * s.Dh,
                                  ws + p.row_blocks * nh * 2 * s.Dh + nh * s.Dh};
        dispatch_fast(true, p, s, nullptr, nullptr, checkpoints, q, k, v, eta, eta_const, dy, parts,
                      detail::raw(stream));
        const int64_t total = nh * s.Dh;
        add_backward_parts<<<static_cast<unsigned>((total + 255) / 256), 256, 0,
                             detail::raw(stream)>>>(dq, dk, dv, deta, deta != nullptr && eta, parts,
                                                    nh, s.H, s.Dh, p.row_blocks);
        detail::check_launch("ttt_scan_backward: add_backward_parts");
        return;
    }
    scan_backward_simple<<<static_cast<unsigned>(s.B * s.H), kSimpleThreads, 0,
                           detail::raw(stream)>>>(dq, dk, dv, deta, dy, checkpoints, q, k, v, eta,
                                                  eta_const, dims_of(s),
                                                  static_cast<float*>(workspace));
    detail::check_launch("ttt_scan_backward");
}

}  // namespace bitttt::cuda
