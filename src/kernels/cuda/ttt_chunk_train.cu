// The chunked TTT scan of training (see ttt_chunk_train.hpp for the contract and the math).
//
// Every (sequence b, head h) pair p = b·H + h is cut into nc chunks of C tokens; the inputs are
// first copied into a padded chunk layout [p][chunk][C][Dh] (rows past T are zero, with η = 0,
// so they change nothing), which makes every per-chunk product one strided-batched GEMM over
// P·nc chunks. The only sequential work is the passage of the state S (forward) or of its
// gradient G (backward) from chunk to chunk: seq_kernel, one block per (pair, slab of 32 state
// columns). A column j of S only ever meets column j of U', so the slabs are independent.
#include <cublas_v2.h>
#include <cuda_pipeline.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <vector>

#include "core/error.hpp"
#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/ttt_chunk_train.hpp"

namespace bitttt::cuda {
namespace {

using detail::check_cuda;
using detail::check_launch;
using detail::raw;

bool g_tf32 = true;

void check_blas(cublasStatus_t status, const char* what) {
    check(status == CUBLAS_STATUS_SUCCESS, ErrorKind::kInternal, "cuBLAS: {}: status {}", what,
          static_cast<int>(status));
}

// One cuBLAS handle per host thread, made on first use.
cublasHandle_t blas_handle() {
    struct Holder {
        cublasHandle_t h = nullptr;
        ~Holder() {
            if (h) cublasDestroy(h);  // at thread exit; its status cannot be reported
        }
    };
    thread_local Holder holder;
    if (!holder.h) check_blas(cublasCreate(&holder.h), "cublasCreate");
    return holder.h;
}

// Row-major batched product C = α·op(A)·op(B) + β·C (m×n, inner k) over `batch` matrices at the
// given element strides. cuBLAS is column-major: a row-major X is its column-major Xᵀ, so this is
// the column-major Cᵀ = op(B)ᵀ op(A)ᵀ with the same op flags and A, B swapped.
struct Mat {
    const float* p;
    int ld;
    long long stride;
};

void gemm_rm(cudaStream_t stream, bool ta, bool tb, int m, int n, int k, float alpha, Mat A, Mat B,
             float beta, float* C, int ldc, long long stride_c, int batch) {
    cublasHandle_t h = blas_handle();
    check_blas(cublasSetStream(h, stream), "cublasSetStream");
    const cublasComputeType_t compute = g_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    check_blas(cublasGemmStridedBatchedEx(
                   h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k,
                   &alpha, B.p, CUDA_R_32F, B.ld, B.stride, A.p, CUDA_R_32F, A.ld, A.stride, &beta,
                   C, CUDA_R_32F, ldc, stride_c, batch, compute, CUBLAS_GEMM_DEFAULT),
               "ttt chunk: cublasGemmStridedBatchedEx");
}

// BITTTT_CUDA_TTT_CHUNK_TIMING=1 (diagnostics): every call prints the milliseconds of each of its
// stages to stderr (events between the stages; one synchronization per call).
class StageTimer {
  public:
    StageTimer(cudaStream_t stream, const char* what) : stream_(stream), what_(what) {
        static const bool enabled = [] {
            const char* v = std::getenv("BITTTT_CUDA_TTT_CHUNK_TIMING");
            return v && v[0] == '1';
        }();
        on_ = enabled;
        mark("start");
    }
    void mark(const char* name) {
        if (!on_) return;
        cudaEvent_t e;
        check_cuda(cudaEventCreate(&e), "cudaEventCreate");
        check_cuda(cudaEventRecord(e, stream_), "cudaEventRecord");
        events_.push_back(e), names_.push_back(name);
    }
    ~StageTimer() {
        if (!on_) return;
        cudaEventSynchronize(events_.back());
        std::fprintf(stderr, "[ttt chunk %s]", what_);
        float total = 0.0f;
        for (size_t i = 1; i < events_.size(); ++i) {
            float ms = 0.0f;
            cudaEventElapsedTime(&ms, events_[i - 1], events_[i]);
            total += ms;
            std::fprintf(stderr, " %s %.3f", names_[i], ms);
        }
        std::fprintf(stderr, " | total %.3f ms\n", total);
        for (cudaEvent_t e : events_) cudaEventDestroy(e);
    }

  private:
    cudaStream_t stream_;
    const char* what_;
    bool on_ = false;
    std::vector<cudaEvent_t> events_;
    std::vector<const char*> names_;
};

struct Dims {
    int64_t B, T, H, Dh, C, nc, P;
    bool read_before;
    __host__ __device__ int64_t act() const {
        return P * nc * C * Dh;
    }  // floats of one padded activation
    __host__ __device__ int64_t cc() const {
        return P * nc * C * C;
    }  // floats of one C×C matrix per chunk
    __host__ __device__ int64_t tok() const { return P * nc * C; }  // padded tokens
    __host__ __device__ int64_t states() const { return P * nc * Dh * Dh; }
    __host__ __device__ int64_t elems() const { return B * T * H * Dh; }  // of q (unpadded)
};

Dims dims_of(const train::TttScanShape& s) {
    return {s.B, s.T, s.H, s.Dh, s.chunk, s.chunks(), s.B * s.H, s.read_before};
}

// The workspace, carved in this order (floats).
struct Work {
    float *k, *q, *v, *dy, *wk, *x1, *x2, *up, *z, *dkp, *dqp;  // padded activations
    float *kk, *qk, *m, *rinv, *tm, *zu, *dou, *gs, *dm;        // C×C per chunk
    float *e, *de;                                              // per padded token
    float* gend;                                                // Dh×Dh per chunk
    int64_t floats;
};

Work carve(const Dims& d, float* base) {
    Work w{};
    int64_t used = 0;
    auto take = [&](int64_t n) {
        float* p = base ? base + used : nullptr;
        used += (n + 63) / 64 * 64;  // 256-byte aligned pieces
        return p;
    };
    for (float** p : {&w.k, &w.q, &w.v, &w.dy, &w.wk, &w.x1, &w.x2, &w.up, &w.z, &w.dkp, &w.dqp})
        *p = take(d.act());
    for (float** p : {&w.kk, &w.qk, &w.m, &w.rinv, &w.tm, &w.zu, &w.dou, &w.gs, &w.dm})
        *p = take(d.cc());
    w.e = take(d.tok()), w.de = take(d.tok());
    w.gend = take(d.states());
    w.floats = used;
    return w;
}

// ---- packing: [B·T, H·Dh] rows into [p][chunk][C][Dh] (zeros past T) ----

__global__ void pack_kernel(float* k_out, float* q_out, float* v_out, float* dy_out, const float* k,
                            const float* q, const float* v, const float* dy, float* e_out,
                            const float* eta, float eta_const, Dims d) {
    const int64_t idx = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
    if (idx >= d.act()) return;
    const int64_t j = idx % d.Dh, tok = idx / d.Dh;  // tok = (p·nc + c)·C + t
    const int64_t t_in = tok % (d.nc * d.C), p = tok / (d.nc * d.C);
    const int64_t b = p / d.H, h = p % d.H;
    const bool valid = t_in < d.T;
    const int64_t src = (b * d.T + t_in) * d.H * d.Dh + h * d.Dh + j;
    k_out[idx] = valid ? k[src] : 0.0f;
    if (q_out) q_out[idx] = valid ? q[src] : 0.0f;
    if (v_out) v_out[idx] = valid ? v[src] : 0.0f;
    if (dy_out) dy_out[idx] = valid ? dy[src] : 0.0f;
    if (j == 0) e_out[tok] = valid ? (eta ? eta[(b * d.T + t_in) * d.H + h] : eta_const) : 0.0f;
}

void pack(const Dims& d, const Work& w, const float* q, const float* k, const float* v,
          const float* dy, const float* eta, float eta_const, cudaStream_t stream) {
    // q = k = v (reconstruct): one copy serves all three.
    const bool same = q == k && v == k;
    const int64_t n = d.act();
    pack_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(
        w.k, same ? nullptr : w.q, same ? nullptr : w.v, dy ? w.dy : nullptr, k, q, v, dy, w.e, eta,
        eta_const, d);
    check_launch("ttt chunk: pack");
}

// One head (H = 1) with T a multiple of C: the padded layout [p][chunk][C][Dh] is the input's own
// [B·T, Dh], so the products read q, k, v, dy and write y (and accumulate dq, dk) in place of
// padded copies, saving the pack and unpack passes (~0.1 ms per layer call at B=16, T=1024,
// Dh=256). Only where every pointer is 16-byte aligned (the sequential kernel's cp.async) and y,
// dq, dk, dv alias no input. BITTTT_CUDA_TTT_CHUNK_PACK=1 (diagnostics) always packs.
bool in_place_layout(const Dims& d, std::initializer_list<const float*> inputs,
                     std::initializer_list<const float*> outputs) {
    static const bool force_pack = [] {
        const char* v = std::getenv("BITTTT_CUDA_TTT_CHUNK_PACK");
        return v && v[0] == '1';
    }();
    if (force_pack || d.H != 1 || d.nc * d.C != d.T) return false;
    for (const float* p : inputs)
        if (p && !detail::aligned(p, 16)) return false;
    for (const float* o : outputs) {
        if (o && !detail::aligned(o, 16)) return false;
        for (const float* p : inputs)
            if (o && o == p) return false;
    }
    return true;
}

// η per padded token where the inputs are not packed (in_place_layout: no padding).
__global__ void eta_kernel(float* e_out, const float* eta, float eta_const, int64_t n) {
    const int64_t idx = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
    if (idx < n) e_out[idx] = eta ? eta[idx] : eta_const;
}

// ---- per chunk: the mask, R⁻¹ and T = R⁻¹ diag(η) ----

constexpr int kMaxChunk = 64;

// One block per chunk. R = I + L, L[t][s] = η_t (k_t·k_s) for s < t: R⁻¹ is unit lower triangular,
// its row t = e_t − Σ_{s<t} L[t][s] · (row s of R⁻¹). Right-looking: every row starts as e_t; step
// s (row s is final by then: every earlier row was already taken from it) takes L[t][s]·(row s)
// from every later row t, a rank-1 update over all (t, j) at once (row s is zero past column s).
// Thread (j = tid % 64, rows tid / 64 + 4i): 63 short steps, one barrier each (the row-by-row
// form had a dependent chain of up to 64 terms per row and 64 threads per block).
constexpr int kPrepThreads = 256;

__global__ void __launch_bounds__(kPrepThreads)
    prep_kernel(float* m, float* rinv, float* tm, const float* kk, const float* qk, const float* e,
                Dims d) {
    __shared__ float inv[kMaxChunk][kMaxChunk + 1];
    __shared__ float l[kMaxChunk][kMaxChunk + 1];
    const int64_t pc = blockIdx.x;
    const int C = static_cast<int>(d.C), tid = threadIdx.x;
    const float* kkc = kk + pc * C * C;
    const float* qkc = qk + pc * C * C;
    const float* ec = e + pc * C;
    for (int idx = tid; idx < C * C; idx += kPrepThreads) {
        const int t = idx / C, j = idx % C;
        l[t][j] = j < t ? ec[t] * kkc[idx] : 0.0f;
        inv[t][j] = t == j ? 1.0f : 0.0f;
        const bool keep = d.read_before ? j < t : j <= t;
        m[pc * C * C + idx] = keep ? qkc[idx] : 0.0f;
    }
    __syncthreads();
    const int j = tid % kMaxChunk, t0 = tid / kMaxChunk;
    constexpr int kRowStep = kPrepThreads / kMaxChunk;
    for (int s = 0; s + 1 < C; ++s) {
        if (j <= s) {
            const float row_s = inv[s][j];
            // This thread's rows t0, t0 + 4, ... after s.
            for (int t = s + 1 + ((t0 - s - 1) & (kRowStep - 1)); t < C; t += kRowStep)
                inv[t][j] -= l[t][s] * row_s;
        }
        __syncthreads();
    }
    for (int idx = tid; idx < C * C; idx += kPrepThreads) {
        const int t = idx / C, jj = idx % C;
        rinv[pc * C * C + idx] = inv[t][jj];
        tm[pc * C * C + idx] = inv[t][jj] * ec[jj];
    }
}

// Backward, per chunk: dL = −tril(Z U'ᵀ, −1); dη_t = Σ_j Z_tj X_tj + Σ_{s<t} dL_ts (K Kᵀ)_ts;
// Gs = Ĝ + Ĝᵀ with Ĝ = diag(η) dL; dM = mask ⊙ (dO U'ᵀ); then Z ← dX = diag(η) Z. Z U'ᵀ and dO U'ᵀ
// are staged in shared memory (read transposed); a warp per row for dη (16-byte loads along the
// row, Z scaled in the same pass).
// Folded (`diff` non-null; q = k and dq = dk, see ttt_chunk_backward): gs = Gs + dM + dMᵀ (dm
// unused) and diff = dO − dX, so dK + dQ = gs K + diff S0ᵀ + U' Gᵀ takes three products, not six.
__global__ void __launch_bounds__(256, 1)
    prep2_kernel(float* gs, float* dm, float* de, float* z, float* diff, const float* zu,
                 const float* dou, const float* kk, const float* x, const float* dO, const float* e,
                 Dims d) {
    __shared__ float zus[kMaxChunk][kMaxChunk + 1];
    __shared__ float dous[kMaxChunk][kMaxChunk + 1];
    const int64_t pc = blockIdx.x;
    const int C = static_cast<int>(d.C), Dh = static_cast<int>(d.Dh);
    const int64_t cc = pc * C * C, act = pc * C * Dh;
    const float* ec = e + pc * C;
    const int tid = threadIdx.x;
    for (int idx = tid; idx < C * C; idx += blockDim.x) {
        zus[idx / C][idx % C] = zu[cc + idx];
        dous[idx / C][idx % C] = dou[cc + idx];
    }
    __syncthreads();
    auto keep = [&](int t, int s) { return d.read_before ? s < t : s <= t; };
    for (int idx = tid; idx < C * C; idx += blockDim.x) {
        const int t = idx / C, s = idx % C;
        // Ĝ[t][s] = −η_t (Z U'ᵀ)[t][s] for s < t; Gs = Ĝ + Ĝᵀ.
        const float gts = s < t ? -ec[t] * zus[t][s] : 0.0f;
        const float gst = t < s ? -ec[s] * zus[s][t] : 0.0f;
        const float dmts = keep(t, s) ? dous[t][s] : 0.0f;
        if (diff) {
            gs[cc + idx] = gts + gst + dmts + (keep(s, t) ? dous[s][t] : 0.0f);
        } else {
            gs[cc + idx] = gts + gst;
            dm[cc + idx] = dmts;
        }
    }
    const int warp = tid >> 5, lane = tid & 31, warps = static_cast<int>(blockDim.x) >> 5;
    for (int t = warp; t < C; t += warps) {
        const int64_t row = act + int64_t{t} * Dh;
        const float et = ec[t];
        float sum = 0.0f;
        for (int j = lane * 4; j < Dh; j += 128) {
            float4 zv = *reinterpret_cast<const float4*>(z + row + j);
            const float4 xv = *reinterpret_cast<const float4*>(x + row + j);
            sum += zv.x * xv.x + zv.y * xv.y + zv.z * xv.z + zv.w * xv.w;
            zv.x *= et, zv.y *= et, zv.z *= et, zv.w *= et;
            *reinterpret_cast<float4*>(z + row + j) = zv;
            if (diff) {
                const float4 ov = *reinterpret_cast<const float4*>(dO + row + j);
                *reinterpret_cast<float4*>(diff + row + j) =
                    make_float4(ov.x - zv.x, ov.y - zv.y, ov.z - zv.z, ov.w - zv.w);
            }
        }
        for (int s = lane; s < t; s += 32) sum -= zus[t][s] * kk[cc + t * C + s];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if (lane == 0) de[pc * C + t] = sum;
    }
}

// ---- the sequential passage of the state, one block per (pair, slab of kSlab state columns) ----
//
// Forward (state S, chunks first to last):   store S → states (as W = Sᵀ, the checkpoint);
//                                            X = B1 − A1 S;  S += A2ᵀ X.
// Backward (state G, chunks last to first):  store G → states (S layout: G at the chunk's end);
//                                            X = B1 + A1 G;  G += A3ᵀ B3 − A2ᵀ X.
// with forward A1 = Wk, B1 = U (X = U'), A2 = K; backward A1 = K, B1 = Mᵀ dO (X = dU'), A2 = Wk,
// A3 = Q, B3 = dO. X overwrites B1 (its slab columns) in global memory.
//
// The work per chunk is small and every operand is known in advance, so the kernel is bound by
// the latency of its loads: the operands stream through a ring of kStages shared-memory tiles
// (phase A: 32 columns of A1 by all C rows, transposed; phase B: tb rows of A2 or A3 by all Dh
// columns) filled by cp.async kLook tiles ahead, across phases and chunks; the slab columns of B1
// and B3 of a chunk come with its first tile (double-buffered by chunk parity). Nothing waits on
// a global load; stores (X, states) are fire-and-forget.
constexpr int kSlab = 32;
constexpr int kSeqThreads = 256;
constexpr int kTileJ = 32;
constexpr int kStages = 4;
constexpr int kLook = kStages - 1;
constexpr int kSS = kSlab + 4;      // row stride of slab-wide buffers (float4 aligned)
constexpr int kTS = kMaxChunk + 4;  // row stride of a transposed phase-A tile
constexpr int kMaxJpt = 512 / 32;   // state rows per thread in phase B (CUDA cores; Dh <= 512)

struct SeqArgs {
    const float* a1;
    float* x;  // in: B1, out: X
    const float* a2;
    const float* a3;  // backward only
    const float* b3;  // backward only
    float* states;
    Dims d;
    bool backward;
    // The folded form (seq_fold_kernel), where given: K, T and (forward) the V of B1.
    const float* k = nullptr;
    const float* tmat = nullptr;
    const float* b1 = nullptr;
};

// Rows of a phase-B tile: a ring slot of at most 4096 floats (and at least 8 rows, one MMA step).
__host__ __device__ constexpr int tile_rows(int Dh) {
    return 4096 / Dh < 16 ? (4096 / Dh < 8 ? 8 : 4096 / Dh / 8 * 8) : 16;
}
__host__ __device__ constexpr int slot_floats(int Dh) {
    return kTileJ * kTS > tile_rows(Dh) * Dh ? kTileJ * kTS : tile_rows(Dh) * Dh;
}

size_t seq_smem_bytes(int64_t Dh) {
    const int dh = static_cast<int>(Dh);
    return sizeof(float) *
           static_cast<size_t>(dh * kSS + 5 * kMaxChunk * kSS + kStages * slot_floats(dh));
}

// The tensor-core form (kTensor, Dh a multiple of 64): the same products as 16×16×8 TF32 MMAs
// with fp32 accumulation; the state stays in accumulator fragments across chunks (warp w holds
// rows ((w >> 1) + 4m)·16 .. +16 and columns (w & 1)·16 .. +16 of the slab) and is written to st
// after every chunk for phase A, whose output tile (rows (w >> 1)·16, columns (w & 1)·16) is one
// fragment per warp.
namespace wmma = nvcuda::wmma;
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;
constexpr int kMaxTc = 512 / 64;  // state fragments per warp (Dh <= 512)

template <typename F>
__device__ __forceinline__ void to_tf32(F& f) {
#pragma unroll
    for (int i = 0; i < f.num_elements; ++i) f.x[i] = wmma::__float_to_tf32(f.x[i]);
}

struct BTile {
    bool third;
    int t0, rows;
};

template <bool kTensor>
__global__ void __launch_bounds__(kSeqThreads) seq_kernel(SeqArgs a) {
    extern __shared__ float4 smem4[];
    float* smem = reinterpret_cast<float*>(smem4);
    const Dims& d = a.d;
    const int Dh = static_cast<int>(d.Dh), C = static_cast<int>(d.C);
    const int tb = tile_rows(Dh), sf = slot_floats(Dh);
    float* st = smem;                        // [Dh][kSS]: st[j][r] = S[j][i0 + r]
    float* xs = st + Dh * kSS;               // [kMaxChunk][kSS]: sign·X of the slab
    float* bs = xs + kMaxChunk * kSS;        // [2][kMaxChunk][kSS]: B1 of the slab, by chunk parity
    float* ds = bs + 2 * kMaxChunk * kSS;    // [2][kMaxChunk][kSS]: B3 of the slab (backward)
    float* ring = ds + 2 * kMaxChunk * kSS;  // [kStages][sf]
    const int tid = threadIdx.x;
    const int64_t p = blockIdx.x, i0 = int64_t{blockIdx.y} * kSlab;
    const int64_t DD = d.Dh * d.Dh;
    const float sa = a.backward ? 1.0f : -1.0f, sb = a.backward ? -1.0f : 1.0f;
    for (int idx = tid; idx < Dh * kSS; idx += kSeqThreads) st[idx] = 0.0f;
    // Rows past the chunk are read (times zero) by whole-tile MMAs: everything starts finite.
    for (int idx = tid; idx < 5 * kMaxChunk * kSS + kStages * sf; idx += kSeqThreads)
        xs[idx] = 0.0f;
    __syncthreads();

    const int na = Dh / kTileJ, nb = (C + tb - 1) / tb, nb3 = a.backward ? nb : 0;
    const int per_chunk = na + nb + nb3;  // >= 3 (Dh >= 64): see the parity buffers below
    const int64_t total = d.nc * per_chunk;
    auto chunk_of = [&](int64_t step) { return a.backward ? d.nc - 1 - step : step; };
    // Phase-B tile idx (na <= idx < per_chunk): rows t0 .. t0 + rows of A2, or of A3 (`third`).
    auto b_tile = [&](int idx) {
        const bool third = idx >= na + nb;
        const int t0 = (idx - na - (third ? nb : 0)) * tb;
        return BTile{third, t0, min(tb, C - t0)};
    };
    // Issues the copies of tile g into ring slot g % kStages (and, with a chunk's first tile, its
    // B1 and B3 slabs into the parity buffers: the chunk two back finished reading them, since a
    // tile is issued kLook <= per_chunk iterations ahead), then commits one group.
    auto issue = [&](int64_t g) {
        const int64_t step = g / per_chunk, pc = p * d.nc + chunk_of(step);
        const int idx = static_cast<int>(g % per_chunk);
        float* buf = ring + (g % kStages) * sf;
        if (idx == 0) {
            float* b1s = bs + (step & 1) * kMaxChunk * kSS;
            float* b3s = ds + (step & 1) * kMaxChunk * kSS;
            for (int e = tid; e < C * (kSlab / 4); e += kSeqThreads) {
                const int t = e / (kSlab / 4), r = (e % (kSlab / 4)) * 4;
                const int64_t off = (pc * C + t) * Dh + i0 + r;
                __pipeline_memcpy_async(b1s + t * kSS + r, a.x + off, 4 * sizeof(float));
                if (a.backward)
                    __pipeline_memcpy_async(b3s + t * kSS + r, a.b3 + off, 4 * sizeof(float));
            }
        }
        if (idx < na) {  // A1[:, j0 .. j0+32), transposed: buf[jj][t]
            const float* src = a.a1 + pc * C * Dh + idx * kTileJ;
            for (int e = tid; e < C * kTileJ; e += kSeqThreads) {
                const int t = e / kTileJ, jj = e % kTileJ;
                __pipeline_memcpy_async(buf + jj * kTS + t, src + t * Dh + jj, sizeof(float));
            }
        } else {  // rows t0 .. t0+tb of A2 (or A3), all columns: buf[tt][j]
            const BTile b = b_tile(idx);
            const float* src = (b.third ? a.a3 : a.a2) + (pc * C + b.t0) * Dh;
            for (int e = tid * 4; e < b.rows * Dh; e += kSeqThreads * 4)
                __pipeline_memcpy_async(buf + e, src + e, 4 * sizeof(float));
        }
        __pipeline_commit();
    };

    // CUDA cores: phase A thread rows ty·4 .. +4, slab columns tx·2 .. +2; phase B state rows
    // jg + 32·m (m < jpt), slab columns r0 .. r0+4.
    const int ty = tid / 16, tx = tid % 16;
    const int jg = tid / 8, r0 = (tid % 8) * 4, jpt = Dh / 32;
    float acc_a[4][2] = {};
    float acc_b[kMaxJpt][4] = {};
    // Tensor cores: warp tiles (see above).
    const int warp = tid >> 5, lane = tid & 31, rt = warp >> 1, ct = warp & 1, ntc = Dh / 64;
    FragC xacc;
    FragC sacc[kMaxTc];
    if constexpr (kTensor) {
#pragma unroll
        for (int m = 0; m < kMaxTc; ++m) wmma::fill_fragment(sacc[m], 0.0f);
    }

    for (int64_t g = 0; g < kLook; ++g)
        if (g < total)
            issue(g);
        else
            __pipeline_commit();
    for (int64_t g = 0; g < total; ++g) {
        if (g + kLook < total)
            issue(g + kLook);
        else
            __pipeline_commit();  // an empty group keeps the count: tile g is kLook groups back
        __pipeline_wait_prior(kLook);
        __syncthreads();
        const int64_t step = g / per_chunk, pc = p * d.nc + chunk_of(step);
        const int idx = static_cast<int>(g % per_chunk);
        const float* buf = ring + (g % kStages) * sf;
        const float* b1s = bs + (step & 1) * kMaxChunk * kSS;
        const float* b3s = ds + (step & 1) * kMaxChunk * kSS;
        if (idx == 0) {
            // The state at this point: the checkpoint (forward, W layout) or G at the chunk's end
            // (backward, S layout).
            float* out = a.states + pc * DD;
            if constexpr (kTensor) {
#pragma unroll
                for (int m = 0; m < kMaxTc; ++m) {
                    if (m >= ntc) break;
                    const int j0 = (rt + 4 * m) * 16;
                    if (!a.backward)  // W[i][j] = S[j][i]: a column-major store
                        wmma::store_matrix_sync(out + (i0 + ct * 16) * Dh + j0, sacc[m], Dh,
                                                wmma::mem_col_major);
                    else
                        wmma::store_matrix_sync(out + j0 * Dh + i0 + ct * 16, sacc[m], Dh,
                                                wmma::mem_row_major);
                }
                wmma::fill_fragment(xacc, 0.0f);
            } else {
                if (!a.backward) {
                    for (int e = tid; e < kSlab * Dh; e += kSeqThreads) {
                        const int r = e / Dh, j = e % Dh;
                        out[(i0 + r) * Dh + j] = st[j * kSS + r];
                    }
                } else {
                    for (int e = tid; e < kSlab * Dh; e += kSeqThreads) {
                        const int j = e / kSlab, r = e % kSlab;
                        out[j * Dh + i0 + r] = st[j * kSS + r];
                    }
                }
#pragma unroll
                for (int u = 0; u < 4; ++u) acc_a[u][0] = acc_a[u][1] = 0.0f;
            }
        }
        if (idx < na) {
            const int j0 = idx * kTileJ;
            if constexpr (kTensor) {
                if (rt * 16 < C) {
#pragma unroll
                    for (int kk = 0; kk < kTileJ / 8; ++kk) {
                        FragA fa;
                        FragB fb;
                        wmma::load_matrix_sync(fa, buf + kk * 8 * kTS + rt * 16, kTS);
                        wmma::load_matrix_sync(fb, st + (j0 + kk * 8) * kSS + ct * 16, kSS);
                        to_tf32(fa);
                        to_tf32(fb);
                        wmma::mma_sync(xacc, fa, fb, xacc);
                    }
                    if (idx == na - 1) {  // X = B1 ± A1·state for this warp's tile
                        wmma::store_matrix_sync(xs + rt * 16 * kSS + ct * 16, xacc, kSS,
                                                wmma::mem_row_major);
                        __syncwarp();
                        for (int e = lane; e < 256; e += 32) {
                            const int t = rt * 16 + e / 16, r = ct * 16 + e % 16;
                            float& xv = xs[t * kSS + r];
                            if (t < C) {
                                const float x = b1s[t * kSS + r] + sa * xv;
                                a.x[(pc * C + t) * Dh + i0 + r] = x;
                                xv = sb * x;
                            } else {
                                xv = 0.0f;
                            }
                        }
                    }
                }
            } else {
#pragma unroll 8
                for (int jj = 0; jj < kTileJ; ++jj) {
                    const float4 av = *reinterpret_cast<const float4*>(buf + jj * kTS + ty * 4);
                    const float2 sv =
                        *reinterpret_cast<const float2*>(st + (j0 + jj) * kSS + tx * 2);
                    acc_a[0][0] += av.x * sv.x, acc_a[0][1] += av.x * sv.y;
                    acc_a[1][0] += av.y * sv.x, acc_a[1][1] += av.y * sv.y;
                    acc_a[2][0] += av.z * sv.x, acc_a[2][1] += av.z * sv.y;
                    acc_a[3][0] += av.w * sv.x, acc_a[3][1] += av.w * sv.y;
                }
                if (idx == na - 1) {  // X = B1 ± A1·state for this thread's 4×2 entries
#pragma unroll
                    for (int u = 0; u < 4; ++u) {
                        const int t = ty * 4 + u;
                        if (t >= C) continue;
#pragma unroll
                        for (int r = 0; r < 2; ++r) {
                            const int col = tx * 2 + r;
                            const float x = b1s[t * kSS + col] + sa * acc_a[u][r];
                            a.x[(pc * C + t) * Dh + i0 + col] = x;
                            xs[t * kSS + col] = sb * x;
                        }
                    }
                }
            }
        } else {
            const BTile b = b_tile(idx);
            const int t0 = b.t0, rows = b.rows;
            const float* vals = b.third ? b3s : xs;  // rows past C are 0 in both
            if constexpr (kTensor) {
                for (int kk = 0; kk * 8 < rows; ++kk) {
                    FragB fb;
                    wmma::load_matrix_sync(fb, vals + (t0 + kk * 8) * kSS + ct * 16, kSS);
                    to_tf32(fb);
#pragma unroll
                    for (int m = 0; m < kMaxTc; ++m) {
                        if (m >= ntc) break;
                        FragA fa;
                        wmma::load_matrix_sync(fa, buf + kk * 8 * Dh + (rt + 4 * m) * 16, Dh);
                        to_tf32(fa);
                        wmma::mma_sync(sacc[m], fa, fb, sacc[m]);
                    }
                }
                if (idx == per_chunk - 1) {  // the state to st for the next chunk's phase A
#pragma unroll
                    for (int m = 0; m < kMaxTc; ++m) {
                        if (m >= ntc) break;
                        wmma::store_matrix_sync(st + (rt + 4 * m) * 16 * kSS + ct * 16, sacc[m],
                                                kSS, wmma::mem_row_major);
                    }
                }
            } else {
                if (idx == na) {  // the first phase-B tile: the state into registers
#pragma unroll
                    for (int m = 0; m < kMaxJpt; ++m) {
                        if (m >= jpt) break;
                        const float4 s4 =
                            *reinterpret_cast<const float4*>(st + (jg + 32 * m) * kSS + r0);
                        acc_b[m][0] = s4.x, acc_b[m][1] = s4.y, acc_b[m][2] = s4.z;
                        acc_b[m][3] = s4.w;
                    }
                }
                for (int tt = 0; tt < rows; ++tt) {
                    const float4 xv = *reinterpret_cast<const float4*>(vals + (t0 + tt) * kSS + r0);
#pragma unroll
                    for (int m = 0; m < kMaxJpt; ++m) {
                        if (m >= jpt) break;
                        const float av = buf[tt * Dh + jg + 32 * m];
                        acc_b[m][0] += av * xv.x, acc_b[m][1] += av * xv.y;
                        acc_b[m][2] += av * xv.z, acc_b[m][3] += av * xv.w;
                    }
                }
                if (idx == per_chunk - 1) {  // the last phase-B tile: the state back to st
#pragma unroll
                    for (int m = 0; m < kMaxJpt; ++m) {
                        if (m >= jpt) break;
                        *reinterpret_cast<float4*>(st + (jg + 32 * m) * kSS + r0) =
                            make_float4(acc_b[m][0], acc_b[m][1], acc_b[m][2], acc_b[m][3]);
                    }
                }
            }
        }
        __syncthreads();  // the slot, xs and st are consistent for the next tile
    }
}

// ---- the sequential passage with whole-chunk operands (tensor cores; Dh % 64 == 0, Dh <= 256)
// ----
//
// The same recurrence as seq_kernel, one block per (pair, slab of 32 state columns), but each
// operand of a chunk (A1, A2, A3: C×Dh) arrives whole, with 16-byte cp.async in its natural
// row-major layout, in one of two shared-memory slots: the next operand loads while the current
// one is multiplied. A chunk is 2 stages (forward: A1 then A2) or 3 (backward: A1, A2, A3), one
// barrier each, against 12-16 tiles of the ring form, and the products are raw m16n8k8 TF32
// mma.sync on fragments read from shared memory (no wmma staging, no generic loads): per-tile
// overhead, not the tensor cores nor L2, bounded seq_kernel (~0.4 instructions per cycle per
// scheduler, 8 warps per SM).
//   phase A (A1 in the slot): warp w computes the 16×16 tile (rows (w >> 1)·16, columns
//     (w & 1)·16) of A1·state over Dh/8 steps; X = B1 ± that from the registers, to global and
//     (times sb, rounded to TF32) to xs for phase B.
//   phase B (A2 or A3 in the slot): the state in registers (rows ((w >> 1) + 4m)·16, columns
//     (w & 1)·16) += slotᵀ·xs (A2) or slotᵀ·b3s (A3); after the chunk's last stage the state goes
//     to st, rounded to TF32 (phase A's operand).
// Fragments (PTX m16n8k8 .tf32; g = lane / 4, q = lane % 4): A a0 (g, q), a1 (g+8, q), a2 (g, q+4),
// a3 (g+8, q+4); B b0 (k q, n g), b1 (k q+4, n g); C c0 (g, 2q), c1 (g, 2q+1), c2 (g+8, 2q),
// c3 (g+8, 2q+1). Rows past C of the slots, xs and b3s stay zero (never written), so whole 16-row
// tiles and 8-row steps read zeros there. Slot rows are Dh + 4 floats apart and the slab-wide
// buffers kWS = 40 (phase A's fragment reads hit 32 distinct banks).
constexpr int kWideMaxDh = 256;
constexpr int kWS = kSlab + 8;

__host__ __device__ constexpr int wide_op_ld(int Dh) {
    return Dh + 4;
}

__host__ __device__ constexpr int wide_smem_floats(int Dh) {
    return 2 * kMaxChunk * wide_op_ld(Dh) + Dh * kWS + 3 * kMaxChunk * kWS;
}

__device__ __forceinline__ uint32_t tf32_bits(float x) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

// d += a·b (m16n8k8, TF32 operands, fp32 accumulators).
__device__ __forceinline__ void mma_tf32(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// What both whole-operand kernels (seq_wide_kernel, seq_fold_kernel) share: the warp tiles, the
// state in registers and its two stores, the two kinds of products, the operand copy.
//
// Warp w (8 warps; g = lane / 4, q = lane % 4) owns the 16×16 tile of a C×kSlab product at rows
// rt·16 + g (+8), columns ct·16 + nt·8 + 2q (+1) (rt = w >> 1, ct = w & 1), and of the Dh×kSlab
// state the rows (rt + 4m)·16 + g (+8) with the same columns: acc[m][nt][2h + c].
struct WarpTile {
    int g, q, rt, ct;
};
__device__ __forceinline__ WarpTile warp_tile() {
    const int lane = static_cast<int>(threadIdx.x & 31), warp = static_cast<int>(threadIdx.x >> 5);
    return {lane >> 2, lane & 3, warp >> 1, warp & 1};
}

__device__ __forceinline__ void store_tf32(float* dst, float v0, float v1) {
    *reinterpret_cast<float2*>(dst) =
        make_float2(__uint_as_float(tf32_bits(v0)), __uint_as_float(tf32_bits(v1)));
}

template <int kNtc>
__device__ __forceinline__ void zero_state(float (&acc)[kNtc][2][4]) {
#pragma unroll
    for (int m = 0; m < kNtc; ++m)
#pragma unroll
        for (int nt = 0; nt < 2; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[m][nt][e] = 0.0f;
}

// f(j, col, v0, v1) for this thread's state entries: row j, slab columns col and col + 1.
template <int kNtc, typename F>
__device__ __forceinline__ void each_state_entry(const WarpTile& w, const float (&acc)[kNtc][2][4],
                                                 F&& f) {
#pragma unroll
    for (int m = 0; m < kNtc; ++m)
#pragma unroll
        for (int nt = 0; nt < 2; ++nt)
#pragma unroll
            for (int h = 0; h < 2; ++h)
                f((w.rt + 4 * m) * 16 + w.g + 8 * h, w.ct * 16 + nt * 8 + 2 * w.q,
                  acc[m][nt][2 * h], acc[m][nt][2 * h + 1]);
}

// f(t, col, v0, v1) for this thread's entries of its C×kSlab tile r, rows below C.
template <typename F>
__device__ __forceinline__ void each_tile_entry(const WarpTile& w, int C, const float (&r)[2][4],
                                                F&& f) {
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int t = w.rt * 16 + w.g + 8 * h, col = w.ct * 16 + nt * 8 + 2 * w.q;
            if (t < C) f(t, col, r[nt][2 * h], r[nt][2 * h + 1]);
        }
}

// The state at a chunk's start, exact fp32, to `out` (its Dh×Dh block): the checkpoint (forward,
// W layout: W[i][j] = S[j][i]) or G at the chunk's end (backward, S layout).
template <int kNtc>
__device__ __forceinline__ void store_state(const WarpTile& w, const float (&acc)[kNtc][2][4],
                                            float* out, int64_t Dh, int64_t i0, bool backward) {
    each_state_entry<kNtc>(w, acc, [&](int j, int c, float v0, float v1) {
        const int64_t col = i0 + c;
        if (!backward) {
            out[col * Dh + j] = v0;
            out[(col + 1) * Dh + j] = v1;
        } else {
            *reinterpret_cast<float2*>(out + j * Dh + col) = make_float2(v0, v1);
        }
    });
}

// The state to st (TF32, [Dh][kWS]): the B operand of the next chunk's first product.
template <int kNtc>
__device__ __forceinline__ void state_to_st(const WarpTile& w, const float (&acc)[kNtc][2][4],
                                            float* st) {
    each_state_entry<kNtc>(w, acc, [&](int j, int col, float v0, float v1) {
        store_tf32(st + j * kWS + col, v0, v1);
    });
}

// r = op·state for the warp's tile: op a C×Dh operand in shared memory (row stride ld, rows past
// C zero), the state from st.
template <int kDh>
__device__ __forceinline__ void times_state(const WarpTile& w, const float* op, int ld,
                                            const float* st, float (&r)[2][4]) {
    const float* a0 = op + (w.rt * 16 + w.g) * ld + w.q;
    const float* b0 = st + w.q * kWS + w.ct * 16 + w.g;
#pragma unroll 8
    for (int k = 0; k < kDh; k += 8) {
        const uint32_t af[4] = {tf32_bits(a0[k]), tf32_bits(a0[8 * ld + k]), tf32_bits(a0[k + 4]),
                                tf32_bits(a0[8 * ld + k + 4])};
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
            const float* bp = b0 + k * kWS + nt * 8;
            mma_tf32(r[nt], af, __float_as_uint(bp[0]), __float_as_uint(bp[4 * kWS]));
        }
    }
}

// state += opᵀ·vals over kb rows (whole 8-row steps; rows past C zero): op C×Dh (stride ld),
// vals C×kSlab (stride kWS), rounded to TF32 here unless kValsTf32 (already rounded).
template <int kNtc, bool kValsTf32>
__device__ __forceinline__ void add_transposed_product(const WarpTile& w, const float* op, int ld,
                                                       const float* vals, int kb,
                                                       float (&acc)[kNtc][2][4]) {
    for (int k = 0; k < kb; k += 8) {
        uint32_t bf[2][2];
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
            const float* bp = vals + (k + w.q) * kWS + w.ct * 16 + nt * 8 + w.g;
            bf[nt][0] = kValsTf32 ? __float_as_uint(bp[0]) : tf32_bits(bp[0]);
            bf[nt][1] = kValsTf32 ? __float_as_uint(bp[4 * kWS]) : tf32_bits(bp[4 * kWS]);
        }
#pragma unroll
        for (int m = 0; m < kNtc; ++m) {
            // opᵀ: A[j][t] = op[t][j], j = (rt + 4m)·16 + g (+8), t = k + q (+4).
            const float* sp = op + (k + w.q) * ld + (w.rt + 4 * m) * 16 + w.g;
            const uint32_t af[4] = {tf32_bits(sp[0]), tf32_bits(sp[8]), tf32_bits(sp[4 * ld]),
                                    tf32_bits(sp[4 * ld + 8])};
#pragma unroll
            for (int nt = 0; nt < 2; ++nt) mma_tf32(acc[m][nt], af, bf[nt][0], bf[nt][1]);
        }
    }
}

// A chunk's C×Dh operand from global memory (row-major) into a slot of row stride ld, 16-byte
// cp.async by the whole block (the caller commits).
template <int kDh>
__device__ __forceinline__ void copy_operand_async(float* slot, int ld, const float* src, int C) {
    constexpr int q4 = kDh / 4;
    for (int e = static_cast<int>(threadIdx.x); e < C * q4; e += kSeqThreads) {
        const int t = e / q4, c4 = (e % q4) * 4;
        __pipeline_memcpy_async(slot + t * ld + c4, src + t * kDh + c4, 4 * sizeof(float));
    }
}

template <int kNtc>  // Dh = 64·kNtc
__global__ void __launch_bounds__(kSeqThreads, 1) seq_wide_kernel(SeqArgs a) {
    constexpr int Dh = 64 * kNtc, ld = wide_op_ld(Dh);
    extern __shared__ float4 smem4[];
    float* smem = reinterpret_cast<float*>(smem4);
    const Dims& d = a.d;
    const int C = static_cast<int>(d.C);
    float* slots = smem;                     // [2][kMaxChunk][ld]: A1, A2 or A3 of a chunk
    float* st = slots + 2 * kMaxChunk * ld;  // [Dh][kWS]: st[j][r] = state[j][i0 + r] (TF32)
    float* xs = st + Dh * kWS;               // [kMaxChunk][kWS]: sb·X of the slab (TF32)
    float* b1s = xs + kMaxChunk * kWS;       // [kMaxChunk][kWS]: B1 of the slab
    float* b3s = b1s + kMaxChunk * kWS;      // [kMaxChunk][kWS]: B3 of the slab (backward)
    const int tid = threadIdx.x;
    const WarpTile w = warp_tile();
    const int64_t p = blockIdx.x, i0 = int64_t{blockIdx.y} * kSlab;
    const int64_t DD = int64_t{Dh} * Dh;
    const float sa = a.backward ? 1.0f : -1.0f, sb = a.backward ? -1.0f : 1.0f;
    for (int i = tid * 4; i < wide_smem_floats(Dh); i += kSeqThreads * 4)
        *reinterpret_cast<float4*>(smem + i) = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    __syncthreads();  // the zeros land before any cp.async writes over them

    const int per_chunk = a.backward ? 3 : 2;
    const int64_t total = d.nc * per_chunk;
    const int kb = (C + 7) / 8 * 8;  // phase B's rows, whole 8-row steps
    auto chunk_of = [&](int64_t step) { return a.backward ? d.nc - 1 - step : step; };
    // Stage s: kind 0 = A1 (+ the B1 slab), 1 = A2, 2 = A3 (+ the B3 slab), into slot s & 1.
    auto issue = [&](int64_t s) {
        const int64_t pc = p * d.nc + chunk_of(s / per_chunk);
        const int kind = static_cast<int>(s % per_chunk);
        const float* src = (kind == 0 ? a.a1 : kind == 1 ? a.a2 : a.a3) + pc * C * Dh;
        copy_operand_async<Dh>(slots + (s & 1) * kMaxChunk * ld, ld, src, C);
        if (kind != 1) {
            float* dst = kind == 0 ? b1s : b3s;
            const float* bsrc = (kind == 0 ? a.x : a.b3) + pc * C * Dh + i0;
            for (int e = tid; e < C * (kSlab / 4); e += kSeqThreads) {
                const int t = e / (kSlab / 4), r = (e % (kSlab / 4)) * 4;
                __pipeline_memcpy_async(dst + t * kWS + r, bsrc + t * Dh + r, 4 * sizeof(float));
            }
        }
        __pipeline_commit();
    };

    float acc[kNtc][2][4];  // the state (WarpTile)
    zero_state<kNtc>(acc);

    issue(0);
    for (int64_t s = 0; s < total; ++s) {
        __pipeline_wait_prior(0);
        __syncthreads();  // stage s landed; every warp left stage s − 1 (its slot is free)
        if (s + 1 < total) issue(s + 1);
        const int64_t pc = p * d.nc + chunk_of(s / per_chunk);
        const int kind = static_cast<int>(s % per_chunk);
        const float* slot = slots + (s & 1) * kMaxChunk * ld;
        if (kind == 0) {
            store_state<kNtc>(w, acc, a.states + pc * DD, Dh, i0, a.backward);
            if (w.rt * 16 < C) {
                float xa[2][4] = {};
                times_state<Dh>(w, slot, ld, st, xa);
                // X = B1 ± A1·state for this thread's entries (xs keeps its zeros past C).
                each_tile_entry(w, C, xa, [&](int t, int col, float v0, float v1) {
                    const float2 b = *reinterpret_cast<const float2*>(b1s + t * kWS + col);
                    const float x0 = b.x + sa * v0, x1 = b.y + sa * v1;
                    *reinterpret_cast<float2*>(a.x + (pc * C + t) * Dh + i0 + col) =
                        make_float2(x0, x1);
                    store_tf32(xs + t * kWS + col, sb * x0, sb * x1);
                });
            }
        } else {
            // b3s holds raw fp32 (rounded here); xs is already TF32 (rounding it again is exact).
            add_transposed_product<kNtc, false>(w, slot, ld, kind == 1 ? xs : b3s, kb, acc);
            if (kind == per_chunk - 1) state_to_st<kNtc>(w, acc, st);  // for the next phase A
        }
    }
}

size_t wide_smem_bytes(int64_t Dh) {
    return sizeof(float) * static_cast<size_t>(wide_smem_floats(static_cast<int>(Dh)));
}

template <int kNtc>
void launch_wide(const SeqArgs& a, dim3 grid, cudaStream_t stream) {
    const size_t smem = wide_smem_bytes(a.d.Dh);
    check_cuda(
        cudaFuncSetAttribute(seq_wide_kernel<kNtc>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smem)),
        "ttt chunk: cudaFuncSetAttribute");
    seq_wide_kernel<kNtc><<<grid, kSeqThreads, smem, stream>>>(a);
    check_launch("ttt chunk: seq_wide_kernel");
}

// ---- the folded passage: K is the only Dh-wide operand (forward; backward with q = k) ----
//
// Wk = T K, so the forward's X = U − Wk S = T (V − K S) and the backward's (q = k)
// G += Qᵀ dO − Wkᵀ X = Kᵀ (dO − Tᵀ X): each chunk needs K (C×Dh), T (C×C) and slabs, about 60%
// (forward) or 40% (backward) of seq_wide_kernel's bytes from L2, and the products Wk = T K and
// U = T V are not needed. Per chunk (same warp tiles and fragments as seq_wide_kernel):
//   A-1  Y = K·state, in registers.
//   E1   forward: xs = B1 − Y (B1 = the V slab); backward: X = B1 + Y (B1 = Mᵀ dO) to global,
//        xs = X.
//   A-2  Z = T·xs (forward) or Tᵀ·xs (backward), in registers.
//   E2   forward: X = Z to global, xs = X; backward: xs = dO − Z (the dO slab).
//   B    state += Kᵀ·xs; the state to st (TF32) for the next chunk's A-1.
// K is double-buffered (the next chunk's loads during this one); T and the slabs have one buffer,
// refilled after E2 (their last reader) for the next chunk, landing during B and the next A-1.
// cp.async groups, in commit order: K(c + 1) at chunk c's start, TB(c + 1) after its E2; waiting
// for all but the newest group therefore gives K(c) at the chunk's start and TB(c) after A-1.
constexpr int kTL = kMaxChunk + 4;  // row stride of T in shared memory

__host__ __device__ constexpr int fold_smem_floats(int Dh) {
    return 2 * kMaxChunk * wide_op_ld(Dh) + kMaxChunk * kTL + Dh * kWS + 3 * kMaxChunk * kWS;
}

template <int kNtc>  // Dh = 64·kNtc
__global__ void __launch_bounds__(kSeqThreads, 1) seq_fold_kernel(SeqArgs a) {
    constexpr int Dh = 64 * kNtc, ld = wide_op_ld(Dh);
    extern __shared__ float4 smem4[];
    float* smem = reinterpret_cast<float*>(smem4);
    const Dims& d = a.d;
    const int C = static_cast<int>(d.C);
    float* kslots = smem;                     // [2][kMaxChunk][ld]: K of a chunk
    float* ts = kslots + 2 * kMaxChunk * ld;  // [kMaxChunk][kTL]: T of the chunk
    float* st = ts + kMaxChunk * kTL;         // [Dh][kWS]: the state's slab (TF32)
    float* xs = st + Dh * kWS;                // [kMaxChunk][kWS]: the B operands (TF32)
    float* b1s = xs + kMaxChunk * kWS;        // [kMaxChunk][kWS]: B1 of the slab
    float* b3s = b1s + kMaxChunk * kWS;       // [kMaxChunk][kWS]: dO of the slab (backward)
    const int tid = threadIdx.x;
    const WarpTile w = warp_tile();
    const int g = w.g, q = w.q, rt = w.rt;  // A-2's fragments read T directly
    const int64_t p = blockIdx.x, i0 = int64_t{blockIdx.y} * kSlab;
    const int64_t DD = int64_t{Dh} * Dh;
    const bool bwd = a.backward;
    for (int i = tid * 4; i < fold_smem_floats(Dh); i += kSeqThreads * 4)
        *reinterpret_cast<float4*>(smem + i) = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    __syncthreads();  // the zeros land before any cp.async writes over them

    const int kb = (C + 7) / 8 * 8;  // rows of the C-deep products, whole 8-row steps
    const bool tile_on = rt * 16 < C;
    auto pc_of = [&](int64_t step) { return p * d.nc + (bwd ? d.nc - 1 - step : step); };
    auto issue_k = [&](int64_t step) {
        if (step < d.nc)
            copy_operand_async<Dh>(kslots + (step & 1) * kMaxChunk * ld, ld,
                                   a.k + pc_of(step) * C * Dh, C);
        __pipeline_commit();
    };
    auto issue_tb = [&](int64_t step) {
        if (step < d.nc) {
            const int64_t pc = pc_of(step);
            const float* tsrc = a.tmat + pc * C * C;
            for (int e = tid; e < C * C; e += kSeqThreads)
                __pipeline_memcpy_async(ts + (e / C) * kTL + e % C, tsrc + e, sizeof(float));
            const float* b1src = (bwd ? a.x : a.b1) + pc * C * Dh + i0;
            const float* b3src = a.b3 + pc * C * Dh + i0;
            for (int e = tid; e < C * (kSlab / 4); e += kSeqThreads) {
                const int t = e / (kSlab / 4), r = (e % (kSlab / 4)) * 4;
                __pipeline_memcpy_async(b1s + t * kWS + r, b1src + t * Dh + r, 4 * sizeof(float));
                if (bwd)
                    __pipeline_memcpy_async(b3s + t * kWS + r, b3src + t * Dh + r,
                                            4 * sizeof(float));
            }
        }
        __pipeline_commit();
    };
    float acc[kNtc][2][4];  // the state (WarpTile)
    zero_state<kNtc>(acc);

    issue_k(0);
    issue_tb(0);
    for (int64_t step = 0; step < d.nc; ++step) {
        const int64_t pc = pc_of(step);
        const float* kslot = kslots + (step & 1) * kMaxChunk * ld;
        __pipeline_wait_prior(1);  // K(step)
        __syncthreads();           // ... for every thread; the other K slot and st are free
        issue_k(step + 1);
        store_state<kNtc>(w, acc, a.states + pc * DD, Dh, i0, bwd);
        // A-1: Y = K·state.
        float y[2][4] = {};
        if (tile_on) times_state<Dh>(w, kslot, ld, st, y);
        __pipeline_wait_prior(1);  // T and the slabs of this chunk
        __syncthreads();
        if (tile_on)  // E1
            each_tile_entry(w, C, y, [&](int t, int col, float v0, float v1) {
                const float2 b = *reinterpret_cast<const float2*>(b1s + t * kWS + col);
                const float x0 = bwd ? b.x + v0 : b.x - v0, x1 = bwd ? b.y + v1 : b.y - v1;
                if (bwd)
                    *reinterpret_cast<float2*>(a.x + (pc * C + t) * Dh + i0 + col) =
                        make_float2(x0, x1);
                store_tf32(xs + t * kWS + col, x0, x1);
            });
        __syncthreads();
        // A-2: Z = T·xs (forward) or Tᵀ·xs (backward).
        float z[2][4] = {};
        if (tile_on) {
            for (int k = 0; k < kb; k += 8) {
                uint32_t af[4];
                if (!bwd) {  // A[t][s] = T[t][s]
                    const float* tp = ts + (rt * 16 + g) * kTL + k + q;
                    af[0] = tf32_bits(tp[0]), af[1] = tf32_bits(tp[8 * kTL]);
                    af[2] = tf32_bits(tp[4]), af[3] = tf32_bits(tp[8 * kTL + 4]);
                } else {  // A[t][s] = T[s][t]
                    const float* tp = ts + (k + q) * kTL + rt * 16 + g;
                    af[0] = tf32_bits(tp[0]), af[1] = tf32_bits(tp[8]);
                    af[2] = tf32_bits(tp[4 * kTL]), af[3] = tf32_bits(tp[4 * kTL + 8]);
                }
#pragma unroll
                for (int nt = 0; nt < 2; ++nt) {
                    const float* bp = xs + (k + q) * kWS + w.ct * 16 + nt * 8 + g;
                    mma_tf32(z[nt], af, __float_as_uint(bp[0]), __float_as_uint(bp[4 * kWS]));
                }
            }
        }
        __syncthreads();  // every read of xs is done
        if (tile_on)      // E2
            each_tile_entry(w, C, z, [&](int t, int col, float v0, float v1) {
                if (!bwd) {
                    *reinterpret_cast<float2*>(a.x + (pc * C + t) * Dh + i0 + col) =
                        make_float2(v0, v1);
                    store_tf32(xs + t * kWS + col, v0, v1);
                } else {
                    const float2 o = *reinterpret_cast<const float2*>(b3s + t * kWS + col);
                    store_tf32(xs + t * kWS + col, o.x - v0, o.y - v1);
                }
            });
        __syncthreads();  // xs complete; T and the slabs are free
        issue_tb(step + 1);
        // B: state += Kᵀ·xs (xs holds TF32 values).
        add_transposed_product<kNtc, true>(w, kslot, ld, xs, kb, acc);
        // The state to st for the next chunk's A-1 (its last reader, A-1, is behind barriers).
        state_to_st<kNtc>(w, acc, st);
    }
}

template <int kNtc>
void launch_fold(const SeqArgs& a, dim3 grid, cudaStream_t stream) {
    const size_t smem = sizeof(float) * static_cast<size_t>(fold_smem_floats(64 * kNtc));
    check_cuda(
        cudaFuncSetAttribute(seq_fold_kernel<kNtc>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smem)),
        "ttt chunk: cudaFuncSetAttribute");
    seq_fold_kernel<kNtc><<<grid, kSeqThreads, smem, stream>>>(a);
    check_launch("ttt chunk: seq_fold_kernel");
}

// The folded form where TF32 is on, the caller gave K and T (SeqArgs::k, tmat), Dh is a multiple
// of 64 up to 256 and the operands are 16-byte aligned. BITTTT_CUDA_TTT_SEQ_NOFOLD=1
// (diagnostics, or to fall back) keeps the unfolded forms.
bool seq_folds(const SeqArgs& a) {
    static const bool no_fold = [] {
        const char* v = std::getenv("BITTTT_CUDA_TTT_SEQ_NOFOLD");
        return v && v[0] == '1';
    }();
    auto al = [](const void* p) { return detail::aligned(p, 16); };
    return !no_fold && g_tf32 && a.k && a.tmat && a.d.Dh % 64 == 0 && a.d.Dh <= kWideMaxDh &&
           al(a.k) && al(a.x) && al(a.states) && (a.backward ? al(a.b3) : al(a.b1));
}

// Which form: the whole-operand tensor form (seq_wide_kernel) where TF32 is on, Dh is a multiple
// of 64 up to 256, the fragment stores to `states` are 32-byte aligned and the operands 16-byte
// aligned; the ring tensor form (seq_kernel<true>) for wider heads; the fp32 CUDA-core form
// otherwise. Diagnostics: BITTTT_CUDA_TTT_SEQ_SIMT=1 forces the CUDA cores,
// BITTTT_CUDA_TTT_SEQ_RING=1 the ring form (timing comparisons in one binary).
void run_seq(const SeqArgs& a, cudaStream_t stream) {
    auto env_on = [](const char* name) {
        const char* v = std::getenv(name);
        return v && v[0] == '1';
    };
    static const bool no_tensor = env_on("BITTTT_CUDA_TTT_SEQ_SIMT");
    static const bool ring = env_on("BITTTT_CUDA_TTT_SEQ_RING");
    const bool tensor = !no_tensor && g_tf32 && a.d.Dh % 64 == 0 && detail::aligned(a.states, 32);
    const bool operands_aligned =
        detail::aligned(a.a1, 16) && detail::aligned(a.a2, 16) && detail::aligned(a.x, 16) &&
        (!a.backward || (detail::aligned(a.a3, 16) && detail::aligned(a.b3, 16)));
    const bool wide = tensor && !ring && a.d.Dh <= kWideMaxDh && operands_aligned;
    const dim3 grid(static_cast<unsigned>(a.d.P), static_cast<unsigned>(a.d.Dh / kSlab));
    if (seq_folds(a)) {
        switch (a.d.Dh / 64) {
            case 1:
                return launch_fold<1>(a, grid, stream);
            case 2:
                return launch_fold<2>(a, grid, stream);
            case 3:
                return launch_fold<3>(a, grid, stream);
            default:
                return launch_fold<4>(a, grid, stream);
        }
    }
    if (wide) {
        switch (a.d.Dh / 64) {
            case 1:
                return launch_wide<1>(a, grid, stream);
            case 2:
                return launch_wide<2>(a, grid, stream);
            case 3:
                return launch_wide<3>(a, grid, stream);
            default:
                return launch_wide<4>(a, grid, stream);
        }
    }
    const size_t smem = seq_smem_bytes(a.d.Dh);
    auto kernel = tensor ? seq_kernel<true> : seq_kernel<false>;
    check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(smem)),
               "ttt chunk: cudaFuncSetAttribute");
    kernel<<<grid, kSeqThreads, smem, stream>>>(a);
    check_launch("ttt chunk: seq_kernel");
}

// ---- unpacking ----

// Element idx of a [B·T, H·Dh] tensor: its row rh = (b·T + t)·H + h (that of η), its column j and
// its padded token p·nc·C + t (p = b·H + h).
struct Unpadded {
    int64_t rh, j, tok;
};

__device__ __forceinline__ Unpadded unpadded(int64_t idx, const Dims& d) {
    const int64_t j = idx % d.Dh, rh = idx / d.Dh, h = rh % d.H, row = rh / d.H;
    const int64_t b = row / d.T, t = row % d.T, p = b * d.H + h;
    return {rh, j, p * d.nc * d.C + t};
}

__global__ void unpack_y_kernel(float* y, const float* o, Dims d) {
    const int64_t idx = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
    if (idx >= d.elems()) return;
    const Unpadded u = unpadded(idx, d);
    y[idx] = o[u.tok * d.Dh + u.j];
}

// One thread per element: dq, dk and dv may be one buffer (reconstruct), so one thread does all
// three additions, in order.
__global__ void unpack_grads_kernel(float* dq, float* dk, float* dv, float* deta, const float* gq,
                                    const float* gk, const float* gv, const float* ge, Dims d) {
    const int64_t idx = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
    if (idx >= d.elems()) return;
    const Unpadded u = unpadded(idx, d);
    const int64_t src = u.tok * d.Dh + u.j;
    dq[idx] += gq[src];
    dk[idx] += gk[src];
    dv[idx] += gv[src];
    if (deta && u.j == 0) deta[u.rh] += ge[u.tok];
}

// In place (in_place_layout): dv += dX over the same [B·T, Dh] layout (16-byte steps; dv may be dq
// and dk, whose products are done by now) and dη += its per-token part.
__global__ void add_dv_kernel(float* dv, float* deta, const float* dx, const float* de, Dims d) {
    const int64_t i4 = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
    if (i4 * 4 >= d.elems()) return;
    float4 a = reinterpret_cast<float4*>(dv)[i4];
    const float4 b = reinterpret_cast<const float4*>(dx)[i4];
    a.x += b.x, a.y += b.y, a.z += b.z, a.w += b.w;
    reinterpret_cast<float4*>(dv)[i4] = a;
    if (deta && (i4 * 4) % d.Dh == 0) deta[i4 * 4 / d.Dh] += de[i4 * 4 / d.Dh];
}

void check_shape(const train::TttScanShape& s, const char* what) {
    check(s.B >= 1 && s.T >= 1 && s.H >= 1 && s.Dh >= 1 && s.chunk >= 1,
          ErrorKind::kInvalidArgument, "CUDA: {}: bad shape B={} T={} H={} Dh={} chunk={}", what,
          s.B, s.T, s.H, s.Dh, s.chunk);
    check(ttt_chunk_supported(s), ErrorKind::kInvalidArgument,
          "CUDA: {}: the chunked scan needs Dh a multiple of 32 in [64, 512] and chunk <= 64 "
          "(Dh={}, chunk={})",
          what, s.Dh, s.chunk);
    check(s.B * s.H * s.chunks() < (int64_t{1} << 30) &&
              s.B * s.H * s.chunks() * s.chunk * s.Dh < detail::kMaxDim * 4,
          ErrorKind::kInvalidArgument, "CUDA: {}: shape B={} T={} H={} Dh={} is too large", what,
          s.B, s.T, s.H, s.Dh);
}

unsigned blocks_for(int64_t n) {
    return static_cast<unsigned>((n + 255) / 256);
}

// ---- what the forward and the backward share ----
//
// One call of either: its dimensions, workspace, stream and stage timer; the start both passes
// make (the padded inputs, then per chunk K Kᵀ, Q Kᵀ → the mask M, R⁻¹, T = R⁻¹ diag(η) → Wk = T
// K); and the three shapes of batched product over all P·nc chunks, each one cuBLAS call and one
// timed "gemm" stage (per chunk: activations C×Dh, C×C matrices, states Dh×Dh).
class Pass {
  public:
    Pass(const train::TttScanShape& s, void* workspace, const Stream& stream, const char* what)
        : d(dims_of(s)),
          w(carve(d, static_cast<float*>(workspace))),
          st(raw(stream)),
          timer_(st, what),
          C_(static_cast<int>(d.C)),
          Dh_(static_cast<int>(d.Dh)),
          batch_(static_cast<int>(d.P * d.nc)),
          sa_(d.C * d.Dh),
          scc_(d.C * d.C),
          sdd_(d.Dh * d.Dh) {}

    // Packs q, k, v (and dy where given) unless `in_place` (in_place_layout), then builds M,
    // R⁻¹ and T. With q = k = v (reconstruct) one padded copy serves as K, Q and V.
    void start(const float* q, const float* k, const float* v, const float* dy, const float* eta,
               float eta_const, bool in_place) {
        direct = in_place;
        if (direct) {
            K = k, Q = q, V = v, dO = dy;
            eta_kernel<<<static_cast<unsigned>((d.tok() + 255) / 256), 256, 0, st>>>(
                w.e, eta, eta_const, d.tok());
            check_launch("ttt chunk: eta");
        } else {
            const bool same = q == k && v == k;
            K = w.k, Q = same ? w.k : w.q, V = same ? w.k : w.v, dO = w.dy;
            pack(d, w, q, k, v, dy, eta, eta_const, st);
        }
        mark("pack");
        cc(K, K, w.kk);
        if (Q != K) cc(Q, K, w.qk);
        prep_kernel<<<static_cast<unsigned>(batch_), kPrepThreads, 0, st>>>(
            w.m, w.rinv, w.tm, w.kk, Q != K ? w.qk : w.kk, w.e, d);
        check_launch("ttt chunk: prep");
        mark("prep");
    }

    // out = A Bᵀ (C×C; A, B activations).
    void cc(const float* A, const float* B, float* out) {
        product(false, true, C_, C_, Dh_, 1.0f, {A, Dh_, sa_}, {B, Dh_, sa_}, 0.0f, out, C_, scc_);
    }
    // out = op(M) X + β·out (C×Dh; M C×C with op(M) = Mᵀ where `trans`, X an activation).
    void mix(bool trans, const float* M, const float* X, float beta, float* out) {
        product(trans, false, C_, Dh_, C_, 1.0f, {M, C_, scc_}, {X, Dh_, sa_}, beta, out, Dh_, sa_);
    }
    // out = α·A op(S) + β·out (C×Dh; A an activation, S one Dh×Dh state per chunk with
    // op(S) = Sᵀ where `trans`).
    void state(float alpha, const float* A, bool trans, const float* S, float beta, float* out) {
        product(false, trans, C_, Dh_, Dh_, alpha, {A, Dh_, sa_}, {S, Dh_, sdd_}, beta, out, Dh_,
                sa_);
    }

    void mark(const char* stage) { timer_.mark(stage); }

    const Dims d;
    const Work w;
    const cudaStream_t st;
    // Padded copies, or the inputs themselves (`direct`); set by start().
    const float *K = nullptr, *Q = nullptr, *V = nullptr, *dO = nullptr;
    bool direct = false;

  private:
    void product(bool ta, bool tb, int m, int n, int k, float alpha, Mat A, Mat B, float beta,
                 float* out, int ldc, long long stride) {
        gemm_rm(st, ta, tb, m, n, k, alpha, A, B, beta, out, ldc, stride, batch_);
        mark("gemm");
    }

    StageTimer timer_;
    const int C_, Dh_, batch_;
    const long long sa_, scc_, sdd_;
};

}  // namespace

void ttt_chunk_set_tf32(bool on) {
    g_tf32 = on;
}

bool ttt_chunk_supported(const train::TttScanShape& s) {
    return s.Dh % 32 == 0 && s.Dh >= 64 && s.Dh <= 512 && s.chunk >= 1 && s.chunk <= kMaxChunk;
}

size_t ttt_chunk_workspace_bytes(const train::TttScanShape& s) {
    check_shape(s, "ttt_chunk_workspace_bytes");
    return static_cast<size_t>(carve(dims_of(s), nullptr).floats) * sizeof(float);
}

void ttt_chunk_forward(float* y, float* checkpoints, const float* q, const float* k, const float* v,
                       const float* eta, float eta_const, const train::TttScanShape& s,
                       void* workspace, const Stream& stream) {
    check_shape(s, "ttt_chunk_forward");
    check(y && checkpoints && q && k && v && workspace, ErrorKind::kInvalidArgument,
          "CUDA: ttt_chunk_forward: null buffer");
    Pass c(s, workspace, stream, "forward");
    const Work& w = c.w;
    c.start(q, k, v, nullptr, eta, eta_const, in_place_layout(c.d, {q, k, v}, {y}));
    // The state from chunk to chunk: checkpoints, and U' (folded: from K, T and V; otherwise
    // over U = T V, with Wk = T K).
    SeqArgs seq{w.wk, w.x1, c.K, nullptr, nullptr, checkpoints, c.d, false};
    seq.k = c.K, seq.tmat = w.tm, seq.b1 = c.V;
    if (!seq_folds(seq)) {
        c.mix(false, w.tm, c.K, 0.0f, w.wk);
        c.mix(false, w.tm, c.V, 0.0f, w.x1);
    }
    run_seq(seq, c.st);
    c.mark("seq");
    // O = Q S0 + M U' (S0 = Wᵀ: Q Wᵀ), straight into y where the layout allows.
    float* o = c.direct ? y : w.x2;
    c.state(1.0f, c.Q, true, checkpoints, 0.0f, o);
    c.mix(false, w.m, w.x1, 1.0f, o);
    if (!c.direct) {
        unpack_y_kernel<<<blocks_for(c.d.elems()), 256, 0, c.st>>>(y, w.x2, c.d);
        check_launch("ttt chunk: unpack y");
        c.mark("unpack");
    }
}

void ttt_chunk_backward(float* dq, float* dk, float* dv, float* deta, const float* dy,
                        const float* checkpoints, const float* q, const float* k, const float* v,
                        const float* eta, float eta_const, const train::TttScanShape& s,
                        void* workspace, const Stream& stream) {
    check_shape(s, "ttt_chunk_backward");
    check(dq && dk && dv && dy && checkpoints && q && k && v && workspace,
          ErrorKind::kInvalidArgument, "CUDA: ttt_chunk_backward: null buffer");
    Pass c(s, workspace, stream, "backward");
    const Work& w = c.w;
    c.start(q, k, v, dy, eta, eta_const,
            in_place_layout(c.d, {q, k, v, dy, checkpoints}, {dq, dk, dv, eta ? deta : nullptr}));
    const float *K = c.K, *Q = c.Q, *dO = c.dO;
    c.mix(true, w.m, dO, 0.0f, w.x1);  // Mᵀ dO
    // G from chunk to chunk (last to first): G at every chunk's end, and dU' (over Mᵀ dO).
    SeqArgs seq{K, w.x1, w.wk, Q, dO, w.gend, c.d, true};
    if (Q == K) seq.k = K, seq.tmat = w.tm;                  // G += Kᵀ (dO − Tᵀ dU'): folded
    if (!seq_folds(seq)) c.mix(false, w.tm, K, 0.0f, w.wk);  // Wk = T K
    run_seq(seq, c.st);
    c.mark("seq");
    const float* dU = w.x1;
    // X = V − K S0 (= V − K Wᵀ), U' = T X.
    check_cuda(cudaMemcpyAsync(w.x2, c.V, static_cast<size_t>(c.d.act()) * sizeof(float),
                               cudaMemcpyDeviceToDevice, c.st),
               "ttt chunk: copy V");
    c.mark("copyV");
    c.state(-1.0f, K, true, checkpoints, 1.0f, w.x2);
    c.mix(false, w.tm, w.x2, 0.0f, w.up);
    // Z = R⁻ᵀ dU'; Z U'ᵀ and dO U'ᵀ.
    c.mix(true, w.rinv, dU, 0.0f, w.z);
    c.cc(w.z, w.up, w.zu);
    c.cc(dO, w.up, w.dou);
    // q = k with dq = dk (reconstruct, in place): dK + dQ = (Gs + dM + dMᵀ) K + (dO − dX) S0ᵀ +
    // U' Gᵀ, folded by prep2 into three products.
    const bool fold = c.direct && dq == dk && Q == K;
    prep2_kernel<<<static_cast<unsigned>(c.d.P * c.d.nc), 256, 0, c.st>>>(
        w.gs, w.dm, w.de, w.z, fold ? w.dqp : nullptr, w.zu, w.dou, w.kk, w.x2, dO, w.e, c.d);
    check_launch("ttt chunk: prep2");
    c.mark("prep2");
    const float* dX = w.z;
    if (fold) {
        c.mix(false, w.gs, K, 1.0f, dk);
        c.state(1.0f, w.dqp, false, checkpoints, 1.0f, dk);
        c.state(1.0f, w.up, true, w.gend, 1.0f, dk);
    } else {
        // In place, dK and dQ accumulate straight into dk and dq (β = 1: the contract's +=; dq,
        // dk and dv may be one buffer, every product is ordered on the stream).
        float* gk = c.direct ? dk : w.dkp;
        float* gq = c.direct ? dq : w.dqp;
        const float beta0 = c.direct ? 1.0f : 0.0f;
        // dK = Gs K + dMᵀ Q − dX S0ᵀ + U' Gᵀ   (S0ᵀ = W, the checkpoint as stored)
        c.mix(false, w.gs, K, beta0, gk);
        c.mix(true, w.dm, Q, 1.0f, gk);
        c.state(-1.0f, dX, false, checkpoints, 1.0f, gk);
        c.state(1.0f, w.up, true, w.gend, 1.0f, gk);
        // dQ = dM K + dO S0ᵀ.
        c.mix(false, w.dm, K, beta0, gq);
        c.state(1.0f, dO, false, checkpoints, 1.0f, gq);
    }
    if (c.direct) {
        add_dv_kernel<<<blocks_for(c.d.elems() / 4), 256, 0, c.st>>>(dv, eta ? deta : nullptr, dX,
                                                                     w.de, c.d);
        check_launch("ttt chunk: dv");
    } else {
        unpack_grads_kernel<<<blocks_for(c.d.elems()), 256, 0, c.st>>>(
            dq, dk, dv, eta ? deta : nullptr, w.dqp, w.dkp, dX, w.de, c.d);
        check_launch("ttt chunk: unpack gradients");
    }
    c.mark("unpack");
}

}  // namespace bitttt::cuda
