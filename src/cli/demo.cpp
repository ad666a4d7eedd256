// `bitttt demo`: the most complete demonstration the project has until a default model ships
// (`make run` runs it). A standalone TTT layer shows the memory effect of DESIGN.md §2.2 (a
// sequence read twice is reconstructed far better the second time; saving, resetting and
// restoring the state W), then its throughput on the seed's benchmark shape. A few seconds at most.
#include <fmt/format.h>

#include <chrono>
#include <numeric>
#include <vector>

#include "cli/bench.hpp"
#include "cli/commands.hpp"
#include "core/cpu_features.hpp"
#include "core/rng.hpp"
#include "core/threads.hpp"
#include "model/ttt_layer.hpp"

namespace bitttt::cli {
namespace {

std::vector<float> random_sequence(int64_t tokens, int64_t dim, uint64_t seed) {
    Rng rng(seed);
    std::vector<float> x(static_cast<size_t>(tokens * dim));
    for (auto& v : x) v = rng.normal();
    return x;
}

// Runs `x` through the layer and prints the per-token reconstruction errors ‖z − f̂‖.
double read_and_report(TttLayer& layer, const std::vector<float>& x, const char* label) {
    const int64_t tokens = static_cast<int64_t>(x.size()) / layer.hidden_dim();
    std::vector<float> y(x.size()), err(static_cast<size_t>(tokens));
    layer.forward(x.data(), tokens, y.data(), err.data());
    const double mean = std::accumulate(err.begin(), err.end(), 0.0) / static_cast<double>(tokens);
    fmt::print("  {:<28} mean {:.3f} | per token {:.2f}\n", label, mean, fmt::join(err, " "));
    return mean;
}

void memory_demo() {
    // T < Dt and a full step (η = 1): each token writes its own direction into W, so what W
    // recalls is this sequence, not a generic identity map (a fresh sequence shows the difference).
    const int64_t dim = 512, tokens = 8;
    const float lr = 1.0f;
    TttLayer layer(dim, lr);
    fmt::print(
        "TTT layer (reconstruct rule): D={} -> Dt={} -> D, ternary down/up from seed {:#x}, "
        "inner_lr {}\n",
        dim, layer.ttt_dim(), TttLayer::kWeightSeed, lr);
    fmt::print(
        "Reading {} random tokens; reconstruction error |z - f_hat| "
        "(1 = W knew nothing, 0 = perfect recall):\n",
        tokens);
    const auto seq = random_sequence(tokens, dim, 1);
    const double first = read_and_report(layer, seq, "pass 1 (new to W)");
    const double second = read_and_report(layer, seq, "pass 2 (same sequence)");
    std::vector<float> saved(static_cast<size_t>(layer.state_size()));
    layer.get_state(saved.data());
    read_and_report(layer, random_sequence(tokens, dim, 2), "a fresh random sequence");
    layer.reset();
    read_and_report(layer, seq, "after reset()");
    layer.set_state(saved.data());
    read_and_report(layer, seq, "set_state(W after pass 2)");
    fmt::print("Memory effect: the second pass reconstructs {:.1f}x better than the first.\n\n",
               first / second);
}

void throughput_demo() {
    const int64_t dim = 128, tokens = 1000;
    TttLayer layer(dim, 0.1f);
    const auto x = random_sequence(tokens, dim, 3);
    std::vector<float> y(x.size());
    TttLayer::Timings timings;
    layer.set_timings(&timings);
    int64_t calls = 0;
    const double seconds = seconds_per_call(
        [&] {
            layer.forward(x.data(), tokens, y.data());
            ++calls;
        },
        0.2, 2);
    const double tps = static_cast<double>(tokens) / seconds;
    const double total = timings.down_s + timings.scan_s + timings.up_s;
    fmt::print("Throughput, the seed's benchmark shape (D={}, {} tokens per call, inner_lr 0.1):\n",
               dim, tokens);
    fmt::print(
        "  {:.2f} M tokens/s = {:.0f}x the seed's 60,000 tokens/s "
        "(time: down {:.0f}%, scan {:.0f}%, up {:.0f}%)\n",
        tps / 1e6, tps / 60000.0, 100 * timings.down_s / total, 100 * timings.scan_s / total,
        100 * timings.up_s / total);
    fmt::print("  full benchmark: bitttt bench ttt\n");
}

}  // namespace

void register_demo(CLI::App& app) {
    auto* cmd = app.add_subcommand("demo", "Show what the engine can do (used by `make run`)");
    cmd->callback([] {
        const auto start = std::chrono::steady_clock::now();
        fmt::print("bitttt {} | cpu: {} | threads: {}\n", BITTTT_VERSION, cpu_model_name(),
                   num_threads());
        fmt::print(
            "kernels: {} (detected {}): ternary x int8 matmul, activation quantization, "
            "TTT scan; force a level with BITTTT_ISA=scalar|avx2|avx512\n\n",
            isa_name(active_isa()), isa_name(detected_isa()));
        memory_demo();
        throughput_demo();
        fmt::print("\ndemo took {:.2f} s\n",
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    });
}

}  // namespace bitttt::cli
