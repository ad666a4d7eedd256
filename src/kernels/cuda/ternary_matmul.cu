// Ternary x int8 products on the GPU: the decode GEMV (m = 1) and a tiled GEMM for prompts.
//
// Both read the packed layout of kernels/cpu/ternary.hpp as it is. In a 64-byte block (16 rows of
// a row group x 16 columns), the 32-bit word r holds row r's 16 codes; (word >> 2s) & 0x03030303
// are the codes of columns 4s..4s+3 (byte j = column 4s+j), i.e. exactly one dp4a operand against
// the 32-bit word s of the 16 activation bytes of those columns. A 16-byte load of codes therefore
// holds 4 rows x 16 columns and feeds 16 dp4a with one 16-byte load of activations.
//
// Codes are c = w + 1, so Σ c·x = Σ w·x + Σ x: the products subtract the per-token activation sum
// (QuantizedActivations::sum, computed by the quantization kernels) once per output. Integer sums
// are exact, the float rescale is float(acc) * (beta * act_scale) with the roundings spelled out
// (__fmul_rn, no FMA contraction), so results are bit-identical to ternary_matmul_scalar.
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/gemv_core.cuh"
#include "kernels/cuda/kernels.hpp"
#include "kernels/cuda/pdl.cuh"

namespace bitttt::cuda {
namespace {

using detail::aligned;
using detail::check_launch;
using detail::raw;

// 2·127·K must stay below 2^31 for the int32 accumulators (codes are 0..2, |x| <= 127).
constexpr int64_t kMaxCols = int64_t{1} << 22;
constexpr int64_t kMaxRows = int64_t{1} << 30;
constexpr int64_t kMaxTokens = int64_t{1} << 22;

using detail::dot16;
using detail::load_once;
using detail::rescale;

// ---- decode GEMV ----
//
// A row group's codes are contiguous (K_pad/16 blocks of 64 bytes). A team of W warps streams
// one row group as 16-byte loads, kGemvUnroll loads in flight per thread; thread t of a team
// always reads rows (t % 4)*4 .. +3 of a column block, so a shuffle over the lanes with the same
// t % 4 (and, for W > 1, a sum over the team's warps in shared memory, in a fixed order) gives the
// 16 row totals. W is chosen per launch so that all teams fit on the GPU at once (one wave: no
// tail of half-empty SMs) while keeping enough loads in flight: W = 1 for the MLP's thousands of
// row groups, 8 for the few row groups of the TTT projections. The loop is
// detail::RowGroupStream (gemv_core.cuh), shared with the other GEMVs.
constexpr int kGemvMaxTeamWarps = 8;
constexpr int kGemvBlockWarps = 8;  // a block of 8 warps holds 8 / W teams

struct GemvMatrix {
    const uint4* codes;
    float* y;
    int32_t rows;
    float scale;
};
struct GemvParams {
    GemvMatrix mat[kMaxGemvBatch];
    int32_t group_end[kMaxGemvBatch];  // cumulative row-group counts: group g belongs to matrix j
    int32_t count;                     // where group_end[j-1] <= g < group_end[j]
    int32_t groups;                    // all row groups (group_end[count - 1])
    int32_t kb;                        // 16-column blocks per row
    int32_t team_warps;                // W
    const uint4* x;                    // kb x 16 activation bytes
    const float* act_scale;
    const int32_t* act_sum;
    bool accumulate;
};

__global__ void __launch_bounds__(kGemvBlockWarps * 32) ternary_gemv_kernel(const GemvParams p) {
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
    // Select with constant indices: indexing the parameter array at run time would copy it to
    // local memory.
    GemvMatrix mat = p.mat[0];
#pragma unroll
    for (int j = 1; j < kMaxGemvBatch; ++j)
        if (mi == j) mat = p.mat[j];

    const int total = active ? p.kb * 4 : 0;  // 16-byte loads in this row group
    const uint4* group_codes[1] = {mat.codes + (active ? static_cast<int64_t>(group) * total : 0)};
    detail::RowGroupStream<1> rows;
    // The first loads of weights go out before waiting for the kernel that writes x (PDL): they
    // overlap its tail and this launch's latency.
    rows.start(group_codes, total, team_threads, t);
    detail::wait_for_previous_kernel();
    detail::allow_next_kernel();
    const uint4* x = p.x;
    auto act = [x](int u, bool valid) {
        return valid ? __ldg(x + (u >> 2)) : make_uint4(0, 0, 0, 0);
    };
    rows.run(act);
    rows.reduce_lanes();
    const int acc0 = rows.acc[0][0], acc1 = rows.acc[0][1], acc2 = rows.acc[0][2],
              acc3 = rows.acc[0][3];
    const int lane = threadIdx.x & 31;
    const int xsum = p.act_sum[0];
    const float gamma = p.act_scale[0];
    if (p.team_warps == 1) {  // lanes 0..3 hold the totals of rows 4*lane .. 4*lane + 3
        if (active && lane < 4) {
            const int sums[4] = {acc0, acc1, acc2, acc3};
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int64_t row = static_cast<int64_t>(group) * 16 + lane * 4 + i;
                if (row < mat.rows) {
                    const float v = rescale(sums[i], xsum, mat.scale, gamma);
                    mat.y[row] = p.accumulate ? __fadd_rn(mat.y[row], v) : v;
                }
            }
        }
        return;
    }
    __shared__ int partial[kGemvMaxTeamWarps][16];
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
        for (int w = 0; w < p.team_warps; ++w) sum += partial[first + w][t];
        const int64_t row = static_cast<int64_t>(group) * 16 + t;
        if (row < mat.rows) {
            const float v = rescale(sum, xsum, mat.scale, gamma);
            mat.y[row] = p.accumulate ? __fadd_rn(mat.y[row], v) : v;
        }
    }
}

// Warps of the GEMV kernel that fit on the GPU at once (queried once).
int64_t resident_gemv_warps() {
    static const int64_t warps = [] {
        int sms = 0, blocks = 0;
        detail::check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0),
                           "cudaDeviceGetAttribute");
        detail::check_cuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                               &blocks, ternary_gemv_kernel, kGemvBlockWarps * 32, 0),
                           "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
        return static_cast<int64_t>(sms) * std::max(blocks, 1) * kGemvBlockWarps;
    }();
    return warps;
}

int gemv_team_warps(int64_t groups, int64_t loads_per_group) {
    return detail::gemv_team_warps(groups, loads_per_group, resident_gemv_warps(),
                                   kGemvMaxTeamWarps);
}

// ---- prompt GEMM ----
//
// A block computes a tile of 64 rows (4 row groups) x 64 tokens, stepping over K 64 columns
// (4 column blocks) at a time through shared memory: 1 KB of codes and 4 KB of activations.
// Thread (tr, tc) = (t % 16, t / 16) owns rows 4tr..4tr+3 of the tile (one 16-byte code load per
// column block) and tokens 4tc..4tc+3: 4 x 4 int32 accumulators, 64 dp4a per column block.
constexpr int kGemmThreads = 256;
constexpr int kGemmGroups = 4;   // row groups per tile (64 rows)
constexpr int kGemmTokens = 64;  // tokens per tile
constexpr int kGemmBlocks = 4;   // 16-column blocks per K step

__global__ void __launch_bounds__(kGemmThreads)
    ternary_gemm_kernel(const uint4* __restrict__ codes, int32_t rows, int32_t groups, int32_t kb,
                        float scale, const uint4* __restrict__ x, int64_t x_stride16,
                        const float* __restrict__ act_scale, const int32_t* __restrict__ act_sum,
                        int32_t m, float* y, int64_t y_stride, bool accumulate) {
    __shared__ uint4 ws[kGemmBlocks][kGemmGroups * 4];
    __shared__ uint4 xs[kGemmTokens][kGemmBlocks];
    const int tid = threadIdx.x;
    const int tr = tid & 15;
    const int tc = tid >> 4;
    const int64_t g0 = static_cast<int64_t>(blockIdx.x) * kGemmGroups;
    const int64_t t0 = static_cast<int64_t>(blockIdx.y) * kGemmTokens;
    int acc[4][4] = {};
    const uint4 zero = make_uint4(0, 0, 0, 0);
    for (int kb0 = 0; kb0 < kb; kb0 += kGemmBlocks) {
        if (tid < kGemmBlocks * kGemmGroups * 4) {
            const int b = tid >> 4, idx = tid & 15;
            const int64_t g = g0 + (idx >> 2);
            const int kbi = kb0 + b;
            ws[b][idx] =
                (g < groups && kbi < kb) ? load_once(codes + (g * kb + kbi) * 4 + (idx & 3)) : zero;
        }
        {
            const int tt = tid >> 2, b = tid & 3;
            const int64_t t = t0 + tt;
            const int kbi = kb0 + b;
            // Zero activations beyond K or m make those products vanish whatever the codes are.
            xs[tt][b] = (t < m && kbi < kb) ? __ldg(x + t * x_stride16 + kbi) : zero;
        }
        __syncthreads();
#pragma unroll
        for (int b = 0; b < kGemmBlocks; ++b) {
            const uint4 w = ws[b][tr];
            uint4 xv[4];
#pragma unroll
            for (int j = 0; j < 4; ++j) xv[j] = xs[tc * 4 + j][b];
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                acc[0][j] = dot16(w.x, xv[j], acc[0][j]);
                acc[1][j] = dot16(w.y, xv[j], acc[1][j]);
                acc[2][j] = dot16(w.z, xv[j], acc[2][j]);
                acc[3][j] = dot16(w.w, xv[j], acc[3][j]);
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const int64_t t = t0 + tc * 4 + j;
        if (t >= m) continue;
        const int xsum = act_sum[t];
        const float gamma = act_scale[t];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int64_t row = g0 * 16 + tr * 4 + i;
            if (row >= rows) continue;
            float* out = y + t * y_stride + row;
            const float v = rescale(acc[i][j], xsum, scale, gamma);
            *out = accumulate ? __fadd_rn(*out, v) : v;
        }
    }
}

// ---- argument checks ----

void check_weights(const char* what, const kernels::TernaryWeights& w) {
    check(w.rows >= 0 && w.rows <= kMaxRows && w.cols >= 0 && w.cols <= kMaxCols,
          ErrorKind::kInvalidArgument,
          "CUDA: {}: weight shape [{}, {}] is out of range (rows <= 2^30, cols <= 2^22)", what,
          w.rows, w.cols);
    check(w.codes != nullptr && aligned(w.codes, 16), ErrorKind::kInvalidArgument,
          "CUDA: {}: weight codes are null or not 16-byte aligned", what);
}

void check_activations(const char* what, const QuantizedActivations& x, int64_t cols, int64_t m) {
    check(x.q != nullptr && x.scale != nullptr && x.sum != nullptr, ErrorKind::kInvalidArgument,
          "CUDA: {}: null activation buffer", what);
    check(aligned(x.q, 16) && x.stride % 16 == 0, ErrorKind::kInvalidArgument,
          "CUDA: {}: activations must be 16-byte aligned with a stride multiple of 16 (stride {})",
          what, x.stride);
    check(m == 1 || (x.stride >= kernels::packed_cols(cols) && x.stride <= detail::kMaxDim),
          ErrorKind::kDimensionMismatch, "CUDA: {}: activation stride {} is not in [{}, 2^31]",
          what, x.stride, kernels::packed_cols(cols));
}

}  // namespace

void ternary_gemv_batch(const kernels::TernaryWeights* w, float* const* y, int count,
                        const QuantizedActivations& x, bool accumulate, const Stream& stream) {
    check(w != nullptr && y != nullptr && count >= 1 && count <= kMaxGemvBatch,
          ErrorKind::kInvalidArgument, "CUDA: ternary_gemv_batch: {} matrices (1..{})", count,
          kMaxGemvBatch);
    GemvParams p{};
    int64_t groups = 0;
    for (int j = 0; j < count; ++j) {
        check_weights("ternary_gemv_batch", w[j]);
        check(w[j].cols == w[0].cols, ErrorKind::kDimensionMismatch,
              "CUDA: ternary_gemv_batch: matrix {} has {} columns, matrix 0 has {}", j, w[j].cols,
              w[0].cols);
        check(y[j] != nullptr || w[j].rows == 0, ErrorKind::kInvalidArgument,
              "CUDA: ternary_gemv_batch: null output {}", j);
        p.mat[j] = {reinterpret_cast<const uint4*>(w[j].codes), y[j],
                    static_cast<int32_t>(w[j].rows), w[j].scale};
        groups += kernels::packed_rows(w[j].rows) / kernels::kRowGroup;
        p.group_end[j] = static_cast<int32_t>(groups);
    }
    check_activations("ternary_gemv_batch", x, w[0].cols, 1);
    if (groups == 0) return;
    p.count = count;
    p.groups = static_cast<int32_t>(groups);
    p.kb = static_cast<int32_t>(kernels::packed_cols(w[0].cols) / kernels::kColBlock);
    p.team_warps = gemv_team_warps(groups, int64_t{p.kb} * 4);
    p.x = reinterpret_cast<const uint4*>(x.q);
    p.act_scale = x.scale;
    p.act_sum = x.sum;
    p.accumulate = accumulate;
    const int64_t teams_per_block = kGemvBlockWarps / p.team_warps;
    const auto blocks = static_cast<unsigned>((groups + teams_per_block - 1) / teams_per_block);
    detail::launch_pdl("ternary_gemv_kernel", ternary_gemv_kernel, dim3(blocks),
                       dim3(kGemvBlockWarps * 32), 0, raw(stream), p);
}

void ternary_matmul(const kernels::TernaryWeights& w, const QuantizedActivations& x, int64_t m,
                    float* y, int64_t y_stride, bool accumulate, const Stream& stream) {
    check_weights("ternary_matmul", w);
    check(m >= 0 && m <= kMaxTokens, ErrorKind::kInvalidArgument,
          "CUDA: ternary_matmul: token count {} is out of range (0..2^22)", m);
    if (m == 0 || w.rows == 0) return;
    check(y != nullptr, ErrorKind::kInvalidArgument, "CUDA: ternary_matmul: null output");
    if (m == 1) {
        float* outputs[1] = {y};
        ternary_gemv_batch(&w, outputs, 1, x, accumulate, stream);
        return;
    }
    check_activations("ternary_matmul", x, w.cols, m);
    check(y_stride >= w.rows && y_stride <= detail::kMaxDim, ErrorKind::kDimensionMismatch,
          "CUDA: ternary_matmul: output stride {} is not in [{}, 2^31]", y_stride, w.rows);
    const int64_t groups = kernels::packed_rows(w.rows) / kernels::kRowGroup;
    const dim3 grid(static_cast<unsigned>((groups + kGemmGroups - 1) / kGemmGroups),
                    static_cast<unsigned>((m + kGemmTokens - 1) / kGemmTokens));
    ternary_gemm_kernel<<<grid, kGemmThreads, 0, raw(stream)>>>(
        reinterpret_cast<const uint4*>(w.codes), static_cast<int32_t>(w.rows),
        static_cast<int32_t>(groups),
        static_cast<int32_t>(kernels::packed_cols(w.cols) / kernels::kColBlock), w.scale,
        reinterpret_cast<const uint4*>(x.q), x.stride / 16, x.scale, x.sum, static_cast<int32_t>(m),
        y, y_stride, accumulate);
    check_launch("ternary_gemm_kernel");
}

}  // namespace bitttt::cuda
