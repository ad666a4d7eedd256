// `bitttt bench train`: CPU training throughput (forward + backward + AdamW on random tokens)
// at D=256/L=8 and D=128/L=4 (vocab 16384, batch 16 x 128 tokens as the defaults; --quick: 2 x 64),
// with the share of the step spent in the TTT scan (forward + backward). The reference is the
// rate the step's matrix work would allow at the fp32 GEMM throughput measured in the same run
// (ratio = achieved / that bound), so the ratio says how much goes to everything else.
#include <fmt/format.h>

#include <chrono>
#include <vector>

#include "cli/bench.hpp"
#include "core/aligned_buffer.hpp"
#include "core/rng.hpp"
#include "train/gemm.hpp"
#include "train/model.hpp"
#include "train/optimizer.hpp"

namespace bitttt::cli {
namespace {

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// fp32 GEMM throughput of the training kernel on a square-ish product (GFLOP/s).
double measure_gemm_gflops(bool quick) {
    const int64_t m = quick ? 256 : 1024, n = 1024, k = 256;
    AlignedBuffer<float> a(m * k), b(k * n), c(m * n);
    Rng rng(1);
    for (auto& v : a) v = rng.normal();
    for (auto& v : b) v = rng.normal();
    const double s = seconds_per_call(
        [&] { train::gemm(c.data(), a.data(), k, int64_t{1}, b.data(), m, n, k, 1.0f, false); },
        0.3, 3);
    return 2.0 * m * n * k / s / 1e9;
}

}  // namespace

void bench_train(const BenchOptions& options, BenchReporter& reporter) {
    const double gemm_gflops = measure_gemm_gflops(options.quick);
    reporter.report(
        {"train.gemm_f32", gemm_gflops, "GFLOP/s", "training GEMM, 1024x1024x256", 0.0});
    const int64_t B = options.quick ? 2 : 16, T = options.quick ? 64 : 128;
    for (auto [D, L] : {std::pair<int64_t, int64_t>{256, 8}, {128, 4}}) {
        ModelConfig c;
        c.hidden_dim = D, c.num_layers = L;
        c.resolve_and_validate();
        train::TrainModel<float> model(c);
        model.init_random(1);
        AlignedBuffer<float> m(model.params.size()), v(model.params.size());
        std::vector<int32_t> in(B * T), tgt(B * T);
        Rng rng(2);
        for (auto& t : in) t = static_cast<int32_t>(rng.below(c.vocab_size));
        for (auto& t : tgt) t = static_cast<int32_t>(rng.below(c.vocab_size));
        int64_t step = 0;
        auto train_step = [&] {
            model.forward(in.data(), tgt.data(), B, T);
            model.zero_grad();
            model.backward();
            const double norm = train::global_norm(model.grads.data(), model.layout().total);
            const float scale = norm > 1.0 ? static_cast<float>(1.0 / norm) : 1.0f;
            ++step;
            for (size_t i = 0; i < model.layout().specs.size(); ++i) {
                const int64_t off = model.layout().offsets[i];
                train::adamw_update(model.param(i), model.grad(i), m.data() + off, v.data() + off,
                                    model.layout().specs[i].numel(), 3e-4f, scale, step,
                                    model.layout().specs[i].weight_decay(), {});
            }
        };
        train_step();  // warm-up (allocates the activations)
        const int steps = options.quick ? 1 : 3;
        model.ttt_scan_seconds = 0;
        double best = 1e30, total = 0;
        for (int i = 0; i < steps; ++i) {
            const double t0 = now_s();
            train_step();
            const double dt = now_s() - t0;
            best = std::min(best, dt);
            total += dt;
        }
        const double scan_share = model.ttt_scan_seconds / total;
        // Matrix FLOPs per token: 2 per weight in the forward, 4 in the backward (lm_head included;
        // embedding lookups are free).
        int64_t matrix_weights = 0;
        for (const auto& s : model.layout().specs)
            if (s.kind == ParamKind::kBitLinear || s.kind == ParamKind::kLinear)
                matrix_weights += s.numel();
        const double bound_tokens_per_s = gemm_gflops * 1e9 / (6.0 * matrix_weights);
        const double tokens_per_s = static_cast<double>(B * T) / best;
        reporter.report({fmt::format("train.D{}.L{}.B{}xT{}", D, L, B, T), tokens_per_s, "tokens/s",
                         fmt::format("GEMM bound {:.0f} tok/s; TTT scan {:.1f}% of the step",
                                     bound_tokens_per_s, 100.0 * scan_share),
                         tokens_per_s / bound_tokens_per_s});
    }
}

}  // namespace bitttt::cli
