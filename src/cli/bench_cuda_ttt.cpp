// `bitttt bench cuda-ttt-scan`: the TTT scan of training on the GPU (kernels/cuda/ttt_scan_train),
// forward and forward+backward tokens/s at the shapes the trainer runs, next to the CPU scan
// (train::ttt_scan_forward/backward, all threads) and the simple GPU version measured in the same
// run. Arithmetic: ~6·Dh² flops per token and head forward, ~24·Dh² forward+backward (the backward
// recomputes each chunk from its checkpoint and then walks it back: 4 + 14 Dh²).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <vector>

#include "cli/bench.hpp"

#if BITTTT_HAS_CUDA
#include "cli/bench_cuda_util.hpp"
#include "kernels/cuda/device.hpp"
#include "kernels/cuda/kernels.hpp"
#include "kernels/cuda/ttt_scan_train.hpp"
#include "train/ttt_bptt.hpp"
#endif

namespace bitttt::cli {

#if BITTTT_HAS_CUDA
namespace {

struct ScanConfig {
    const char* name;
    int64_t B, T, H, Dh;
    bool read_before;  // reconstruct (q = k = v, constant η) or delta (per-token η)
};

void bench_one(const ScanConfig& c, bool quick, BenchReporter& reporter) {
    const train::TttScanShape s{c.B, c.T, c.H, c.Dh, c.read_before, 16};
    const int64_t n = c.B * c.T * c.H * c.Dh, nh = c.B * c.T * c.H;
    const double tokens = static_cast<double>(c.B * c.T);
    cuda::Stream stream;
    // Keys of norm ~1 (uniform in ±sqrt(3/Dh)) keep η‖k‖² < 2: a stable recurrence.
    const float amp = std::sqrt(3.0f / static_cast<float>(c.Dh));
    cuda::DeviceBuffer q(n * 4), k(n * 4), v(n * 4), eta(nh * 4), dy(n * 4), y(n * 4);
    cuda::DeviceBuffer dq(n * 4), dk(n * 4), dv(n * 4), deta(nh * 4);
    cuda::DeviceBuffer ck(static_cast<size_t>(s.checkpoint_floats()) * 4);
    cuda::DeviceBuffer ws(std::max<size_t>(cuda::ttt_scan_workspace_bytes(s), 16));
    cuda::fill_random_uniform(q.as<float>(), n, -amp, amp, 1, stream);
    cuda::fill_random_uniform(k.as<float>(), n, -amp, amp, 2, stream);
    cuda::fill_random_uniform(v.as<float>(), n, -1.0f, 1.0f, 3, stream);
    cuda::fill_random_uniform(dy.as<float>(), n, -1.0f, 1.0f, 4, stream);
    cuda::fill_random_uniform(eta.as<float>(), nh, 0.1f, 0.5f, 5, stream);
    dq.fill_bytes(0), dk.fill_bytes(0), dv.fill_bytes(0), deta.fill_bytes(0);
    // reconstruct: one input for q, k, v and one gradient buffer, as the model calls it.
    const float* fq = c.read_before ? k.as<float>() : q.as<float>();
    const float* fv = c.read_before ? k.as<float>() : v.as<float>();
    float* gk = c.read_before ? dq.as<float>() : dk.as<float>();
    float* gv = c.read_before ? dq.as<float>() : dv.as<float>();
    const float* feta = c.read_before ? nullptr : eta.as<float>();
    auto forward = [&] {
        cuda::ttt_scan_forward(y.as<float>(), ck.as<float>(), fq, k.as<float>(), fv, feta, 0.3f, s,
                               ws.data(), stream);
    };
    auto forward_backward = [&] {
        forward();
        cuda::ttt_scan_backward(dq.as<float>(), gk, gv, deta.as<float>(), dy.as<float>(),
                                ck.as<float>(), fq, k.as<float>(), fv, feta, 0.3f, s, ws.data(),
                                stream);
    };
    const int reps = quick ? 3 : 7;
    const double fwd_ms = median_device_ms(stream, forward, reps, 1, 1);
    const double both_ms = median_device_ms(stream, forward_backward, reps, 1, 1);
    // The simple version, where it finishes in reasonable time.
    double simple_ms = 0;
    if (static_cast<double>(n) * c.Dh <= 3e9) {
        cuda::ttt_scan_force_simple(true);
        cuda::DeviceBuffer ws_simple(std::max<size_t>(cuda::ttt_scan_workspace_bytes(s), 16));
        std::swap(ws, ws_simple);
        simple_ms = median_device_ms(stream, forward_backward, 1, 1, 1);
        std::swap(ws, ws_simple);
        cuda::ttt_scan_force_simple(false);
    }

    // The CPU scan on the first B_cpu sequences (the same data), one timed run each.
    const int64_t b_cpu = std::min<int64_t>(c.B, quick ? 2 : 16);
    const train::TttScanShape sc{b_cpu, c.T, c.H, c.Dh, c.read_before, 16};
    const auto cn = static_cast<size_t>(b_cpu * c.T * c.H * c.Dh);
    std::vector<float> hk(cn), hq(cn), hv(cn), hdy(cn),
        heta(static_cast<size_t>(b_cpu * c.T * c.H));
    k.copy_to_host(hk.data(), cn * 4), q.copy_to_host(hq.data(), cn * 4);
    v.copy_to_host(hv.data(), cn * 4), dy.copy_to_host(hdy.data(), cn * 4);
    eta.copy_to_host(heta.data(), heta.size() * 4);
    std::vector<float> hy(cn), hck(static_cast<size_t>(sc.checkpoint_floats())), g(cn * 3, 0.0f),
        gdeta(heta.size(), 0.0f);
    const float* cq = c.read_before ? hk.data() : hq.data();
    const float* cv = c.read_before ? hk.data() : hv.data();
    const float* ceta = c.read_before ? nullptr : heta.data();
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    train::ttt_scan_forward<float>(hy.data(), hck.data(), cq, hk.data(), cv, ceta, 0.3f, sc);
    const auto t1 = clock::now();
    train::ttt_scan_backward<float>(g.data(), g.data() + cn, g.data() + 2 * cn, gdeta.data(),
                                    hdy.data(), hck.data(), cq, hk.data(), cv, ceta, 0.3f, sc);
    const auto t2 = clock::now();
    const double cpu_tokens = static_cast<double>(b_cpu * c.T);
    const double cpu_fwd = cpu_tokens / std::chrono::duration<double>(t1 - t0).count();
    const double cpu_both = cpu_tokens / std::chrono::duration<double>(t2 - t0).count();

    const double fwd_tps = tokens / (fwd_ms * 1e-3), both_tps = tokens / (both_ms * 1e-3);
    const std::string shape = fmt::format(
        "{}: B={} T={} H={} Dh={}", c.read_before ? "reconstruct" : "delta", c.B, c.T, c.H, c.Dh);
    reporter.report({fmt::format("cuda.ttt_scan.{}.fwd", c.name), fwd_tps, "tokens/s",
                     fmt::format("{}; CPU scan {:.3g} tokens/s", shape, cpu_fwd),
                     fwd_tps / cpu_fwd});
    reporter.report({fmt::format("cuda.ttt_scan.{}.fwd_bwd", c.name), both_tps, "tokens/s",
                     fmt::format("CPU scan {:.3g} tokens/s", cpu_both), both_tps / cpu_both});
    const double gflops = 24.0 * c.Dh * c.Dh * c.H * tokens / (both_ms * 1e-3) / 1e9;
    if (simple_ms > 0)
        reporter.report(
            {fmt::format("cuda.ttt_scan.{}.fwd_bwd.gflops", c.name), gflops, "GFLOP/s",
             fmt::format("simple GPU version {:.3g} tokens/s", tokens / (simple_ms * 1e-3)),
             simple_ms / both_ms});
    else
        reporter.report({fmt::format("cuda.ttt_scan.{}.fwd_bwd.gflops", c.name), gflops, "GFLOP/s",
                         "24·Dh²·H flops per token", 0.0});
}

}  // namespace

void bench_cuda_ttt_scan_entry(const BenchOptions& options, BenchReporter& reporter) {
    if (!have_gpu("cuda-ttt-scan")) return;
    cuda::require_device("bench cuda-ttt-scan");
    std::vector<ScanConfig> configs;
    if (options.quick) {
        configs = {{"D256.B4.T128", 4, 128, 1, 64, true}, {"delta.H2.Dh32", 2, 64, 2, 32, false}};
    } else {
        configs = {
            {"D256.B16.T128", 16, 128, 1, 64, true},
            {"D256.B64.T128", 64, 128, 1, 64, true},
            {"D512.B64.T128", 64, 128, 1, 128, true},
            {"D512.B16.T1024", 16, 1024, 1, 128, true},
            {"D1024.B64.T128", 64, 128, 1, 256, true},
            {"D1024.B16.T1024", 16, 1024, 1, 256, true},
            {"delta.D256.H1.B64.T128", 64, 128, 1, 64, false},
            {"delta.D512.H4.B16.T1024", 16, 1024, 4, 32, false},
            {"delta.D1024.H8.B16.T1024", 16, 1024, 8, 32, false},
            {"delta.D1024.H4.B16.T1024", 16, 1024, 4, 64, false},
        };
    }
    for (const auto& c : configs) bench_one(c, options.quick, reporter);
}

#else  // no CUDA backend in this build

void bench_cuda_ttt_scan_entry(const BenchOptions&, BenchReporter&) {
    fmt::print(stderr,
               "bench cuda-ttt-scan: skipped: bitttt was built without CUDA (no nvcc at configure "
               "time)\n");
}

#endif

}  // namespace bitttt::cli
