// `bitttt bench ttt`: the seed's benchmark, one TTT layer with D = 128 over T = 1000 tokens
// through the C ABI (ttt_forward), against the seed's reported 60,000 tokens/s and against our
// scalar path measured in the same run; then where the time goes (down / scan / up) and the scan
// kernel alone at larger state sizes.
#include <fmt/format.h>

#include <vector>

#include "bitttt.h"
#include "cli/bench.hpp"
#include "core/cpu_features.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "kernels/cpu/ttt_scan.hpp"
#include "model/ttt_layer.hpp"

namespace bitttt::cli {
namespace {

constexpr double kSeedTokensPerS = 60000.0;  // the original implementation's README figure

std::vector<float> random_normal(size_t n, uint64_t seed) {
    Rng rng(seed);
    std::vector<float> v(n);
    for (auto& x : v) x = rng.normal();
    return v;
}

// Runs fn with the kernels forced to `isa`, restoring the previous level afterwards.
template <typename Fn>
auto with_isa(Isa isa, Fn&& fn) {
    const Isa saved = active_isa();
    set_active_isa(isa);
    try {
        auto result = fn();
        set_active_isa(saved);
        return result;
    } catch (...) {
        set_active_isa(saved);
        throw;
    }
}

// Tokens per second of ttt_forward over `tokens` tokens of width `dim` (the state keeps learning
// across calls, as in real use).
double capi_tokens_per_s(size_t dim, size_t tokens, double min_seconds) {
    void* model = ttt_create(dim, 0.1f);
    check(model != nullptr, ErrorKind::kInternal, "ttt_create failed: {}", bitttt_last_error());
    auto input = random_normal(tokens * dim, 1);
    std::vector<float> output(input.size());
    int status = BITTTT_OK;
    double seconds = seconds_per_call(
        [&] { status |= ttt_forward(model, input.data(), tokens, output.data()); }, min_seconds);
    ttt_destroy(model);
    check(status == BITTTT_OK, ErrorKind::kInternal, "ttt_forward failed");
    return static_cast<double>(tokens) / seconds;
}

double scan_tokens_per_s(int64_t dt, int64_t tokens, double min_seconds) {
    auto f = random_normal(static_cast<size_t>(tokens * dt), 2);
    std::vector<float> s(static_cast<size_t>(dt * dt), 0.0f), z(f.size());
    double seconds = seconds_per_call(
        [&] {
            kernels::ttt_scan_reconstruct(s.data(), dt, 0.1f, f.data(), dt, tokens, z.data(), dt);
        },
        min_seconds);
    return static_cast<double>(tokens) / seconds;
}

}  // namespace

void bench_ttt(const BenchOptions& options, BenchReporter& reporter) {
    const size_t dim = 128, tokens = options.quick ? 200 : 1000;
    const double min_s = options.quick ? 0.05 : 0.3;
    const std::string isa(isa_name(active_isa()));

    const double tps = capi_tokens_per_s(dim, tokens, min_s);
    const double scalar_tps =
        with_isa(Isa::kScalar, [&] { return capi_tokens_per_s(dim, tokens, min_s); });
    const std::string name = fmt::format("ttt.capi.D{}.T{}", dim, tokens);
    reporter.report(
        {name + "." + isa, tps, "tokens/s", "seed's 60,000 tokens/s", tps / kSeedTokensPerS});
    reporter.report({name + ".scalar", scalar_tps, "tokens/s", "seed's 60,000 tokens/s",
                     scalar_tps / kSeedTokensPerS});
    reporter.report({name + "." + isa + ".vs_scalar", tps, "tokens/s",
                     fmt::format("scalar path {:.0f} tokens/s", scalar_tps), tps / scalar_tps});

    // Where one forward's time goes (TttLayer directly: the C ABI adds a lock and a lookup).
    {
        TttLayer layer(static_cast<int64_t>(dim), 0.1f);
        auto input = random_normal(tokens * dim, 3);
        std::vector<float> output(input.size());
        TttLayer::Timings timings;
        layer.set_timings(&timings);
        int64_t calls = 0;
        seconds_per_call(
            [&] {
                layer.forward(input.data(), static_cast<int64_t>(tokens), output.data());
                ++calls;
            },
            min_s);
        const double total = timings.down_s + timings.scan_s + timings.up_s;
        const double per_call_us = 1e6 / static_cast<double>(calls);
        for (auto [part, s] : {std::pair{"down", timings.down_s}, std::pair{"scan", timings.scan_s},
                               std::pair{"up", timings.up_s}})
            reporter.report({fmt::format("{}.split.{}", name, part), s * per_call_us, "us/call",
                             "share of the layer's time", s / total});
    }

    // The scan kernel alone, against its scalar reference, at the usual state sizes.
    for (int64_t dt : {32, 64, 256}) {
        const int64_t scan_tokens = options.quick ? 50 : 1000;
        const double simd = scan_tokens_per_s(dt, scan_tokens, min_s);
        const double scalar =
            with_isa(Isa::kScalar, [&] { return scan_tokens_per_s(dt, scan_tokens, min_s); });
        reporter.report({fmt::format("ttt.scan.Dt{}.{}", dt, isa), simd, "tokens/s",
                         fmt::format("scalar scan {:.0f} tokens/s", scalar), simd / scalar});
    }
}

}  // namespace bitttt::cli
