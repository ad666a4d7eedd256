// `bitttt bench train`: CPU training throughput (forward + backward + AdamW on random tokens)
// at D=256/L=8 and D=128/L=4 (vocab 16384, batch 16 x 128 tokens as the defaults; --quick: 2 x 64),
// with the share of the step spent in the TTT scan (forward + backward). The reference is the
// rate the step's matrix work would allow at the fp32 GEMM throughput measured in the same run
// (ratio = achieved / that bound), so the ratio says how much goes to everything else.
//
// For side-by-side runs (bench/cpu_train_compare.py): BITTTT_BENCH_TRAIN_CASES picks the shapes
// ("256x8,128x4" = D x L, the default), BITTTT_BENCH_TRAIN_RULE the TTT rule (reconstruct,
// delta), BITTTT_BENCH_TRAIN_STEPS the timed steps (3; the best is reported), and
// BITTTT_TRAIN_BITLINEAR the forward BitLinear products (int8, the default; fp32; fake: the
// fake-quantized floats through the fp32 GEMM, as before the integer path) and
// BITTTT_TRAIN_PRECISION the products (fp32, the default; bf16: `train --cpu-precision bf16`;
// bf16-lmhead: lm_head only in bf16; the rows get a ".bf16" / ".bf16lm" suffix).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "cli/bench.hpp"
#include "core/aligned_buffer.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "train/gemm.hpp"
#include "train/gemm_bf16.hpp"
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

// The bf16 product's throughput on the same shape, its operands packed each call as training
// packs them (GFLOP/s).
double measure_gemm_bf16_gflops(bool quick) {
    const int64_t m = quick ? 256 : 1024, n = 1024, k = 256;
    AlignedBuffer<float> a(m * k), b(k * n), c(m * n);
    Rng rng(1);
    for (auto& v : a) v = rng.normal();
    for (auto& v : b) v = rng.normal();
    train::Bf16Panels pa, pb;
    const double s = seconds_per_call(
        [&] {
            train::pack_bf16_a(pa, a.data(), k, 1, m, k);
            train::pack_bf16_b(pb, b.data(), n, 1, k, n);
            train::gemm_bf16(c.data(), pa, pb, 1.0f, false);
        },
        0.3, 3);
    return 2.0 * m * n * k / s / 1e9;
}

std::string env_or(const char* name, const char* fallback) {
    const char* v = std::getenv(name);
    return v && *v ? v : fallback;
}

// "256x8,128x4" -> {(256, 8), (128, 4)}; a clear error for anything else.
std::vector<std::pair<int64_t, int64_t>> parse_cases(const std::string& text) {
    std::vector<std::pair<int64_t, int64_t>> cases;
    size_t pos = 0;
    while (pos <= text.size()) {
        const size_t end = std::min(text.find(',', pos), text.size());
        const std::string item = text.substr(pos, end - pos);
        long long d = 0, l = 0;
        int used = 0;
        check(std::sscanf(item.c_str(), "%lldx%lld%n", &d, &l, &used) == 2 &&
                  used == static_cast<int>(item.size()) && d > 0 && d <= 8192 && l > 0 && l <= 256,
              ErrorKind::kInvalidArgument,
              "BITTTT_BENCH_TRAIN_CASES: '{}' is not DxL (e.g. 256x8,128x4)", item);
        cases.emplace_back(d, l);
        pos = end + 1;
    }
    return cases;
}

train::BitLinearPath parse_bitlinear_path(const std::string& text) {
    if (text == "int8") return train::BitLinearPath::kInt8;
    if (text == "fp32") return train::BitLinearPath::kFp32;
    if (text == "fake") return train::BitLinearPath::kFakeQuant;
    fail(ErrorKind::kInvalidArgument, "BITTTT_TRAIN_BITLINEAR: '{}' is not int8, fp32 or fake",
         text);
}

}  // namespace

void bench_train(const BenchOptions& options, BenchReporter& reporter) {
    const double gemm_gflops = measure_gemm_gflops(options.quick);
    reporter.report(
        {"train.gemm_f32", gemm_gflops, "GFLOP/s", "training GEMM, 1024x1024x256", 0.0});
    const std::string precision = env_or("BITTTT_TRAIN_PRECISION", "fp32");
    check(precision == "fp32" || precision == "bf16" || precision == "bf16-lmhead",
          ErrorKind::kInvalidArgument,
          "BITTTT_TRAIN_PRECISION: '{}' is not fp32, bf16 or bf16-lmhead", precision);
    if (precision != "fp32") {
        const double bf16_gflops = measure_gemm_bf16_gflops(options.quick);
        reporter.report({"train.gemm_bf16", bf16_gflops, "GFLOP/s",
                         fmt::format("{} kernel, operands packed; ratio to train.gemm_f32",
                                     train::bf16_kernel_name(train::bf16_kernel_available())),
                         bf16_gflops / gemm_gflops});
    }
    const int64_t B = options.quick ? 2 : 16, T = options.quick ? 64 : 128;
    const auto cases = parse_cases(env_or("BITTTT_BENCH_TRAIN_CASES", "256x8,128x4"));
    const TttRule rule = parse_ttt_rule(env_or("BITTTT_BENCH_TRAIN_RULE", "reconstruct"));
    const auto path = parse_bitlinear_path(env_or("BITTTT_TRAIN_BITLINEAR", "int8"));
    const int steps =
        options.quick ? 1 : std::atoi(env_or("BITTTT_BENCH_TRAIN_STEPS", "3").c_str());
    check(steps >= 1 && steps <= 1000, ErrorKind::kInvalidArgument,
          "BITTTT_BENCH_TRAIN_STEPS must be in [1, 1000]");
    for (auto [D, L] : cases) {
        ModelConfig c;
        c.hidden_dim = D, c.num_layers = L, c.ttt_rule = rule;
        c.resolve_and_validate();
        train::TrainModel<float> model(c);
        model.init_random(1);
        model.bitlinear_path = path;
        model.bf16_products = precision != "fp32";
        model.bf16_bitlinear_backward = precision == "bf16";
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
        const std::string suffix =
            fmt::format("{}{}{}", rule == TttRule::kDelta ? ".delta" : "",
                        path == train::BitLinearPath::kInt8
                            ? ""
                            : (path == train::BitLinearPath::kFp32 ? ".fp32" : ".fake"),
                        precision == "fp32" ? "" : (precision == "bf16" ? ".bf16" : ".bf16lm"));
        reporter.report({fmt::format("train.D{}.L{}.B{}xT{}{}", D, L, B, T, suffix), tokens_per_s,
                         "tokens/s",
                         fmt::format("GEMM bound {:.0f} tok/s; TTT scan {:.1f}% of the step",
                                     bound_tokens_per_s, 100.0 * scan_share),
                         tokens_per_s / bound_tokens_per_s});
    }
}

}  // namespace bitttt::cli
