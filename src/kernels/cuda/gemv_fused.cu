// The decode GEMV with its input RMSNorm + int8 quantization fused in (model_kernels.hpp).
//
// The GEMV part is the shared loop of gemv_core.cuh (see there and ternary_matmul.cu for the packed
// layout): a team of W warps streams one 16-row group; weights are fetched before waiting for the
// previous kernel (PDL). Before the dot products, every block of 256 threads reads the
// float row (kPer values per thread, in registers), reduces Σx² (double) and max|y|, writes the
// quantized row to shared memory and reduces Σq; the dot products then read activations from
// shared memory.
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/gemv_core.cuh"
#include "kernels/cuda/model_kernels.hpp"
#include "kernels/cuda/pdl.cuh"

namespace bitttt::cuda {
namespace {

using detail::raw;

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kMaxTeamWarps = 8;

struct Matrix {
    const uint4* codes;
    float* y;
    int32_t rows;
    float scale;
};
struct Params {
    Matrix mat[kMaxGemvBatch];
    int32_t group_end[kMaxGemvBatch];
    int32_t count;
    int32_t groups;
    int32_t kb;  // 16-column blocks
    int32_t team_warps;
    const float* a;
    const float* norm;  // null: no RMSNorm
    int32_t k;
    float eps;
    bool accumulate;
};

template <typename T, typename Op>
__device__ T block_reduce(T v, Op op, T* scratch) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
        v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
    __syncthreads();
    if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
    __syncthreads();
    v = scratch[0];
#pragma unroll
    for (int i = 1; i < kWarps; ++i) v = op(v, scratch[i]);
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

template <int kPer>
__global__ void __launch_bounds__(kThreads) fused_gemv_kernel(const Params p) {
    extern __shared__ uint4 xs4[];  // the quantized row: kb x 16 bytes
    __shared__ double dscratch[kWarps];
    __shared__ float fscratch[kWarps];
    __shared__ int iscratch[kWarps];
    const int team_threads = p.team_warps * 32;
    const int teams_per_block = blockDim.x / team_threads;
    const int team = threadIdx.x / team_threads;
    const int t = threadIdx.x % team_threads;
    int group = blockIdx.x * teams_per_block + team;
    const bool active = group < p.groups;
    int mi = 0;
#pragma unroll
    for (int j = 0; j < kMaxGemvBatch - 1; ++j)
        if (j + 1 < p.count && group >= p.group_end[j]) mi = j + 1;
    if (mi > 0) group -= p.group_end[mi - 1];
    Matrix mat = p.mat[0];
#pragma unroll
    for (int j = 1; j < kMaxGemvBatch; ++j)
        if (mi == j) mat = p.mat[j];

    const int total = active ? p.kb * 4 : 0;
    const uint4* group_codes[1] = {mat.codes + (active ? static_cast<int64_t>(group) * total : 0)};
    detail::RowGroupStream<1> rows;
    rows.start(group_codes, total, team_threads, t);
    detail::wait_for_previous_kernel();
    detail::allow_next_kernel();

    // ---- the row: RMSNorm (optional) and int8 quantization, into shared memory ----
    const int k = p.k;
    float v[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
        const int j = threadIdx.x + i * kThreads;
        v[i] = j < k ? p.a[j] : 0.0f;
    }
    if (p.norm != nullptr) {
        double ss = 0.0;
#pragma unroll
        for (int i = 0; i < kPer; ++i) ss += static_cast<double>(v[i]) * v[i];
        ss = block_reduce(ss, Sum{}, dscratch);
        const float mean = __double2float_rn(__ddiv_rn(ss, static_cast<double>(k)));
        const float inv = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(mean, p.eps)));
#pragma unroll
        for (int i = 0; i < kPer; ++i) {
            const int j = threadIdx.x + i * kThreads;
            if (j < k) v[i] = __fmul_rn(__fmul_rn(v[i], inv), p.norm[j]);
        }
    }
    float absmax = 0.0f;
#pragma unroll
    for (int i = 0; i < kPer; ++i) absmax = fmaxf(absmax, fabsf(v[i]));
    absmax = block_reduce(absmax, Max{}, fscratch);
    const float gamma = fmaxf(absmax, 1e-5f);
    const float r127 = __fdiv_rn(127.0f, gamma);
    int8_t* xq = reinterpret_cast<int8_t*>(xs4);
    const int k_pad = p.kb * 16;
    int qsum = 0;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
        const int j = threadIdx.x + i * kThreads;
        if (j >= k_pad) continue;
        const int value = j < k ? detail::quantize_int8(v[i], r127) : 0;
        xq[j] = static_cast<int8_t>(value);
        qsum += value;
    }
    qsum = block_reduce(qsum, Sum{}, iscratch);  // its __syncthreads also publishes xq
    const float act_scale = __fdiv_rn(gamma, 127.0f);

    // ---- the GEMV over the shared row ----
    const uint4* xs = xs4;
    auto act = [xs](int u, bool valid) { return valid ? xs[u >> 2] : make_uint4(0, 0, 0, 0); };
    rows.run(act);
    rows.reduce_lanes();
    const int acc0 = rows.acc[0][0], acc1 = rows.acc[0][1], acc2 = rows.acc[0][2],
              acc3 = rows.acc[0][3];
    const int lane = threadIdx.x & 31;
    auto store = [&](int64_t row, int sum) {
        if (row >= mat.rows) return;
        const float value = detail::rescale(sum, qsum, mat.scale, act_scale);
        mat.y[row] = p.accumulate ? __fadd_rn(mat.y[row], value) : value;
    };
    if (p.team_warps == 1) {
        if (active && lane < 4) {
            const int sums[4] = {acc0, acc1, acc2, acc3};
#pragma unroll
            for (int i = 0; i < 4; ++i)
                store(static_cast<int64_t>(group) * 16 + lane * 4 + i, sums[i]);
        }
        return;
    }
    __shared__ int partial[kMaxTeamWarps][16];
    const int warp = threadIdx.x >> 5;
    if (lane < 4) {
        partial[warp][lane * 4 + 0] = acc0;
        partial[warp][lane * 4 + 1] = acc1;
        partial[warp][lane * 4 + 2] = acc2;
        partial[warp][lane * 4 + 3] = acc3;
    }
    __syncthreads();
    if (active && t < 16) {
        const int first = team * p.team_warps;
        int sum = 0;
        for (int wi = 0; wi < p.team_warps; ++wi) sum += partial[first + wi][t];
        store(static_cast<int64_t>(group) * 16 + t, sum);
    }
}

template <int kPer>
int64_t resident_warps(size_t smem) {
    int sms = 0, blocks = 0;
    detail::check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0),
                       "cudaDeviceGetAttribute");
    detail::check_cuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                           &blocks, fused_gemv_kernel<kPer>, kThreads, smem),
                       "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
    return static_cast<int64_t>(sms) * std::max(blocks, 1) * kWarps;
}

}  // namespace

void ternary_gemv_fused(const kernels::TernaryWeights* w, float* const* y, int count,
                        const float* a, int64_t k, const float* norm_weight, float eps,
                        bool accumulate, const Stream& stream) {
    check(w != nullptr && y != nullptr && count >= 1 && count <= kMaxGemvBatch,
          ErrorKind::kInvalidArgument, "CUDA: ternary_gemv_fused: {} matrices (1..{})", count,
          kMaxGemvBatch);
    check(k >= 1 && k <= kMaxFusedGemvCols && a != nullptr, ErrorKind::kInvalidArgument,
          "CUDA: ternary_gemv_fused: row of {} values (1..{}) or null input", k, kMaxFusedGemvCols);
    Params p{};
    int64_t groups = 0;
    for (int j = 0; j < count; ++j) {
        check(w[j].cols == k && w[j].rows >= 0 && w[j].rows <= (int64_t{1} << 30) &&
                  w[j].codes != nullptr && detail::aligned(w[j].codes, 16),
              ErrorKind::kInvalidArgument,
              "CUDA: ternary_gemv_fused: matrix {} is [{}, {}] (null or misaligned codes?), the "
              "row has {} values",
              j, w[j].rows, w[j].cols, k);
        check(y[j] != nullptr || w[j].rows == 0, ErrorKind::kInvalidArgument,
              "CUDA: ternary_gemv_fused: null output {}", j);
        p.mat[j] = {reinterpret_cast<const uint4*>(w[j].codes), y[j],
                    static_cast<int32_t>(w[j].rows), w[j].scale};
        groups += kernels::packed_rows(w[j].rows) / kernels::kRowGroup;
        p.group_end[j] = static_cast<int32_t>(groups);
    }
    if (groups == 0) return;
    p.count = count;
    p.groups = static_cast<int32_t>(groups);
    p.kb = static_cast<int32_t>(kernels::packed_cols(k) / kernels::kColBlock);
    p.a = a;
    p.norm = norm_weight;
    p.k = static_cast<int32_t>(k);
    p.eps = eps;
    p.accumulate = accumulate;
    const size_t smem = static_cast<size_t>(p.kb) * 16;
    const int64_t per = (kernels::packed_cols(k) + kThreads - 1) / kThreads;
    auto kernel = per <= 8    ? fused_gemv_kernel<8>
                  : per <= 32 ? fused_gemv_kernel<32>
                              : fused_gemv_kernel<64>;
    static const int64_t resident[3] = {resident_warps<8>(16384), resident_warps<32>(16384),
                                        resident_warps<64>(16384)};
    const int64_t warps = resident[per <= 8 ? 0 : per <= 32 ? 1 : 2];
    const int tw = detail::gemv_team_warps(groups, int64_t{p.kb} * 4, warps, kMaxTeamWarps);
    p.team_warps = tw;
    const int64_t teams_per_block = kWarps / tw;
    const auto blocks = static_cast<unsigned>((groups + teams_per_block - 1) / teams_per_block);
    detail::launch_pdl("fused_gemv_kernel", kernel, dim3(blocks), dim3(kThreads), smem, raw(stream),
                       p);
}

}  // namespace bitttt::cuda
