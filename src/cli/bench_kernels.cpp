// Kernel benchmarks: `bitttt bench gemv` (decode: packed weights streamed from memory, against
// the machine's measured read bandwidth) and `bitttt bench gemm` (prompts: int8 operations per
// second, against the scalar reference kernel).
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cli/bench.hpp"
#include "core/aligned_buffer.hpp"
#include "core/cpu_features.hpp"
#include "core/rng.hpp"
#include "kernels/cpu/ternary.hpp"

namespace bitttt::cli {
namespace {

using kernels::packed_bytes;
using kernels::packed_cols;
using kernels::TernaryWeights;

// Random packed codes in {0, 1, 2} (weights -1, 0, +1), filled in parallel: each 64-bit word
// is random, and every 2-bit field equal to 3 has its high bit cleared (3 -> 1).
AlignedBuffer<uint8_t> random_codes(int64_t rows, int64_t cols) {
    AlignedBuffer<uint8_t> codes(packed_bytes(rows, cols));
    const int64_t words = static_cast<int64_t>(codes.size() / 8);
    uint64_t* data = reinterpret_cast<uint64_t*>(codes.data());
    constexpr int64_t kChunk = 1 << 16;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < (words + kChunk - 1) / kChunk; ++c) {
        Rng rng(static_cast<uint64_t>(c));
        for (int64_t i = c * kChunk; i < std::min(words, (c + 1) * kChunk); ++i) {
            uint64_t v = rng.next_u64();
            data[i] = v & ~((v & (v >> 1) & 0x5555555555555555ull) << 1);
        }
    }
    return codes;
}

// m token rows of random int8 activations (zero padded) and their scales.
struct Activations {
    int64_t stride;
    AlignedBuffer<int8_t> xq;
    std::vector<float> scale;
    Activations(int64_t m, int64_t cols) : stride(packed_cols(cols)), xq(m * stride), scale(m) {
        Rng rng(42);
        for (int64_t i = 0; i < m; ++i) {
            for (int64_t k = 0; k < cols; ++k)
                xq[i * stride + k] = static_cast<int8_t>(static_cast<int>(rng.below(255)) - 127);
            scale[i] = 1e-3f;
        }
    }
};

// Seconds per call of ternary_matmul with the given ISA active (restored afterwards).
double time_matmul(Isa isa, const TernaryWeights& w, const Activations& x, int64_t m,
                   std::vector<float>& y, double min_seconds) {
    const Isa saved = active_isa();
    set_active_isa(isa);
    double s = seconds_per_call(
        [&] {
            kernels::ternary_matmul(w, x.xq.data(), x.stride, x.scale.data(), m, y.data(), w.rows);
        },
        min_seconds, 3);
    set_active_isa(saved);
    return s;
}

// The SIMD levels to measure: every one up to the active level.
std::vector<Isa> simd_isas() {
    std::vector<Isa> out;
    for (Isa isa : {Isa::kAvx512, Isa::kAvx2})
        if (isa <= active_isa()) out.push_back(isa);
    return out;
}

}  // namespace

// GEMV (m = 1) over >= 1 GiB of packed weights: bound by memory bandwidth, so the figure is the
// rate at which packed weights stream, against a plain streaming read measured in this run.
void bench_gemv(const BenchOptions& options, BenchReporter& reporter) {
    const int64_t rows = options.quick ? 2048 : 65536;
    const int64_t cols = options.quick ? 4096 : 65536;  // 1 GiB packed (64 KiB of activations)
    const size_t bw_bytes = options.quick ? (size_t{64} << 20) : (size_t{1} << 30);
    const double bandwidth = measure_read_bandwidth_gbps(bw_bytes);
    const std::string bw_ref = fmt::format("read bandwidth {:.1f} GB/s", bandwidth);
    reporter.report({fmt::format("gemv.membw.{}MiB", bw_bytes >> 20), bandwidth, "GB/s",
                     "streaming read (SSE2)", 1.0});

    AlignedBuffer<uint8_t> codes = random_codes(rows, cols);
    const TernaryWeights w{codes.data(), rows, cols, 0.01f};
    const Activations x(1, cols);
    std::vector<float> y(rows);
    const double bytes = static_cast<double>(packed_bytes(rows, cols));
    const double min_seconds = options.quick ? 0.05 : 0.5;

    // The scalar reference is compute-bound (tens of ns per weight, it decodes every code from
    // its byte index): time it on the first 128 rows only.
    const TernaryWeights w_scalar{codes.data(), 128, cols, w.scale};
    const double scalar_gbps = static_cast<double>(packed_bytes(w_scalar.rows, cols)) /
                               time_matmul(Isa::kScalar, w_scalar, x, 1, y, min_seconds) / 1e9;
    reporter.report({fmt::format("gemv.scalar.{}x{}", w_scalar.rows, cols), scalar_gbps, "GB/s",
                     bw_ref, scalar_gbps / bandwidth});

    for (Isa isa : simd_isas()) {
        const double gbps = bytes / time_matmul(isa, w, x, 1, y, min_seconds) / 1e9;
        reporter.report({fmt::format("gemv.{}.{}x{}", isa_name(isa), rows, cols), gbps, "GB/s",
                         bw_ref, gbps / bandwidth});
        reporter.report({fmt::format("gemv.{}.speedup", isa_name(isa)), gbps / scalar_gbps, "x",
                         fmt::format("scalar kernel {:.2f} GB/s", scalar_gbps),
                         gbps / scalar_gbps});
    }
}

// GEMM (4096 x 4096 weights, 512 tokens): compute-bound; one op = one multiply-add counted as 2.
void bench_gemm(const BenchOptions& options, BenchReporter& reporter) {
    const int64_t rows = options.quick ? 512 : 4096;
    const int64_t cols = options.quick ? 1024 : 4096;
    const int64_t m = options.quick ? 64 : 512;
    const int64_t m_scalar = 2;  // the scalar kernel is slow (it scales linearly in m)
    AlignedBuffer<uint8_t> codes = random_codes(rows, cols);
    const TernaryWeights w{codes.data(), rows, cols, 0.01f};
    const Activations x(m, cols);
    std::vector<float> y(m * rows);
    const double min_seconds = options.quick ? 0.05 : 0.5;
    auto gops = [&](int64_t tokens, double seconds) {
        return 2.0 * static_cast<double>(rows * cols * tokens) / seconds / 1e9;
    };

    const double scalar = gops(m_scalar, time_matmul(Isa::kScalar, w, x, m_scalar, y, min_seconds));
    reporter.report({fmt::format("gemm.scalar.{}x{}.m{}", rows, cols, m_scalar), scalar, "Gop/s",
                     "scalar kernel", 1.0});
    for (Isa isa : simd_isas()) {
        const double value = gops(m, time_matmul(isa, w, x, m, y, min_seconds));
        reporter.report({fmt::format("gemm.{}.{}x{}.m{}", isa_name(isa), rows, cols, m), value,
                         "Gop/s", fmt::format("scalar kernel {:.2f} Gop/s", scalar),
                         value / scalar});
    }
}

}  // namespace bitttt::cli
