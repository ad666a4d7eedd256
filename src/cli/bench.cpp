#include "cli/bench.hpp"

#include <emmintrin.h>  // SSE2 is baseline x86-64; streaming reads are memory-bound anyway
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/model_options.hpp"
#include "cli/wait_policy.hpp"
#include "core/aligned_buffer.hpp"
#include "core/cpu_features.hpp"
#include "core/error.hpp"
#include "core/threads.hpp"

namespace bitttt::cli {

BenchReporter::BenchReporter(const BenchOptions& options) : options_(options) {}

void BenchReporter::report(const BenchResult& r) {
    if (options_.json) {
        nlohmann::json j = {{"name", r.name},
                            {"value", r.value},
                            {"unit", r.unit},
                            {"reference", r.reference},
                            {"ratio", r.ratio},
                            {"threads", num_threads()},
                            {"isa", isa_name(active_isa())},
                            {"cpu", cpu_model_name()},
                            {"omp_wait", wait_policy_name()},
                            {"lm_head", options_.lm_head}};
        fmt::print("{}\n", j.dump());
    } else {
        if (!header_printed_) {
            fmt::print("# cpu: {} | threads: {} | isa: {} | OpenMP wait: {} | lm_head: {}\n",
                       cpu_model_name(), num_threads(), isa_name(active_isa()), wait_policy_name(),
                       options_.lm_head);
            fmt::print("{:<40} {:>12} {:<10} {:>8}  {}\n", "benchmark", "value", "unit", "ratio",
                       "reference");
            header_printed_ = true;
        }
        fmt::print("{:<40} {:>12.4g} {:<10} {:>8.3f}  {}\n", r.name, r.value, r.unit, r.ratio,
                   r.reference);
    }
    std::fflush(stdout);
}

double seconds_per_call(const std::function<void()>& fn, double min_seconds, int rounds) {
    using Clock = std::chrono::steady_clock;
    fn();  // warm-up: page faults, caches, thread pool start
    double best = 1e300;
    for (int r = 0; r < rounds; ++r) {
        int64_t calls = 0;
        auto start = Clock::now();
        double elapsed = 0;
        do {
            fn();
            ++calls;
            elapsed = std::chrono::duration<double>(Clock::now() - start).count();
        } while (elapsed < min_seconds);
        best = std::min(best, elapsed / static_cast<double>(calls));
    }
    return best;
}

double measure_read_bandwidth_gbps(size_t bytes) {
    const size_t n = bytes / sizeof(__m128i);
    AlignedBuffer<uint64_t> storage(n * 2);
    // Touch every page with non-zero data so the reads hit real memory, not the zero page.
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n * 2; ++i) storage[i] = i;
    const __m128i* buffer = reinterpret_cast<const __m128i*>(storage.data());
    volatile int sink = 0;
    auto stream = [&] {
        int total = 0;
#pragma omp parallel reduction(+ : total)
        {
            // Four independent accumulators keep several loads in flight per thread.
            __m128i a0 = _mm_setzero_si128(), a1 = a0, a2 = a0, a3 = a0;
            const int64_t count = static_cast<int64_t>(n);
#pragma omp for schedule(static) nowait
            for (int64_t i = 0; i < count; i += 4) {
                a0 = _mm_xor_si128(a0, _mm_load_si128(&buffer[i]));
                a1 = _mm_xor_si128(a1, _mm_load_si128(&buffer[i + 1]));
                a2 = _mm_xor_si128(a2, _mm_load_si128(&buffer[i + 2]));
                a3 = _mm_xor_si128(a3, _mm_load_si128(&buffer[i + 3]));
            }
            __m128i a = _mm_xor_si128(_mm_xor_si128(a0, a1), _mm_xor_si128(a2, a3));
            total += _mm_cvtsi128_si32(a);
        }
        sink = sink + total;
    };
    double seconds = seconds_per_call(stream, 0.5, 3);
    return static_cast<double>(n * sizeof(__m128i)) / seconds / 1e9;
}

void register_bench(CLI::App& app) {
    auto* cmd = app.add_subcommand("bench", "Run benchmarks; each prints its ratio to a reference");
    auto options = std::make_shared<BenchOptions>();
    auto names = std::make_shared<std::vector<std::string>>();
    std::string list;
    for (const auto& e : bench_entries())
        list += fmt::format("\n  {:<12} {}", e.name, e.description);
    cmd->add_option("names", *names, "Benchmarks to run ('all' for every one):" + list)->required();
    cmd->add_option("-t,--threads", options->threads, "Threads (0: all cores)")
        ->check(CLI::Range(0, 4096));
    cmd->add_flag("--json", options->json, "One JSON object per result");
    cmd->add_flag("--quick", options->quick, "Small sizes (smoke test)");
    auto isa = std::make_shared<std::string>();
    cmd->add_option("--isa", *isa, "Force a lower ISA level: scalar, avx2, avx512");
    cmd->add_option("--model", options->model, "Model file for model benchmarks");
    cmd->add_option("--device", options->device, "decode/prompt: run the model on cpu or cuda")
        ->capture_default_str();
    add_lm_head_option(cmd, options->lm_head);
    cmd->callback([options, names, isa] {
        if (!isa->empty()) set_active_isa(parse_isa(*isa));
        set_num_threads(options->threads);
        std::vector<const BenchEntry*> selected;
        for (const auto& name : *names) {
            bool found = false;
            for (const auto& e : bench_entries()) {
                if (name == "all" || name == e.name) {
                    if (std::find(selected.begin(), selected.end(), &e) == selected.end())
                        selected.push_back(&e);
                    found = true;
                }
            }
            check(found, ErrorKind::kInvalidArgument,
                  "unknown benchmark '{}' (see bitttt bench --help)", name);
        }
        BenchReporter reporter(*options);
        for (const auto* e : selected) e->run(*options, reporter);
    });
}

}  // namespace bitttt::cli
