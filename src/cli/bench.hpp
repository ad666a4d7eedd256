// `bitttt bench NAME`: every benchmark prints its figure next to a reference measured in the same
// run (the machine's memory bandwidth, our scalar kernel, ...) and the ratio between them.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace bitttt::cli {

struct BenchOptions {
    int threads = 0;             // 0: all cores
    bool json = false;           // one JSON object per result instead of a table
    bool quick = false;          // smaller sizes, for smoke tests
    std::string model;           // optional model path for model benchmarks
    std::string device = "cpu";  // decode/prompt: cpu or cuda
    // decode/prompt: the CPU's lm_head (DeviceOptions::lm_head)
    std::string lm_head = "bf16";
};

struct BenchResult {
    std::string name;       // e.g. "gemv.avx512.4096x16384"
    double value = 0;       // the figure
    std::string unit;       // "GB/s", "Gop/s", "tokens/s", ...
    std::string reference;  // what the ratio compares against, e.g. "read bandwidth 21.3 GB/s"
    double ratio = 0;       // value / reference value (0 when there is none)
};

// Prints results as they come: a readable table, or JSON lines with threads, isa and cpu added.
class BenchReporter {
  public:
    explicit BenchReporter(const BenchOptions& options);
    void report(const BenchResult& result);

  private:
    const BenchOptions& options_;
    bool header_printed_ = false;
};

using BenchFunction = std::function<void(const BenchOptions&, BenchReporter&)>;
struct BenchEntry {
    const char* name;
    const char* description;
    BenchFunction run;
};
// The table of benchmarks (bench_registry.cpp).
const std::vector<BenchEntry>& bench_entries();

// Seconds per call of fn: repeats until at least min_seconds have passed (after one warm-up
// call) and returns the best of `rounds` such measurements.
double seconds_per_call(const std::function<void()>& fn, double min_seconds = 0.3, int rounds = 3);

// Read bandwidth of this machine in GB/s: streaming sum over a buffer of `bytes` (>= 1 GiB for
// a figure past the last-level cache) with the current thread count.
double measure_read_bandwidth_gbps(size_t bytes);

// The GPU's streaming read bandwidth in GB/s (bench_cuda.cpp; an Error without CUDA or a GPU),
// and a one-line description of the GPU.
double measure_gpu_read_bandwidth_gbps(bool quick);
std::string gpu_description();

}  // namespace bitttt::cli
