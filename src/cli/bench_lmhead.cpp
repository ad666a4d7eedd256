// `bitttt bench lmhead`: the decode step's lm_head GEMV (one token) at V x D = 32000 x 2048 (the
// llama.cpp side-by-side `big` shape; --quick: 8192 x 256) with each CPU lm_head
// (DeviceOptions::lm_head): fp32, bf16 (the default) and int8 (the int8 one includes quantizing
// the activation, as the forward does). Each prints the weight bytes streamed per second against
// the read bandwidth measured in the same run, and its time per call against bf16's.
#include <fmt/format.h>

#include <functional>
#include <vector>

#include "cli/bench.hpp"
#include "core/aligned_buffer.hpp"
#include "core/rng.hpp"
#include "io/safetensors.hpp"
#include "kernels/cpu/bf16_matmul.hpp"
#include "kernels/cpu/f32_matmul.hpp"
#include "kernels/cpu/int8_matmul.hpp"
#include "kernels/cpu/ternary.hpp"

namespace bitttt::cli {

void bench_lmhead(const BenchOptions& options, BenchReporter& reporter) {
    const int64_t V = options.quick ? 8192 : 32000, D = options.quick ? 256 : 2048;
    const double bandwidth =
        measure_read_bandwidth_gbps(options.quick ? size_t{64} << 20 : size_t{1} << 30);
    Rng rng(3);
    AlignedBuffer<float> w(static_cast<size_t>(V * D)), x(static_cast<size_t>(D));
    for (auto& v : w) v = rng.normal() * 0.02f;
    for (auto& v : x) v = rng.normal();
    AlignedBuffer<uint16_t> w16(w.size());
    for (size_t i = 0; i < w.size(); ++i) w16[i] = io::f32_to_bf16(w[i]);
    AlignedBuffer<int8_t> q(static_cast<size_t>(V * kernels::int8_row_stride(D)));
    AlignedBuffer<float> scale(static_cast<size_t>(V)), act_scale(1);
    AlignedBuffer<int32_t> row_sum(static_cast<size_t>(V));
    kernels::quantize_int8_rows(w.data(), V, D, q.data(), scale.data(), row_sum.data());
    const kernels::Int8Weights w8{q.data(), scale.data(), row_sum.data(), V, D};
    AlignedBuffer<int8_t> xq(static_cast<size_t>(kernels::int8_row_stride(D)));
    std::vector<float> y(static_cast<size_t>(V));
    const double min_seconds = options.quick ? 0.05 : 0.5;

    struct Head {
        const char* name;
        double bytes;
        std::function<void()> call;
    };
    const auto values = static_cast<double>(V * D);
    const Head heads[] = {
        {"bf16", values * 2,
         [&] { kernels::bf16_matmul(w16.data(), V, D, x.data(), D, 1, y.data(), V); }},
        {"f32", values * 4,
         [&] { kernels::f32_matmul(w.data(), V, D, x.data(), D, 1, y.data(), V); }},
        {"int8", static_cast<double>(V * (kernels::int8_row_stride(D) + 4)),
         [&] {
             kernels::quantize_activations(x.data(), 1, D, D, xq.data(), D, act_scale.data());
             kernels::int8_matmul(w8, xq.data(), D, act_scale.data(), 1, y.data(), V);
         }},
    };
    double bf16_seconds = 0;
    for (const Head& h : heads) {
        const double s = seconds_per_call(h.call, min_seconds, 5);
        if (bf16_seconds == 0) bf16_seconds = s;
        const double gbps = h.bytes / s / 1e9;
        const std::string name = fmt::format("lmhead.{}.{}x{}", h.name, V, D);
        reporter.report({name, gbps, "GB/s",
                         fmt::format("read bandwidth {:.1f} GB/s ({:.0f} MB per call)", bandwidth,
                                     h.bytes / 1e6),
                         gbps / bandwidth});
        reporter.report(
            {name + ".us", s * 1e6, "us/call",
             fmt::format("bf16 {:.0f} us/call (ratio: bf16 time / this)", bf16_seconds * 1e6),
             bf16_seconds / s});
    }
}

}  // namespace bitttt::cli
