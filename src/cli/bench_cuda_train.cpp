// `bitttt bench cuda-train`: GPU training throughput (kernels/cuda/train_model.hpp, bf16 products,
// the whole optimizer step with its one host synchronization, random tokens) and device memory.
//
// Cases: the default model D=256/L=8 at context 128 with batch 64 and with a batch that fills much
// of the GPU; D=1024/L=24 at context 1024 (both also with the `delta` rule, one head); and the
// seed's VRAM table (D/L = 256/8, 512/12, 1024/24, batch 16, context 128) whose targets are half
// the seed's stated minimum (1, 2, 4 GB).
//
// Model FLOPs per token (the MFU's numerator, stated so it can be checked): 6 per weight of every
// product (BitLinear, ttt.lr and lm_head: 2 forward, 4 backward; embedding lookups are free) plus
// the TTT scan, 18·Dh² per head and layer (forward: W k, the rank-1 update and W q, 2·Dh² each;
// backward counted as twice the forward; the backward's recomputation of chunk states is not
// counted). MFU = model FLOP/s / the GPU's dense bf16 tensor peak (H100/H200 SXM: 989 TFLOP/s).
// Memory: device bytes in use after the steps minus those in use before the model was built
// (every buffer is allocated at the first step and kept, so this is the high-water mark; it
// includes cuBLAS's workspace but not the CUDA context), next to the model's own allocations; the
// VRAM cases also print where the bytes go (GpuTrainModel::memory_plan).
//
// `bitttt bench cuda-train-mem`: only the VRAM table, with the default fp32 AdamW moments, with
// `--gpu-optimizer-state bf16` (and `--gpu-recompute-mlp`), and lean (`--gpu-optimizer-state int8
// --gpu-grad-precision bf16 --gpu-recompute-mlp`).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "cli/bench.hpp"
#include "core/rng.hpp"
#include "model/config.hpp"
#include "train/model.hpp"

#if BITTTT_HAS_CUDA
#include "cli/bench_cuda_util.hpp"
#include "kernels/cuda/device.hpp"
#include "kernels/cuda/kernels.hpp"
#include "kernels/cuda/train_model.hpp"
#include "kernels/cuda/ttt_scan_train.hpp"
#endif

namespace bitttt::cli {

#if BITTTT_HAS_CUDA
namespace {

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

struct Case {
    const char* label;
    int64_t D, L, B, T;
    double target_gb;  // 0: no memory target
    TttRule rule = TttRule::kReconstruct;
    cuda::GpuMemoryOptions memory = {};
};

double model_flops_per_token(const ModelConfig& c) {
    int64_t weights = 0;
    for (const auto& s : parameter_table(c))
        if (s.kind == ParamKind::kBitLinear || s.kind == ParamKind::kLinear) weights += s.numel();
    const double dh = static_cast<double>(c.head_dim());
    return 6.0 * static_cast<double>(weights) +
           18.0 * dh * dh * static_cast<double>(c.ttt_heads * c.num_layers);
}

// Milliseconds of the TTT scan (forward + backward, every layer) of one step at this shape, on
// random inputs: the scan's share of the step (kernels/cuda/ttt_scan_train.hpp).
double scan_ms_per_step(const ModelConfig& c, int64_t B, int64_t T) {
    const bool delta = c.ttt_rule == TttRule::kDelta;
    const train::TttScanShape s{
        B, T, c.ttt_heads, c.head_dim(), !delta, cuda::ttt_scan_preferred_chunk(c.head_dim())};
    const int64_t n = B * T * c.ttt_dim, ne = B * T * c.ttt_heads;
    cuda::Stream stream;
    cuda::DeviceBuffer q(n * 4), k(n * 4), v(n * 4), y(n * 4), dq(n * 4), dk(n * 4), dv(n * 4);
    cuda::DeviceBuffer eta(ne * 4), deta(ne * 4), ckpt(s.checkpoint_floats() * 4);
    cuda::DeviceBuffer ws(std::max<size_t>(cuda::ttt_scan_workspace_bytes(s), 16));
    // Unit-norm-ish rows (the model feeds L2-normalized keys) and a small step size.
    cuda::fill_random_uniform(q.as<float>(), n, -0.1f, 0.1f, 1, stream);
    cuda::fill_random_uniform(k.as<float>(), n, -0.1f, 0.1f, 2, stream);
    cuda::fill_random_uniform(v.as<float>(), n, -0.1f, 0.1f, 3, stream);
    cuda::fill_random_uniform(eta.as<float>(), ne, 0.0f, 0.1f, 4, stream);
    auto run = [&] {
        const float* e = delta ? eta.as<float>() : nullptr;
        cuda::ttt_scan_forward(y.as<float>(), ckpt.as<float>(), q.as<float>(), k.as<float>(),
                               v.as<float>(), e, 0.1f, s, ws.data(), stream);
        cuda::ttt_scan_backward(dq.as<float>(), dk.as<float>(), dv.as<float>(), deta.as<float>(),
                                y.as<float>(), ckpt.as<float>(), q.as<float>(), k.as<float>(),
                                v.as<float>(), e, 0.1f, s, ws.data(), stream);
    };
    run();
    cuda::EventTimer timer;
    timer.start(stream);
    run();
    timer.stop(stream);
    return timer.elapsed_ms() * static_cast<double>(c.num_layers);
}

void run_cases(const std::vector<Case>& cases, const BenchOptions& options,
               BenchReporter& reporter) {
    const cuda::DeviceInfo info = cuda::device_info();
    const bool hopper =
        info.name.find("H100") != std::string::npos || info.name.find("H200") != std::string::npos;
    const double peak = hopper ? 989e12 : 0.0;
    for (const Case& k : cases) {
        ModelConfig c;
        c.hidden_dim = k.D, c.num_layers = k.L, c.ttt_rule = k.rule;
        c.resolve_and_validate();
        train::TrainModel<float> host(c);  // the initialization (host memory only)
        host.init_random(1);
        const int64_t before = cuda::device_info().free_bytes;
        cuda::GpuTrainModel model(c, cuda::TrainPrecision::kBf16, k.memory);
        model.upload(cuda::GpuTrainModel::Buffer::kParams, host.params.data());
        std::vector<int32_t> in(k.B * k.T), tg(k.B * k.T);
        Rng rng(2);
        for (auto& t : in) t = static_cast<int32_t>(rng.below(c.vocab_size));
        for (auto& t : tg) t = static_cast<int32_t>(rng.below(c.vocab_size));
        int64_t step = 0;
        auto train_step = [&] {
            ++step;
            model.train_step(in.data(), tg.data(), k.B, k.T, 3e-4f, 1.0f, step, {});
        };
        train_step();  // allocates everything
        const double w0 = now_s();
        train_step();
        // Timed steps: at least 5 (2 when a step takes over a second) and at least 2 s (quick: 2).
        const int min_steps = options.quick || now_s() - w0 > 1.0 ? 2 : 5;
        const double t0 = now_s();
        int steps = 0;
        while (steps < min_steps || (!options.quick && now_s() - t0 < 2.0)) {
            train_step();
            ++steps;
        }
        const double dt = (now_s() - t0) / steps;
        const double used = static_cast<double>(before - cuda::device_info().free_bytes);
        const double scan_ms = scan_ms_per_step(c, k.B, k.T);
        // Where a step's time goes: two more steps with events between the phases.
        model.set_phase_timing(true);
        train_step();
        train_step();
        std::string phases;
        auto phase_list = model.phase_ms();
        const bool per_op = phase_list.size() > 12;  // BITTTT_CUDA_PROFILE: a line per op
        if (per_op)
            std::sort(phase_list.begin(), phase_list.end(),
                      [](const auto& a, const auto& b) { return a.second > b.second; });
        for (const auto& [name, ms] : phase_list)
            phases += per_op ? fmt::format("\n    {:8.3f}  {}", ms / 2, name)
                             : fmt::format("{}{} {:.2f}", phases.empty() ? "" : ", ", name, ms / 2);
        model.set_phase_timing(false);
        const double tokens_per_s = static_cast<double>(k.B * k.T) / dt;
        const double flops = model_flops_per_token(c) * tokens_per_s;
        const std::string shape = fmt::format("D{}.L{}.B{}xT{}", k.D, k.L, k.B, k.T);
        reporter.report({fmt::format("cuda_train.{}.{}", k.label, shape), tokens_per_s, "tokens/s",
                         peak > 0 ? fmt::format("MFU vs bf16 peak 989 TFLOP/s ({:.1f} TFLOP/s "
                                                "model, {:.1f} ms/step, TTT scan {:.1f} ms)",
                                                flops / 1e12, dt * 1e3, scan_ms)
                                  : fmt::format("{:.1f} TFLOP/s model (no peak known for {}), "
                                                "TTT scan {:.1f} of {:.1f} ms/step",
                                                flops / 1e12, info.name, scan_ms, dt * 1e3),
                         peak > 0 ? flops / peak : 0.0});
        if (!options.json) fmt::print("  phases of one step (ms): {}\n", phases);
        reporter.report(
            {fmt::format("cuda_train.{}.{}.memory", k.label, shape), used / 1e9, "GB",
             k.target_gb > 0
                 ? fmt::format("target {:.0f} GB (model buffers {:.2f} GB)", k.target_gb,
                               static_cast<double>(model.allocated_bytes()) / 1e9)
                 : fmt::format("model buffers {:.2f} GB of {:.0f} GB",
                               static_cast<double>(model.allocated_bytes()) / 1e9,
                               static_cast<double>(info.memory_bytes) / 1e9),
             k.target_gb > 0 ? used / 1e9 / k.target_gb : 0.0});
        if (k.target_gb > 0 && !options.json) {
            const auto plan = cuda::GpuTrainModel::memory_plan(c, cuda::TrainPrecision::kBf16,
                                                               k.memory, k.B, k.T);
            int64_t total = 0;
            std::string lines;
            for (const auto& item : plan) {
                total += item.bytes;
                lines += fmt::format("    {:<48} {:8.1f} MB\n", item.name,
                                     static_cast<double>(item.bytes) / 1e6);
            }
            fmt::print(
                "  where the bytes go (plan {:.3f} GB; measured {:.3f} GB, the rest is "
                "allocation rounding and cuBLAS/CUDA internals):\n{}",
                static_cast<double>(total) / 1e9, used / 1e9, lines);
        }
    }
}

// The seed's VRAM table: batch 16, context 128; targets half the seed's minimum.
std::vector<Case> vram_cases(bool with_bf16_moments) {
    std::vector<Case> cases = {{"vram", 256, 8, 16, 128, 1.0},
                               {"vram", 512, 12, 16, 128, 2.0},
                               {"vram", 1024, 24, 16, 128, 4.0}};
    if (with_bf16_moments)
        for (int i = 0; i < 3; ++i) {
            Case k = cases[static_cast<size_t>(i)];
            k.label = "vram.bf16_moments";
            k.memory.moments = cuda::OptimizerState::kBf16;
            cases.push_back(k);
            k.label = "vram.bf16_moments.recompute_mlp";
            k.memory.recompute_mlp = true;
            cases.push_back(k);
            // The memory-lean state: int8 moments, bf16 gradients, the MLP branch recomputed.
            k.label = "vram.lean";
            k.memory.moments = cuda::OptimizerState::kInt8;
            k.memory.grads = cuda::GradPrecision::kBf16;
            cases.push_back(k);
        }
    return cases;
}

// BITTTT_CUDA_TRAIN_CASES=large,large.delta: only the cases of these labels (device calls that
// measure one config; cuda-train-mem: vram.lean and so on).
std::vector<Case> only_selected(std::vector<Case> cases) {
    if (const char* only = std::getenv("BITTTT_CUDA_TRAIN_CASES")) {
        const std::string list = std::string(",") + only + ",";
        std::erase_if(cases, [&](const Case& k) {
            return list.find(std::string(",") + k.label + ",") == std::string::npos;
        });
    }
    return cases;
}

}  // namespace

void bench_cuda_train(const BenchOptions& options, BenchReporter& reporter) {
    if (!have_gpu("cuda-train")) return;
    std::vector<Case> cases;
    if (options.quick) {
        cases = {{"quick", 128, 2, 4, 64, 0}};
    } else {
        cases = {{"default", 256, 8, 64, 128, 0},
                 {"default.delta", 256, 8, 64, 128, 0, TttRule::kDelta},
                 {"default.fill", 256, 8, 1024, 128, 0},
                 {"large", 1024, 24, 16, 1024, 0},
                 {"large.delta", 1024, 24, 16, 1024, 0, TttRule::kDelta}};
        // Throughput as `bitttt train --device cuda` runs it on a large GPU: its default
        // (--gpu-activations auto) keeps the activations when they fit. The VRAM rows below
        // measure the memory-lean setting (recompute), which auto picks on a small GPU.
        for (Case& k : cases) k.memory.keep_activations = true;
        for (const Case& k : vram_cases(false)) cases.push_back(k);
    }
    run_cases(only_selected(std::move(cases)), options, reporter);
}

void bench_cuda_train_mem(const BenchOptions& options, BenchReporter& reporter) {
    if (!have_gpu("cuda-train-mem")) return;
    // --quick: the time the default's recomputation costs, at the default config.
    std::vector<Case> quick = {{"default", 256, 8, 64, 128, 0},
                               {"default.keep_activations", 256, 8, 64, 128, 0}};
    quick[1].memory.keep_activations = true;
    run_cases(only_selected(options.quick ? quick : vram_cases(true)), options, reporter);
}
#else
void bench_cuda_train(const BenchOptions&, BenchReporter&) {
    fmt::print(stderr,
               "bench cuda-train: skipped: bitttt was built without CUDA (no nvcc at configure "
               "time)\n");
}
void bench_cuda_train_mem(const BenchOptions&, BenchReporter&) {
    fmt::print(stderr,
               "bench cuda-train-mem: skipped: bitttt was built without CUDA (no nvcc at "
               "configure time)\n");
}
#endif

}  // namespace bitttt::cli
