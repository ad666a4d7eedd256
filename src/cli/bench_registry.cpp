// The table of `bitttt bench` benchmarks. Add a line here for each new benchmark.
#include <fmt/format.h>

#include "cli/bench.hpp"

namespace bitttt::cli {

void bench_membw(const BenchOptions& options, BenchReporter& reporter) {
    size_t bytes = options.quick ? (size_t{64} << 20) : (size_t{1} << 30);
    double gbps = measure_read_bandwidth_gbps(bytes);
    reporter.report({fmt::format("membw.read.{}MiB", bytes >> 20), gbps, "GB/s",
                     "streaming read (SSE2, all threads)", 1.0});
}

// bench_ttt.cpp
void bench_ttt(const BenchOptions& options, BenchReporter& reporter);

const std::vector<BenchEntry>& bench_entries() {
    static const std::vector<BenchEntry> entries = {
        {"membw", "memory read bandwidth (the reference for bandwidth-bound kernels)", bench_membw},
        {"ttt", "TTT layer D=128, 1000 tokens via the C ABI vs the seed and scalar", bench_ttt},
    };
    return entries;
}

}  // namespace bitttt::cli
