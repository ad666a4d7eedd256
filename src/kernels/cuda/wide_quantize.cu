// Decode-time norm/SiLU + int8 quantization of one row over several blocks (model_kernels.hpp).
//
// Block b owns columns [1024 b, 1024 b + 1024) (4 per thread, in registers). The row statistics
// need every block, so the blocks meet at a sense-reversing grid barrier in the workspace:
//   rmsnorm:  Σx² partials -> barrier -> inv -> y = x·inv·w -> max|y| partials -> barrier
//   silu/q:   max|v| partials -> barrier
// then each block quantizes its columns, and the last block to finish sums the blocks' Σq.
// Co-residency of all blocks (a grid barrier's requirement) holds because there are at most 64
// blocks, and with Programmatic Dependent Launch the next kernel starts only after every block of
// this one has started (each calls allow_next_kernel()).
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/model_kernels.hpp"
#include "kernels/cuda/pdl.cuh"

namespace bitttt::cuda {
namespace {

using detail::raw;

constexpr int kThreads = 256;
constexpr int kPer = 4;
constexpr int kCols = kThreads * kPer;  // per block
constexpr int kMaxBlocks = static_cast<int>(kMaxWideCols / kCols);

struct Workspace {
    unsigned count;       // blocks arrived at the current barrier
    unsigned generation;  // bumped by the last block to arrive
    unsigned done;        // blocks finished quantizing
    unsigned pad;
    double ss[kMaxBlocks];
    float mx[kMaxBlocks];
    int qs[kMaxBlocks];
};
static_assert(sizeof(Workspace) <= kWideWorkspaceBytes, "workspace too small");

template <typename T, typename Op>
__device__ T block_reduce(T v, Op op) {
    __shared__ T scratch[kThreads / 32];
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
        v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = scratch[0];
#pragma unroll
    for (int i = 1; i < kThreads / 32; ++i) v = op(v, scratch[i]);
    return v;
}

struct Sum {
    template <typename T>
    __device__ T operator()(T a, T b) const {
        return a + b;
    }
};
struct Max {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// Every block waits here until all gridDim.x blocks have arrived; writes made before it by any
// block are visible after it.
__device__ void grid_barrier(Workspace* w) {
    __syncthreads();
    if (threadIdx.x == 0) {
        volatile unsigned* generation = &w->generation;
        const unsigned g = *generation;
        __threadfence();
        if (atomicAdd(&w->count, 1u) == gridDim.x - 1) {
            atomicExch(&w->count, 0u);
            __threadfence();
            atomicAdd(&w->generation, 1u);
        } else {
            while (*generation == g) {
            }
        }
        __threadfence();
    }
    __syncthreads();
}

__device__ __forceinline__ float silu_times(float g, float u) {
    return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
}

// kMode: 0 quantize a; 1 rmsnorm(a; weight b) then quantize; 2 silu(a) * b then quantize.
template <int kMode>
__global__ void __launch_bounds__(kThreads)
    wide_quantize_kernel(const float* a, const float* b, int64_t k, int64_t k_pad, float eps,
                         int8_t* q, float* scale, int32_t* sum, Workspace* work) {
    const int64_t base = static_cast<int64_t>(blockIdx.x) * kCols + threadIdx.x;
    float weight[kMode == 1 ? kPer : 1];
    if constexpr (kMode == 1) {  // constant: read before the previous kernel is done (PDL)
#pragma unroll
        for (int s = 0; s < kPer; ++s) {
            const int64_t j = base + s * kThreads;
            weight[s] = j < k ? b[j] : 0.0f;
        }
    }
    detail::wait_for_previous_kernel();
    detail::allow_next_kernel();
    float v[kPer];
#pragma unroll
    for (int s = 0; s < kPer; ++s) {
        const int64_t j = base + s * kThreads;
        v[s] = 0.0f;
        if (j < k) v[s] = kMode == 2 ? silu_times(a[j], b[j]) : a[j];
    }
    const int blocks = static_cast<int>(gridDim.x);
    if constexpr (kMode == 1) {
        double ss = 0.0;
#pragma unroll
        for (int s = 0; s < kPer; ++s) ss += static_cast<double>(v[s]) * v[s];
        ss = block_reduce(ss, Sum{});
        if (threadIdx.x == 0) work->ss[blockIdx.x] = ss;
        grid_barrier(work);
        double total = 0.0;
        for (int i = 0; i < blocks; ++i) total += __ldcg(&work->ss[i]);
        const float mean = __double2float_rn(__ddiv_rn(total, static_cast<double>(k)));
        const float inv = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(mean, eps)));
#pragma unroll
        for (int s = 0; s < kPer; ++s) v[s] = __fmul_rn(__fmul_rn(v[s], inv), weight[s]);
    }
    float absmax = 0.0f;
#pragma unroll
    for (int s = 0; s < kPer; ++s) absmax = fmaxf(absmax, fabsf(v[s]));
    absmax = block_reduce(absmax, Max{});
    if (threadIdx.x == 0) work->mx[blockIdx.x] = absmax;
    grid_barrier(work);
    absmax = 0.0f;
    for (int i = 0; i < blocks; ++i) absmax = fmaxf(absmax, __ldcg(&work->mx[i]));
    const float gamma = fmaxf(absmax, 1e-5f);
    const float r127 = __fdiv_rn(127.0f, gamma);
    int total = 0;
#pragma unroll
    for (int s = 0; s < kPer; ++s) {
        const int64_t j = base + s * kThreads;
        if (j >= k_pad) continue;
        int value = 0;
        if (j < k) {
            float r = rintf(__fmul_rn(v[s], r127));
            if (!(r == r)) r = 0.0f;
            value = static_cast<int>(fminf(fmaxf(r, -127.0f), 127.0f));
        }
        q[j] = static_cast<int8_t>(value);
        total += value;
    }
    total = block_reduce(total, Sum{});
    if (threadIdx.x == 0) {
        work->qs[blockIdx.x] = total;
        __threadfence();
        if (atomicAdd(&work->done, 1u) == gridDim.x - 1) {  // the last block: Σq, in block order
            __threadfence();
            int all = 0;
            for (int i = 0; i < blocks; ++i) all += __ldcg(&work->qs[i]);
            *sum = all;
            *scale = __fdiv_rn(gamma, 127.0f);
            atomicExch(&work->done, 0u);
        }
    }
}

template <int kMode>
void launch(const char* what, const float* a, const float* b, int64_t k, float eps,
            const QuantizedActivations& out, void* workspace, const Stream& stream) {
    check(k >= 1 && k <= kMaxWideCols, ErrorKind::kInvalidArgument,
          "CUDA: {}: row length {} is not in [1, {}]", what, k, kMaxWideCols);
    check(a != nullptr && (kMode == 0 || b != nullptr) && workspace != nullptr,
          ErrorKind::kInvalidArgument, "CUDA: {}: null input or workspace", what);
    check(out.q != nullptr && out.scale != nullptr && out.sum != nullptr,
          ErrorKind::kInvalidArgument, "CUDA: {}: null output", what);
    const int64_t k_pad = kernels::packed_cols(k);
    const auto blocks = static_cast<unsigned>((k_pad + kCols - 1) / kCols);
    detail::launch_pdl(what, wide_quantize_kernel<kMode>, dim3(blocks), dim3(kThreads), 0,
                       raw(stream), a, b, k, k_pad, eps, out.q, out.scale, out.sum,
                       static_cast<Workspace*>(workspace));
}

}  // namespace

void rmsnorm_quantize_wide(const float* x, int64_t d, const float* weight, float eps,
                           const QuantizedActivations& out, void* workspace, const Stream& stream) {
    launch<1>("rmsnorm_quantize_wide", x, weight, d, eps, out, workspace, stream);
}

void silu_mul_quantize_wide(const float* gate, const float* up, int64_t n,
                            const QuantizedActivations& out, void* workspace,
                            const Stream& stream) {
    launch<2>("silu_mul_quantize_wide", gate, up, n, 0.0f, out, workspace, stream);
}

void quantize_activations_wide(const float* x, int64_t k, const QuantizedActivations& out,
                               void* workspace, const Stream& stream) {
    launch<0>("quantize_activations_wide", x, nullptr, k, 0.0f, out, workspace, stream);
}

}  // namespace bitttt::cuda
