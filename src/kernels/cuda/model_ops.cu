// The model-forward kernels of model_kernels.hpp: the TTT scan of both rules, the delta rule's
// normalization and step sizes, embedding lookups and the fp32 GEMV.
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/model_kernels.hpp"
#include "kernels/cuda/pdl.cuh"

namespace bitttt::cuda {
namespace {

using detail::raw;

constexpr int kWarpsPerBlock = 8;
constexpr int kThreads = kWarpsPerBlock * 32;
constexpr float kTttNormEps = 1e-6f;  // as src/model/forward.cpp

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

unsigned blocks_for_warps(int64_t warps) {
    return static_cast<unsigned>((warps + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

// ---- the delta-rule scan ----
// Warp r owns row r of W (head h = r / dh, row i = r % dh). Lane l holds the columns
// j = l + 32 s (s < kPer) in registers; kPer = 0 keeps the row in global memory (Dh > 2048).
// Per token: z = W_i · k̂ (warp sum), c = −η (z − v_i), W_i += c k̂, o_i = W_i · q̂ after
// (or before) the update: exactly the CPU row loop of delta_rule_impl.hpp.
template <int kPer>
__global__ void __launch_bounds__(kThreads) delta_scan_kernel(const DeltaScanArgs a) {
    detail::wait_for_previous_kernel();  // everything read may come from it (PDL)
    detail::allow_next_kernel();
    const int lane = threadIdx.x & 31;
    const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
    const int64_t dh = a.head_dim;
    if (r >= a.heads * dh) return;
    const int64_t h = r / dh, i = r % dh, off = h * dh;
    float* wr = a.w + r * dh;
    float reg[kPer > 0 ? kPer : 1];
    if constexpr (kPer > 0) {
#pragma unroll
        for (int s = 0; s < kPer; ++s) {
            const int64_t j = lane + 32 * s;
            reg[s] = j < dh ? wr[j] : 0.0f;
        }
    }
    // W · vec for this row (every lane gets the total).
    auto row_dot = [&](const float* vec) {
        float acc = 0.0f;
        if constexpr (kPer > 0) {
#pragma unroll
            for (int s = 0; s < kPer; ++s) {
                const int64_t j = lane + 32 * s;
                if (j < dh) acc = fmaf(reg[s], vec[j], acc);
            }
        } else {
            for (int64_t j = lane; j < dh; j += 32) acc = fmaf(wr[j], vec[j], acc);
        }
        return warp_sum(acc);
    };
    for (int64_t t = 0; t < a.tokens; ++t) {
        const float* k = a.k + t * a.k_stride + off;
        const float* q = a.q ? a.q + t * a.q_stride + off : k;
        const float z = row_dot(k);
        const float c = -a.eta[t * a.eta_stride + h] * (z - a.v[t * a.v_stride + off + i]);
        float o = 0.0f;
        if (!a.read_after_update) o = a.q ? row_dot(q) : z;
        if constexpr (kPer > 0) {
#pragma unroll
            for (int s = 0; s < kPer; ++s) {
                const int64_t j = lane + 32 * s;
                if (j < dh) reg[s] = fmaf(c, k[j], reg[s]);
            }
        } else {
            for (int64_t j = lane; j < dh; j += 32) wr[j] = fmaf(c, k[j], wr[j]);
        }
        if (a.read_after_update) o = row_dot(q);
        if (lane == 0) a.out[t * a.out_stride + off + i] = o;
    }
    if constexpr (kPer > 0) {
#pragma unroll
        for (int s = 0; s < kPer; ++s) {
            const int64_t j = lane + 32 * s;
            if (j < dh) wr[j] = reg[s];
        }
    }
}

// ---- the delta rule's per-head pieces ----

__global__ void __launch_bounds__(kThreads)
    l2_normalize_kernel(float* x, int64_t n, int64_t stride, int64_t heads, int64_t dh) {
    detail::wait_for_previous_kernel();  // everything read may come from it (PDL)
    detail::allow_next_kernel();
    const int lane = threadIdx.x & 31;
    const int64_t idx = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
    if (idx >= n * heads) return;
    float* v = x + (idx / heads) * stride + (idx % heads) * dh;
    float ss = 0.0f;
    for (int64_t j = lane; j < dh; j += 32) ss = fmaf(v[j], v[j], ss);
    ss = warp_sum(ss);
    const float inv = __fdiv_rn(1.0f, __fadd_rn(__fsqrt_rn(ss), kTttNormEps));
    for (int64_t j = lane; j < dh; j += 32) v[j] = __fmul_rn(v[j], inv);
}

__global__ void __launch_bounds__(kThreads)
    step_size_kernel(const float* lr_w, const float* lr_b, int64_t heads, int64_t d, const float* u,
                     int64_t n, float inner_lr, float* eta) {
    detail::wait_for_previous_kernel();  // everything read may come from it (PDL)
    detail::allow_next_kernel();
    const int lane = threadIdx.x & 31;
    const int64_t idx = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
    if (idx >= n * heads) return;
    const int64_t t = idx / heads, h = idx % heads;
    const float* w = lr_w + h * d;
    const float* ut = u + t * d;
    float acc = 0.0f;
    for (int64_t j = lane; j < d; j += 32) acc = fmaf(w[j], ut[j], acc);
    acc = warp_sum(acc);
    if (lane == 0) eta[idx] = __fdiv_rn(inner_lr, 1.0f + expf(-(acc + lr_b[h])));
}

// ---- embeddings and the fp32 GEMV ----

__global__ void embed_kernel(const void* table, bool bf16, int64_t d, const int32_t* ids, int64_t n,
                             float* x) {
    detail::wait_for_previous_kernel();  // everything read may come from it (PDL)
    detail::allow_next_kernel();
    for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < n * d;
         idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t t = idx / d, j = idx % d;
        const int64_t at = static_cast<int64_t>(ids[t]) * d + j;
        x[idx] = bf16 ? __uint_as_float(
                            static_cast<uint32_t>(static_cast<const uint16_t*>(table)[at]) << 16)
                      : static_cast<const float*>(table)[at];
    }
}

// One warp per row, four independent loads in flight per lane.
__global__ void __launch_bounds__(kThreads)
    f32_gemv_kernel(const float* __restrict__ w, int64_t rows, int64_t cols,
                    const float* __restrict__ x, float* __restrict__ y) {
    detail::wait_for_previous_kernel();  // everything read may come from it (PDL)
    detail::allow_next_kernel();
    const int lane = threadIdx.x & 31;
    const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
    if (row >= rows) return;
    const float* wr = w + row * cols;
    float acc = 0.0f;
    int64_t j = lane;
    for (; j + 96 < cols; j += 128) {
        const float w0 = __ldg(wr + j), w1 = __ldg(wr + j + 32), w2 = __ldg(wr + j + 64),
                    w3 = __ldg(wr + j + 96);
        acc = fmaf(w0, __ldg(x + j), acc);
        acc = fmaf(w1, __ldg(x + j + 32), acc);
        acc = fmaf(w2, __ldg(x + j + 64), acc);
        acc = fmaf(w3, __ldg(x + j + 96), acc);
    }
    for (; j < cols; j += 32) acc = fmaf(__ldg(wr + j), __ldg(x + j), acc);
    acc = warp_sum(acc);
    if (lane == 0) y[row] = acc;
}

}  // namespace

void delta_rule_scan(const DeltaScanArgs& a, const Stream& stream) {
    check(
        a.heads >= 1 && a.head_dim >= 1 && a.tokens >= 0 && a.heads * a.head_dim <= detail::kMaxDim,
        ErrorKind::kInvalidArgument,
        "CUDA: delta_rule_scan: bad shape (heads {}, head_dim {}, tokens {})", a.heads, a.head_dim,
        a.tokens);
    if (a.tokens == 0) return;
    check(a.w && a.k && a.v && a.eta && a.out, ErrorKind::kInvalidArgument,
          "CUDA: delta_rule_scan: null state, input or output");
    check(a.heads == 1 || a.eta_stride >= a.heads, ErrorKind::kDimensionMismatch,
          "CUDA: delta_rule_scan: eta stride {} for {} heads", a.eta_stride, a.heads);
    check(a.out != a.k && a.out != a.v && a.out != a.q, ErrorKind::kInvalidArgument,
          "CUDA: delta_rule_scan: the output aliases an input");
    const unsigned blocks = blocks_for_warps(a.heads * a.head_dim);
    const int64_t per_lane = (a.head_dim + 31) / 32;
    cudaStream_t s = raw(stream);
    auto kernel = per_lane <= 2    ? delta_scan_kernel<2>
                  : per_lane <= 8  ? delta_scan_kernel<8>
                  : per_lane <= 32 ? delta_scan_kernel<32>
                  : per_lane <= 64 ? delta_scan_kernel<64>
                                   : delta_scan_kernel<0>;
    detail::launch_pdl("delta_scan_kernel", kernel, dim3(blocks), dim3(kThreads), 0, s, a);
}

void l2_normalize_heads(float* x, int64_t n, int64_t stride, int64_t heads, int64_t dh,
                        const Stream& stream) {
    check(n >= 0 && heads >= 1 && dh >= 1 && n * heads <= detail::kMaxDim,
          ErrorKind::kInvalidArgument, "CUDA: l2_normalize_heads: bad shape ({} x {} x {})", n,
          heads, dh);
    if (n == 0) return;
    check(x != nullptr && (n == 1 || stride >= heads * dh), ErrorKind::kInvalidArgument,
          "CUDA: l2_normalize_heads: null input or stride {} below {}", stride, heads * dh);
    detail::launch_pdl("l2_normalize_kernel", l2_normalize_kernel,
                       dim3(blocks_for_warps(n * heads)), dim3(kThreads), 0, raw(stream), x, n,
                       stride, heads, dh);
}

void delta_step_sizes(const float* lr_w, const float* lr_b, int64_t heads, int64_t d,
                      const float* u, int64_t n, float inner_lr, float* eta, const Stream& stream) {
    check(n >= 0 && heads >= 1 && d >= 1 && n * heads <= detail::kMaxDim,
          ErrorKind::kInvalidArgument, "CUDA: delta_step_sizes: bad shape ({} x {} x {})", n, heads,
          d);
    if (n == 0) return;
    check(lr_w && lr_b && u && eta, ErrorKind::kInvalidArgument,
          "CUDA: delta_step_sizes: null buffer");
    detail::launch_pdl("step_size_kernel", step_size_kernel, dim3(blocks_for_warps(n * heads)),
                       dim3(kThreads), 0, raw(stream), lr_w, lr_b, heads, d, u, n, inner_lr, eta);
}

void embed_lookup(const void* table, bool bf16, int64_t d, const int32_t* ids, int64_t n, float* x,
                  const Stream& stream) {
    check(n >= 0 && d >= 1 && n * d <= detail::kMaxDim * 64, ErrorKind::kInvalidArgument,
          "CUDA: embed_lookup: bad shape ({} x {})", n, d);
    if (n == 0) return;
    check(table && ids && x, ErrorKind::kInvalidArgument, "CUDA: embed_lookup: null buffer");
    const auto blocks = static_cast<unsigned>(std::clamp<int64_t>((n * d + 255) / 256, 1, 65536));
    detail::launch_pdl("embed_kernel", embed_kernel, dim3(blocks), dim3(256), 0, raw(stream), table,
                       bf16, d, ids, n, x);
}

void f32_gemv(const float* w, int64_t rows, int64_t cols, const float* x, float* y,
              const Stream& stream) {
    check(rows >= 0 && rows <= detail::kMaxDim && cols >= 0 && cols <= detail::kMaxDim,
          ErrorKind::kInvalidArgument, "CUDA: f32_gemv: shape [{}, {}] is out of range", rows,
          cols);
    if (rows == 0) return;
    check(w && x && y, ErrorKind::kInvalidArgument, "CUDA: f32_gemv: null buffer");
    detail::launch_pdl("f32_gemv_kernel", f32_gemv_kernel, dim3(blocks_for_warps(rows)),
                       dim3(kThreads), 0, raw(stream), w, rows, cols, x, y);
}

}  // namespace bitttt::cuda
