// The decode GEMVs of gemv_float.hpp: the input row is quantized while the weights stream.
//
// The loop is detail::RowGroupStream (gemv_core.cuh): a team of W warps streams one 16-row group,
// thread t reading the 16-byte chunks u = t, t + 32W, ... (chunk u holds rows 4(u%4)..+3 of column
// block u/4). Its activations are the 16 int8 values of columns 16(u/4)..+15; lane l computes the
// 4 of columns 4u..4u+3 (word u%4 = l%4 of the block) from the float row, and the 4 lanes of a
// block exchange their words by shuffles. Each column is thus quantized by exactly one thread of
// the team, which also sums the int8 values: Σq (the code offset, see ternary_matmul.cu) comes
// out of the same pass. The per-row-group work is ~60 integer/float operations per 16 bytes of
// weights, well under what an SM issues while HBM delivers those bytes.
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <type_traits>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/gemv_core.cuh"
#include "kernels/cuda/gemv_float.hpp"
#include "kernels/cuda/pdl.cuh"

namespace bitttt::cuda {
namespace {

using detail::raw;

// A block is one team of W warps. W goes up to 32 for the single-matrix GEMV (few, long row
// groups, e.g. the TTT down projection: 128 row groups of 2048 chunks) and to 8 for SwiGLU (twice
// the registers). kThreads: the block shape of the occupancy query.
constexpr int kBlockWarps = 8;
constexpr int kThreads = kBlockWarps * 32;
constexpr int kMaxWarpsPerBlock = 32;
constexpr int64_t kMaxCols = int64_t{1} << 22;  // 2·127·K < 2^31 for the int32 accumulators
constexpr int64_t kMaxRows = int64_t{1} << 30;
constexpr int kStatsThreads = 1024;
// The small GEMVs (DecodeVariant::small_split): teams of up to kSmallMaxWarps warps, up to
// kSmallMaxSplit column slices (the portable cluster size), up to kSmallMaxMb MiB of weights.
constexpr int kSmallMaxMb = 1024;
constexpr int kSmallMaxWarps = 16;
constexpr int kSmallMaxSplit = 8;

// Block shape bound of a kernel: one-matrix kernels take teams of up to 32 warps (64 registers a
// thread), or 16 with the prefetch (up to 128); SwiGLU teams up to 8 warps.
constexpr int max_block_threads(int mats, bool prefetch) {
    return mats == 1 ? (prefetch ? 16 : kMaxWarpsPerBlock) * 32 : kThreads;
}

struct Params {
    const uint4* codes[2];
    float scale[2];
    float* y;
    int32_t rows;
    int32_t groups;  // row groups = teams
    int32_t kb;      // 16-column blocks
    int32_t team_warps;
    bool accumulate;
    int32_t prologue;  // DecodeVariant::prologue
    int32_t split;     // small_gemv_kernel: column slices per row group (= cluster size)
    bool four_rows;    // small_gemv_kernel: write the rows as a one-warp team of the kernel above
    // the input row and its producer's statistics
    const float* a;
    const float* norm;
    int32_t k;
    float eps;
    const double* in_partials;
    int32_t in_groups;
    const unsigned long long* in_key;
    // the statistics of the output published for its reader
    double* out_partials;
    unsigned long long* out_key;
    const float* out_norm;
};

// The int8 activations of one column block, computed where they are used (see the file comment).
// kNorm: the row is RMS-normalized first ((a_j · inv) · g_j, as rmsnorm_scalar rounds it).
template <bool kNorm>
struct OnTheFly {
    const float* a;
    const float* norm;
    int k;
    int k4;      // whole float4s in the row (k / 4)
    float inv;   // RMSNorm factor (kNorm)
    float s127;  // 127 / gamma
    int qsum;    // Σ of the int8 values this lane computed

    // The four values of columns 4u..4u+3 packed as int8 bytes (0 past the end of the row).
    __device__ __forceinline__ uint32_t word(int u, bool valid) {
        if (valid && u < k4) return word_inside(u);
        // the row's last columns, the zero padding up to 16, or a lane past the end
        float v[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int j = 4 * u + e;
            float x = 0.0f;
            if (valid && j < k) {
                x = __ldg(a + j);
                if constexpr (kNorm) x = __fmul_rn(__fmul_rn(x, inv), __ldg(norm + j));
            }
            v[e] = x;
        }
        return pack(v);
    }
    // Every chunk of the unrolled step lies in whole float4s of the row: no per-chunk branch.
    __device__ __forceinline__ uint32_t word_inside(int u) {
        const float4 f = __ldg(reinterpret_cast<const float4*>(a) + u);
        float4 g = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if constexpr (kNorm) g = __ldg(reinterpret_cast<const float4*>(norm) + u);
        return word_of(f, g);
    }
    // The word of four values f of the row and their RMSNorm weights g (kNorm).
    __device__ __forceinline__ uint32_t word_of(const float4& f, const float4& g) {
        float v[4] = {f.x, f.y, f.z, f.w};
        if constexpr (kNorm) {
            v[0] = __fmul_rn(__fmul_rn(v[0], inv), g.x);
            v[1] = __fmul_rn(__fmul_rn(v[1], inv), g.y);
            v[2] = __fmul_rn(__fmul_rn(v[2], inv), g.z);
            v[3] = __fmul_rn(__fmul_rn(v[3], inv), g.w);
        }
        return pack(v);
    }
    __device__ __forceinline__ uint32_t pack(const float (&v)[4]) {
        const int q0 = detail::quantize_int8(v[0], s127), q1 = detail::quantize_int8(v[1], s127),
                  q2 = detail::quantize_int8(v[2], s127), q3 = detail::quantize_int8(v[3], s127);
        const uint32_t w = __byte_perm(
            __byte_perm(static_cast<uint32_t>(q0), static_cast<uint32_t>(q1), 0x0040),
            __byte_perm(static_cast<uint32_t>(q2), static_cast<uint32_t>(q3), 0x0040), 0x5410);
        qsum = __dp4a(static_cast<int>(w), 0x01010101, qsum);  // Σ of the four signed bytes
        return w;
    }
    // The 16 bytes of the column block: word l % 4 from each of the block's four lanes.
    __device__ __forceinline__ static uint4 gather(uint32_t w) {
        const int first = static_cast<int>(threadIdx.x & 31) & ~3;
        uint4 x;
        x.x = __shfl_sync(0xffffffffu, w, first);
        x.y = __shfl_sync(0xffffffffu, w, first + 1);
        x.z = __shfl_sync(0xffffffffu, w, first + 2);
        x.w = __shfl_sync(0xffffffffu, w, first + 3);
        return x;
    }

    __device__ __forceinline__ uint4 operator()(int u, bool valid) {
        return gather(word(u, valid));
    }
    // All kGemvUnroll chunks of a step at once (RowGroupStream::run): branch-free when the warp's
    // chunks all lie inside the row, so that their loads go out together.
    __device__ __forceinline__ void step(int u, int stride, uint4 (&x)[detail::kGemvUnroll]) {
        const int lane = static_cast<int>(threadIdx.x & 31);
        uint32_t w[detail::kGemvUnroll];
        if (u - lane + 31 + (detail::kGemvUnroll - 1) * stride < k4) {
#pragma unroll
            for (int i = 0; i < detail::kGemvUnroll; ++i) w[i] = word_inside(u + i * stride);
        } else {
#pragma unroll
            for (int i = 0; i < detail::kGemvUnroll; ++i) w[i] = word(u + i * stride, true);
        }
#pragma unroll
        for (int i = 0; i < detail::kGemvUnroll; ++i) x[i] = gather(w[i]);
    }
};

// OnTheFly whose first unrolled step has its inputs in registers before the statistics arrive
// (DecodeVariant::small_early): the RMSNorm weights are loaded before the PDL wait (constant), the
// row right after it, in the same round trip as the statistics; the step then only quantizes.
// Only a warp whose first step lies in whole float4s of the row preloads (warp-uniform).
template <bool kNorm>
struct EarlyOnTheFly : OnTheFly<kNorm> {
    using Base = OnTheFly<kNorm>;
    float4 pre_a[detail::kGemvUnroll];
    float4 pre_g[detail::kGemvUnroll];
    int pre_u = -1;  // the chunk of the preloaded step; -1: none

    // full: the warp has a whole unrolled step from chunk u on (RowGroupStream::full).
    __device__ __forceinline__ bool preloads(bool full, int u, int stride) const {
        const int lane = static_cast<int>(threadIdx.x & 31);
        return full && u - lane + 31 + (detail::kGemvUnroll - 1) * stride < this->k4;
    }
    __device__ __forceinline__ void load_norm(bool full, int u, int stride) {
        if constexpr (kNorm) {
            if (preloads(full, u, stride)) {
#pragma unroll
                for (int i = 0; i < detail::kGemvUnroll; ++i)
                    pre_g[i] = __ldg(reinterpret_cast<const float4*>(this->norm) + u + i * stride);
            }
        }
    }
    __device__ __forceinline__ void load_row(bool full, int u, int stride) {
        if (preloads(full, u, stride)) {
#pragma unroll
            for (int i = 0; i < detail::kGemvUnroll; ++i)
                pre_a[i] = __ldg(reinterpret_cast<const float4*>(this->a) + u + i * stride);
            pre_u = u;
        }
    }
    __device__ __forceinline__ void step(int u, int stride, uint4 (&x)[detail::kGemvUnroll]) {
        if (u != pre_u) {
            Base::step(u, stride, x);
            return;
        }
        pre_u = -1;
        uint32_t w[detail::kGemvUnroll];
#pragma unroll
        for (int i = 0; i < detail::kGemvUnroll; ++i) w[i] = this->word_of(pre_a[i], pre_g[i]);
#pragma unroll
        for (int i = 0; i < detail::kGemvUnroll; ++i) x[i] = Base::gather(w[i]);
    }
};

// The input's RMSNorm factor and quantization scale from its producer's statistics, computed by
// every warp alike (same values, same order: every team quantizes identically).
template <bool kBatched, typename Q>
__device__ __forceinline__ void input_scale(const Params& p, Q& q, float& act_scale) {
    const int lane = static_cast<int>(threadIdx.x & 31);
    // With a norm, gamma needs the row's value at the key's index: one more dependent load.
    // Prologue level 1 (kBatched) issues the key first and that value right when the key arrives,
    // while the partials (a lane's in batches) are on their way.
    unsigned long long key = 0;
    bool at_key = false;
    float a_j = 0.0f, g_j = 0.0f;
    auto load_key = [&] {
        key = *p.in_key;
        const int j = static_cast<int>(key & 0xffffffffull);
        at_key = p.norm != nullptr && key != 0 && j < p.k;
        if (at_key) {
            a_j = p.a[j];
            g_j = p.norm[j];
        }
    };
    if constexpr (kBatched) load_key();
    q.inv = 1.0f;
    if (p.norm != nullptr) {
        double ss = 0.0;
        if constexpr (kBatched) {
            constexpr int kBatch = 8;  // two round trips for rows up to 2 · 8 · 32 · 16 = 8192
            for (int i0 = lane; i0 < p.in_groups; i0 += 32 * kBatch) {
                double v[kBatch];
#pragma unroll
                for (int e = 0; e < kBatch; ++e)
                    v[e] = i0 + 32 * e < p.in_groups ? p.in_partials[i0 + 32 * e] : 0.0;
#pragma unroll
                for (int e = 0; e < kBatch; ++e)
                    if (i0 + 32 * e < p.in_groups) ss += v[e];  // the order of the loop below
            }
        } else {
            for (int i = lane; i < p.in_groups; i += 32) ss += p.in_partials[i];
        }
#pragma unroll
        for (int offset = 16; offset > 0; offset >>= 1)
            ss += __shfl_xor_sync(0xffffffffu, ss, offset);
        const float mean = __double2float_rn(__ddiv_rn(ss, static_cast<double>(p.k)));
        q.inv = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(mean, p.eps)));
    }
    if constexpr (!kBatched) load_key();
    float absmax = __uint_as_float(static_cast<unsigned int>(key >> 32));
    if (p.norm != nullptr) {  // the normalized value at the index of the largest |a_j g_j|
        absmax = 0.0f;
        if (at_key) {
            absmax = fabsf(__fmul_rn(__fmul_rn(a_j, q.inv), g_j));
            if (!(absmax == absmax)) absmax = 0.0f;
        }
    }
    const float gamma = fmaxf(absmax, 1e-5f);
    q.s127 = __fdiv_rn(127.0f, gamma);
    act_scale = __fdiv_rn(gamma, 127.0f);
}

// The body both GEMV kernels share once their inputs are in flight: the input's scale, the
// thread's integer row products over the streamed weights (lane-reduced), and Σq of the warp's
// quantized inputs (the codes are stored shifted by one: a row's product is Σ codes·q − Σq).
template <bool kBatched, typename Q, typename Rows>
__device__ __forceinline__ int quantize_and_stream(const Params& p, Q& act, Rows& rows,
                                                   float& act_scale) {
    input_scale<kBatched>(p, act, act_scale);
    rows.run(act);
    rows.reduce_lanes();
    int qsum = act.qsum;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) qsum += __shfl_xor_sync(0xffffffffu, qsum, o);
    return qsum;
}

// BITTTT_CUDA_GEMV_MAX_TEAM caps W for the single-matrix kernel (8, 16 or 32; default 32), for
// measuring the larger teams.
int max_team_warps(int mats, bool prefetch) {
    static const int single = [] {
        const char* v = std::getenv("BITTTT_CUDA_GEMV_MAX_TEAM");
        const int w = v != nullptr ? std::atoi(v) : 32;
        return w >= 32 ? 32 : w >= 16 ? 16 : 8;
    }();
    return mats == 1 ? std::min(single, max_block_threads(1, prefetch) / 32) : kBlockWarps;
}

// The process's DecodeVariant (gemv_float.hpp): from the environment at first use.
int env_level(const char* name, int fallback, int max) {
    const char* v = std::getenv(name);
    if (v == nullptr || v[0] == '\0') return fallback;
    char* end = nullptr;
    const long level = std::strtol(v, &end, 10);
    check(*end == '\0' && level >= 0 && level <= max, ErrorKind::kInvalidArgument,
          "CUDA: {}='{}': expected an integer from 0 to {}", name, v, max);
    return static_cast<int>(level);
}
struct VariantState {
    std::atomic<int> gemv_prefetch{env_level("BITTTT_CUDA_GEMV_PREFETCH", 1, 2)};
    std::atomic<int> prologue{env_level("BITTTT_CUDA_DECODE_PROLOGUE", 0, 1)};
    std::atomic<int> small_split{
        env_level("BITTTT_CUDA_SMALL_SPLIT", DecodeVariant{}.small_split, kSmallMaxSplit)};
    std::atomic<int> small_early{
        env_level("BITTTT_CUDA_SMALL_EARLY", DecodeVariant{}.small_early, 1)};
    std::atomic<int> small_max_mb{
        env_level("BITTTT_CUDA_SMALL_MAX_MB", DecodeVariant{}.small_max_mb, kSmallMaxMb)};
};
VariantState& variant_state() {
    static VariantState state;
    return state;
}
bool use_prefetch(int mats) {
    return variant_state().gemv_prefetch.load() >= (mats == 2 ? 1 : 2);
}

// kBatched: DecodeVariant::prologue > 0 (a template parameter: the batch's registers would
// otherwise weigh on the level-0 kernels too).
template <int kMats, bool kNorm, bool kPrefetch, bool kBatched>
__global__ void __launch_bounds__(max_block_threads(kMats, kPrefetch))
    float_gemv_kernel(const Params p) {
    const int team_threads = p.team_warps * 32;
    const int teams_per_block = static_cast<int>(blockDim.x) / team_threads;
    const int team = static_cast<int>(threadIdx.x) / team_threads;
    const int t = static_cast<int>(threadIdx.x) % team_threads;
    const int group = static_cast<int>(blockIdx.x) * teams_per_block + team;
    const bool active = group < p.groups;
    const int total = active ? p.kb * 4 : 0;
    const int64_t offset = active ? static_cast<int64_t>(group) * total : 0;
    const uint4* group_codes[kMats];
#pragma unroll
    for (int m = 0; m < kMats; ++m) group_codes[m] = p.codes[m] + offset;
    detail::RowGroupStream<kMats, kPrefetch> rows;
    rows.start(group_codes, total, team_threads, t);  // weights only: before the wait (PDL)
    OnTheFly<kNorm> act{p.a, p.norm, p.k, p.k >> 2, 1.0f, 1.0f, 0};
    detail::wait_for_previous_kernel();
    detail::allow_next_kernel();

    float act_scale = 0.0f;
    int qsum = quantize_and_stream<kBatched>(p, act, rows, act_scale);

    // Row totals: W = 1: lane l < 4 holds rows 4l..4l+3; W > 1: thread t < 16 of the team holds
    // row t once the team's warps are summed (fixed order) through shared memory.
    const int lane = static_cast<int>(threadIdx.x & 31);
    int sums[kMats][4];
    int held = 0, first_row = 0;
    if (p.team_warps == 1) {
        held = lane < 4 ? 4 : 0;
        first_row = lane * 4;
#pragma unroll
        for (int m = 0; m < kMats; ++m)
#pragma unroll
            for (int i = 0; i < 4; ++i) sums[m][i] = rows.acc[m][i];
    } else {
        __shared__ int partial[kMats][kMaxWarpsPerBlock][16];
        __shared__ int qpart[kMaxWarpsPerBlock];
        const int warp = static_cast<int>(threadIdx.x >> 5);
        if (lane < 4) {
#pragma unroll
            for (int m = 0; m < kMats; ++m)
#pragma unroll
                for (int i = 0; i < 4; ++i) partial[m][warp][lane * 4 + i] = rows.acc[m][i];
        }
        if (lane == 0) qpart[warp] = qsum;
        __syncthreads();
        const int w0 = team * p.team_warps;
        qsum = 0;
        for (int wi = 0; wi < p.team_warps; ++wi) qsum += qpart[w0 + wi];
        held = t < 16 ? 1 : 0;
        first_row = t;
#pragma unroll
        for (int m = 0; m < kMats; ++m) {
            int s = 0;
            if (t < 16)
                for (int wi = 0; wi < p.team_warps; ++wi) s += partial[m][w0 + wi][t];
#pragma unroll
            for (int i = 0; i < 4; ++i) sums[m][i] = i == 0 ? s : 0;
        }
    }

    // Write the rows and gather their statistics.
    double ss = 0.0;
    unsigned long long key = 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int64_t row = static_cast<int64_t>(group) * 16 + first_row + i;
        if (!active || i >= held || row >= p.rows) continue;
        float v;
        if constexpr (kMats == 1) {
            v = detail::rescale(sums[0][i], qsum, p.scale[0], act_scale);
            if (p.accumulate) v = __fadd_rn(p.y[row], v);
        } else {
            v = detail::silu_times(detail::rescale(sums[0][i], qsum, p.scale[0], act_scale),
                                   detail::rescale(sums[1][i], qsum, p.scale[1], act_scale));
        }
        p.y[row] = v;
        ss += static_cast<double>(v) * v;
        const float n = p.out_norm != nullptr ? __fmul_rn(v, p.out_norm[row]) : v;
        const unsigned long long k = detail::absmax_key(n, static_cast<int>(row));
        key = k > key ? k : key;
    }
    if (t >= 32) return;  // the team's first warp holds all its rows
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        ss += __shfl_xor_sync(0xffffffffu, ss, o);
        const unsigned long long other = __shfl_xor_sync(0xffffffffu, key, o);
        key = other > key ? other : key;
    }
    if (lane != 0 || !active) return;
    if (p.out_partials != nullptr) p.out_partials[group] = ss;
    if (p.out_key != nullptr && key != 0) atomicMax(p.out_key, key);
}

// The small single-matrix GEMV (DecodeVariant::small_split = S > 0): block b streams column slice
// b % S (column blocks [s·kb/S, (s+1)·kb/S)) of row group b / S with a team of all its warps, the
// S blocks of a row group forming one thread block cluster (kCluster; S = 1 without). Each block
// reduces its team's integer sums to 16 values Σ codes·q − Σ q over its slice; the cluster's first
// block adds the S of every row through distributed shared memory (integers: exact, any order)
// and writes the rows exactly as float_gemv_kernel would: v = rescale(Σ codes·q − Σ q), the same
// accumulation, and the statistics in the same lanes (four_rows: as a one-warp team, lane l < 4
// holding rows 4l..4l+3; else thread t < 16 holding row t), so that even the double partials come
// out bit-identical.
template <bool kNorm, bool kCluster, bool kEarly>
__global__ void __launch_bounds__(kSmallMaxWarps * 32) small_gemv_kernel(const Params p) {
    const int team_threads = static_cast<int>(blockDim.x);
    const int t = static_cast<int>(threadIdx.x);
    const int lane = t & 31;
    const int split = kCluster ? p.split : 1;
    const int group = static_cast<int>(blockIdx.x) / split;
    const int slice = static_cast<int>(blockIdx.x) % split;  // the block's rank in its cluster
    const int cb0 = slice * p.kb / split, cb1 = (slice + 1) * p.kb / split;
    const uint4* first[1] = {p.codes[0] + static_cast<int64_t>(group) * p.kb * 4 + 4 * cb0};
    detail::RowGroupStream<1> rows;
    rows.start(first, 4 * (cb1 - cb0), team_threads, t);  // weights only: before the wait (PDL)
    // The slice's columns as a row of their own (chunk u of the slice: float4 u of that row).
    using Act = std::conditional_t<kEarly, EarlyOnTheFly<kNorm>, OnTheFly<kNorm>>;
    Act act;
    act.a = p.a + 16 * cb0;
    act.norm = kNorm ? p.norm + 16 * cb0 : nullptr;
    act.k = p.k - 16 * cb0;
    act.k4 = act.k >> 2;
    act.inv = 1.0f;
    act.s127 = 1.0f;
    act.qsum = 0;

    // The rows this thread writes if its block is the cluster's first.
    const int held =
        slice != 0 || t >= 32 ? 0 : (p.four_rows ? (lane < 4 ? 4 : 0) : (t < 16 ? 1 : 0));
    const int first_row = p.four_rows ? lane * 4 : t;
    const int64_t row0 = static_cast<int64_t>(group) * 16 + first_row;
    float out_norm[4] = {1.0f, 1.0f, 1.0f, 1.0f}, y_old[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if constexpr (kEarly) {
        act.load_norm(rows.full, rows.u, rows.step);
        if (p.out_norm != nullptr)
#pragma unroll
            for (int i = 0; i < 4; ++i)
                if (i < held && row0 + i < p.rows) out_norm[i] = p.out_norm[row0 + i];
    }
    detail::wait_for_previous_kernel();
    detail::allow_next_kernel();
    if constexpr (kEarly) {
        act.load_row(rows.full, rows.u, rows.step);
        if (p.accumulate)
#pragma unroll
            for (int i = 0; i < 4; ++i)
                if (i < held && row0 + i < p.rows) y_old[i] = p.y[row0 + i];
    }

    float act_scale = 0.0f;
    const int qsum = quantize_and_stream<false>(p, act, rows, act_scale);

    // The slice's 16 row values Σ codes·q − Σ q (integers, summed over the team's warps).
    __shared__ int partial[kSmallMaxWarps][16];
    __shared__ int qpart[kSmallMaxWarps];
    __shared__ int slice_rows[16];
    const int warp = t >> 5;
    if (lane < 4) {
#pragma unroll
        for (int i = 0; i < 4; ++i) partial[warp][lane * 4 + i] = rows.acc[0][i];
    }
    if (lane == 0) qpart[warp] = qsum;
    __syncthreads();
    if (t < 16) {
        int s = 0;
        for (int wi = 0; wi < team_threads / 32; ++wi) s += partial[wi][t] - qpart[wi];
        slice_rows[t] = s;
    }
    const int* totals = slice_rows;
    if constexpr (kCluster) {
        __shared__ int cluster_rows[16];
        cooperative_groups::cluster_group cluster = cooperative_groups::this_cluster();
        cluster.sync();  // every slice's values are in its block's shared memory
        if (slice == 0 && t < 16) {
            int s = 0;
            for (int r = 0; r < split; ++r) s += cluster.map_shared_rank(slice_rows, r)[t];
            cluster_rows[t] = s;
        }
        cluster.sync();  // the first block has read them: the others may exit
        totals = cluster_rows;
    } else {
        __syncthreads();
    }
    if (slice != 0 || t >= 32) return;  // the first warp of the first block holds every row

    // Write the rows and gather their statistics (float_gemv_kernel's order).
    double ss = 0.0;
    unsigned long long key = 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int64_t row = row0 + i;
        if (i >= held || row >= p.rows) continue;
        float v = detail::rescale(totals[first_row + i], 0, p.scale[0], act_scale);
        if (p.accumulate) v = __fadd_rn(kEarly ? y_old[i] : p.y[row], v);
        p.y[row] = v;
        ss += static_cast<double>(v) * v;
        const float n =
            p.out_norm != nullptr ? __fmul_rn(v, kEarly ? out_norm[i] : p.out_norm[row]) : v;
        const unsigned long long k = detail::absmax_key(n, static_cast<int>(row));
        key = k > key ? k : key;
    }
    if (t >= 32) return;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        ss += __shfl_xor_sync(0xffffffffu, ss, o);
        const unsigned long long other = __shfl_xor_sync(0xffffffffu, key, o);
        key = other > key ? other : key;
    }
    if (lane != 0) return;
    if (p.out_partials != nullptr) p.out_partials[group] = ss;
    if (p.out_key != nullptr && key != 0) atomicMax(p.out_key, key);
}

__global__ void __launch_bounds__(kStatsThreads)
    row_stats_kernel(const float* x, int d, const float* next_norm, double* partials, int groups,
                     unsigned long long* key, unsigned long long* zero, int zero_count) {
    detail::wait_for_previous_kernel();
    detail::allow_next_kernel();
    const int tid = static_cast<int>(threadIdx.x);
    for (int i = tid; i < zero_count; i += kStatsThreads) zero[i] = 0;
    if (partials != nullptr) {
        for (int g = tid; g < groups; g += kStatsThreads) {
            double s = 0.0;
            for (int r = 0; r < 16; ++r) {
                const int j = g * 16 + r;
                if (j < d) s += static_cast<double>(x[j]) * x[j];
            }
            partials[g] = s;
        }
    }
    unsigned long long best = 0;
    for (int j = tid; j < d; j += kStatsThreads) {
        const float v = next_norm != nullptr ? __fmul_rn(x[j], next_norm[j]) : x[j];
        const unsigned long long k = detail::absmax_key(v, j);
        best = k > best ? k : best;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const unsigned long long other = __shfl_xor_sync(0xffffffffu, best, o);
        best = other > best ? other : best;
    }
    __shared__ unsigned long long warp_best[kStatsThreads / 32];
    if ((tid & 31) == 0) warp_best[tid >> 5] = best;
    __syncthreads();  // also orders the zeroing above before the write of *key below
    if (tid == 0 && key != nullptr) {
        for (int w = 0; w < kStatsThreads / 32; ++w)
            best = warp_best[w] > best ? warp_best[w] : best;
        *key = best;
    }
}

template <int kMats, bool kPrefetch>
int64_t resident_warps() {
    static const int64_t warps = [] {
        int sms = 0, blocks = 0;
        detail::check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0),
                           "cudaDeviceGetAttribute");
        detail::check_cuda(
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                &blocks, float_gemv_kernel<kMats, true, kPrefetch, false>, kThreads, 0),
            "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
        return static_cast<int64_t>(sms) * std::max(blocks, 1) * kBlockWarps;
    }();
    return warps;
}

template <int kMats, bool kNorm>
auto pick_kernel(bool prefetch, bool batched) {
    return prefetch ? (batched ? float_gemv_kernel<kMats, kNorm, true, true>
                               : float_gemv_kernel<kMats, kNorm, true, false>)
                    : (batched ? float_gemv_kernel<kMats, kNorm, false, true>
                               : float_gemv_kernel<kMats, kNorm, false, false>);
}

template <bool kNorm>
auto pick_small_kernel(bool cluster, bool early) {
    return cluster ? (early ? small_gemv_kernel<kNorm, true, true>
                            : small_gemv_kernel<kNorm, true, false>)
                   : (early ? small_gemv_kernel<kNorm, false, true>
                            : small_gemv_kernel<kNorm, false, false>);
}

// Launches small_gemv_kernel: p as for float_gemv_kernel (its team size in p.team_warps), split
// column slices per row group (clusters of split blocks), PDL as detail::launch_pdl.
void launch_small(const char* what, Params p, int split, bool early, const Stream& stream) {
    split = std::max(1, std::min(split, p.kb));
    p.split = split;
    p.four_rows = p.team_warps == 1;
    const int warps = std::max(1, std::min(p.team_warps / split, kSmallMaxWarps));
    p.team_warps = warps;
    auto kernel = p.norm != nullptr ? pick_small_kernel<true>(split > 1, early)
                                    : pick_small_kernel<false>(split > 1, early);
    cudaLaunchConfig_t config{};
    config.gridDim = dim3(static_cast<unsigned>(p.groups) * static_cast<unsigned>(split));
    config.blockDim = dim3(static_cast<unsigned>(warps * 32));
    config.dynamicSmemBytes = 0;
    config.stream = raw(stream);
    cudaLaunchAttribute attributes[2]{};
    unsigned count = 0;
    if (split > 1) {
        attributes[count].id = cudaLaunchAttributeClusterDimension;
        attributes[count].val.clusterDim.x = static_cast<unsigned>(split);
        attributes[count].val.clusterDim.y = 1;
        attributes[count].val.clusterDim.z = 1;
        ++count;
    }
    if (detail::pdl_enabled()) {
        attributes[count].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attributes[count].val.programmaticStreamSerializationAllowed = 1;
        ++count;
    }
    config.attrs = attributes;
    config.numAttrs = count;
    detail::check_cuda(cudaLaunchKernelEx(&config, kernel, p), what);
}

int64_t row_groups(int64_t n) {
    return (n + 15) / 16;
}

template <int kMats>
void launch(const char* what, const kernels::TernaryWeights* w, const FloatRow& in, float* y,
            bool accumulate, const RowStats& out, const float* out_norm, const Stream& stream) {
    check(in.k >= 1 && in.k <= kMaxCols && in.a != nullptr && detail::aligned(in.a, 16),
          ErrorKind::kInvalidArgument,
          "CUDA: {}: input row of {} values (1..2^22), null or not 16-byte aligned", what, in.k);
    check(in.norm == nullptr || detail::aligned(in.norm, 16), ErrorKind::kInvalidArgument,
          "CUDA: {}: RMSNorm weight is not 16-byte aligned", what);
    check(in.stats.key != nullptr, ErrorKind::kInvalidArgument,
          "CUDA: {}: the input row has no absmax key", what);
    check(
        in.norm == nullptr || (in.stats.partials != nullptr && in.stats.groups == row_groups(in.k)),
        ErrorKind::kInvalidArgument,
        "CUDA: {}: an RMSNorm input needs {} sum-of-squares partials (got {})", what,
        row_groups(in.k), in.stats.partials != nullptr ? in.stats.groups : 0);
    for (int m = 0; m < kMats; ++m)
        check(w[m].cols == in.k && w[m].rows == w[0].rows && w[m].rows >= 0 &&
                  w[m].rows <= kMaxRows && w[m].codes != nullptr && detail::aligned(w[m].codes, 16),
              ErrorKind::kInvalidArgument,
              "CUDA: {}: matrix {} is [{}, {}] (null or misaligned codes?), the row has {} values",
              what, m, w[m].rows, w[m].cols, in.k);
    const int64_t rows = w[0].rows;
    if (rows == 0) return;
    check(y != nullptr, ErrorKind::kInvalidArgument, "CUDA: {}: null output", what);
    check(out.partials == nullptr || out.groups == row_groups(rows), ErrorKind::kInvalidArgument,
          "CUDA: {}: the output needs {} sum-of-squares partials (got {})", what, row_groups(rows),
          out.groups);
    Params p{};
    for (int m = 0; m < kMats; ++m) {
        p.codes[m] = reinterpret_cast<const uint4*>(w[m].codes);
        p.scale[m] = w[m].scale;
    }
    p.y = y;
    p.rows = static_cast<int32_t>(rows);
    p.groups = static_cast<int32_t>(kernels::packed_rows(rows) / kernels::kRowGroup);
    p.kb = static_cast<int32_t>(kernels::packed_cols(in.k) / kernels::kColBlock);
    const bool prefetch = use_prefetch(kMats);
    p.team_warps = detail::gemv_team_warps(
        p.groups, int64_t{p.kb} * 4,
        prefetch ? resident_warps<kMats, true>() : resident_warps<kMats, false>(),
        max_team_warps(kMats, prefetch));
    p.accumulate = accumulate;
    p.prologue = variant_state().prologue.load();
    p.a = in.a;
    p.norm = in.norm;
    p.k = static_cast<int32_t>(in.k);
    p.eps = in.eps;
    p.in_partials = in.stats.partials;
    p.in_groups = static_cast<int32_t>(in.stats.groups);
    p.in_key = in.stats.key;
    p.out_partials = out.partials;
    p.out_key = out.key;
    p.out_norm = out_norm;
    const int small_split = variant_state().small_split.load();
    if (kMats == 1 && small_split > 0 &&
        static_cast<int64_t>(p.groups) * p.kb * 64 <=
            (static_cast<int64_t>(variant_state().small_max_mb.load()) << 20)) {
        launch_small(what, p, small_split, variant_state().small_early.load() > 0, stream);
        return;
    }
    // One team per block: the block scheduler then spreads the row groups evenly over the SMs
    // (blocks of 8 one-warp teams left some SMs a block more than others: the SwiGLU GEMV's 224
    // blocks ran at 0.71 of the read bandwidth, the down projection's 512 balanced ones at 0.89).
    const int block_warps = p.team_warps;
    const auto blocks = static_cast<unsigned>(p.groups);
    const bool batched = p.prologue > 0;
    auto kernel = in.norm != nullptr ? pick_kernel<kMats, true>(prefetch, batched)
                                     : pick_kernel<kMats, false>(prefetch, batched);
    detail::launch_pdl(what, kernel, dim3(blocks), dim3(block_warps * 32), 0, raw(stream), p);
}

}  // namespace

DecodeVariant decode_variant() {
    const VariantState& state = variant_state();
    return {state.gemv_prefetch.load(), state.prologue.load(), state.small_split.load(),
            state.small_early.load(), state.small_max_mb.load()};
}

void set_decode_variant(const DecodeVariant& variant) {
    check(variant.gemv_prefetch >= 0 && variant.gemv_prefetch <= 2, ErrorKind::kInvalidArgument,
          "CUDA: set_decode_variant: GEMV prefetch level {} (expected 0, 1 or 2)",
          variant.gemv_prefetch);
    check(variant.prologue >= 0 && variant.prologue <= 1, ErrorKind::kInvalidArgument,
          "CUDA: set_decode_variant: prologue level {} (expected 0 or 1)", variant.prologue);
    check(variant.small_split >= 0 && variant.small_split <= kSmallMaxSplit,
          ErrorKind::kInvalidArgument,
          "CUDA: set_decode_variant: small GEMV split {} (expected 0 to {})", variant.small_split,
          kSmallMaxSplit);
    check(variant.small_early >= 0 && variant.small_early <= 1, ErrorKind::kInvalidArgument,
          "CUDA: set_decode_variant: small GEMV early loads {} (expected 0 or 1)",
          variant.small_early);
    check(variant.small_max_mb >= 1 && variant.small_max_mb <= kSmallMaxMb,
          ErrorKind::kInvalidArgument,
          "CUDA: set_decode_variant: small GEMV bound {} MiB (expected 1 to {})",
          variant.small_max_mb, kSmallMaxMb);
    variant_state().gemv_prefetch.store(variant.gemv_prefetch);
    variant_state().prologue.store(variant.prologue);
    variant_state().small_split.store(variant.small_split);
    variant_state().small_early.store(variant.small_early);
    variant_state().small_max_mb.store(variant.small_max_mb);
}

void row_stats(const float* x, int64_t d, const float* next_norm, const RowStats& out,
               unsigned long long* zero_keys, int64_t zero_count, const Stream& stream) {
    check(d >= 1 && d <= kMaxCols && x != nullptr, ErrorKind::kInvalidArgument,
          "CUDA: row_stats: row of {} values (1..2^22) or null input", d);
    check(out.partials == nullptr || out.groups == row_groups(d), ErrorKind::kInvalidArgument,
          "CUDA: row_stats: {} partials for a row of {} values (need {})", out.groups, d,
          row_groups(d));
    check(zero_count >= 0 && zero_count <= kMaxCols && (zero_count == 0 || zero_keys != nullptr),
          ErrorKind::kInvalidArgument, "CUDA: row_stats: {} keys to zero", zero_count);
    detail::launch_pdl("row_stats_kernel", row_stats_kernel, dim3(1), dim3(kStatsThreads), 0,
                       raw(stream), x, static_cast<int>(d), next_norm, out.partials,
                       static_cast<int>(row_groups(d)), out.key, zero_keys,
                       static_cast<int>(zero_count));
}

void ternary_gemv_float(const kernels::TernaryWeights& w, const FloatRow& in, float* y,
                        bool accumulate, const RowStats& out_stats, const float* out_norm,
                        const Stream& stream) {
    launch<1>("ternary_gemv_float", &w, in, y, accumulate, out_stats, out_norm, stream);
}

void ternary_gemv_swiglu(const kernels::TernaryWeights& gate, const kernels::TernaryWeights& up,
                         const FloatRow& in, float* h, const RowStats& out_stats,
                         const Stream& stream) {
    const kernels::TernaryWeights w[2] = {gate, up};
    launch<2>("ternary_gemv_swiglu", w, in, h, false, out_stats, nullptr, stream);
}

}  // namespace bitttt::cuda
