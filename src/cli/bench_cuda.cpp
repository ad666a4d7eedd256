// `bitttt bench cuda-gemv` and `bitttt bench cuda-decode`: the CUDA kernels against the GPU's
// memory bandwidth measured in the same run (a streaming read kernel, and a device-to-device copy).
//
// cuda-decode runs the decode step of a 70B-class Bit-TTT model whose weights are generated on the
// GPU (D = 8192, 80 layers, MLP 28672, vocabulary 128256, TTT `reconstruct` with Dt = D/4): per
// token and layer RMSNorm+quantize, ttt.down, the TTT state step, quantize, ttt.up (+ residual),
// RMSNorm+quantize, gate+up, SiLU·quantize, down (+ residual); then the final norm and a bf16
// lm_head. The whole token is one CUDA graph. Bytes per token: the packed ternary weights
// (~14.7 GB), the bf16 lm_head (2.1 GB) and the fp32 TTT states, read and written (2.7 GB).
// The measured token runs the GEMVs that quantize their float input on the fly (gemv_float.hpp:
// 5 kernels per layer); the same token with separate norm/quantize kernels (9 per layer) runs in
// the same process as the reference.
#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cli/bench.hpp"
#include "core/error.hpp"

#if BITTTT_HAS_CUDA
#include "cli/bench_cuda_util.hpp"
#include "kernels/cpu/ternary.hpp"
#include "kernels/cuda/device.hpp"
#include "kernels/cuda/gemv_float.hpp"
#include "kernels/cuda/kernels.hpp"
#include "kernels/cuda/model_kernels.hpp"
#endif

namespace bitttt::cli {

#if BITTTT_HAS_CUDA
namespace {

using kernels::packed_bytes;
using kernels::packed_cols;
using kernels::TernaryWeights;

// Equal bits, not equal values (NaN matches NaN, -0 differs from +0): the decode variants are
// meant to give the same bits.
bool same_bits(float a, float b) {
    return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
}

struct Bandwidth {
    double read_gbps = 0;  // streaming read kernel
    double copy_gbps = 0;  // device-to-device copy, bytes read + bytes written
};

Bandwidth measure_bandwidth(const cuda::Stream& stream, bool quick) {
    const size_t bytes = quick ? (size_t{256} << 20) : (size_t{2} << 30);
    cuda::DeviceBuffer buffer(bytes), sink(cuda::kReadProbeMaxBlocks * sizeof(uint32_t));
    cuda::fill_random_bf16(buffer.as<uint16_t>(), static_cast<int64_t>(bytes / 2), 1.0f, 1,
                           stream);  // never measure on zeros
    Bandwidth bw;
    const double read_ms = median_device_ms(
        stream,
        [&] {
            cuda::read_probe(buffer.data(), static_cast<int64_t>(bytes), sink.as<uint32_t>(),
                             stream);
        },
        7, 3);
    bw.read_gbps = static_cast<double>(bytes) / (read_ms * 1e-3) / 1e9;
    const size_t half = bytes / 2;
    const double copy_ms = median_device_ms(
        stream,
        [&] { cuda::copy_device_to_device(buffer.as<char>() + half, buffer.data(), half, stream); },
        7, 3);
    bw.copy_gbps = 2.0 * static_cast<double>(half) / (copy_ms * 1e-3) / 1e9;
    return bw;
}

void report_bandwidth(const Bandwidth& bw, BenchReporter& reporter) {
    const auto info = cuda::device_info();
    reporter.report(
        {"cuda.hbm.read", bw.read_gbps, "GB/s",
         fmt::format("streaming read kernel on {} ({} SMs)", info.name, info.multiprocessors),
         1.0});
    reporter.report(
        {"cuda.hbm.copy", bw.copy_gbps, "GB/s",
         fmt::format("device-to-device copy, read+write, vs read {:.0f} GB/s", bw.read_gbps),
         bw.copy_gbps / bw.read_gbps});
}

// Device storage for random packed ternary matrices; copies rotate so that repeated GEMVs read
// DRAM, not the 50 MB L2.
struct RandomTernary {
    cuda::DeviceBuffer codes;
    std::vector<TernaryWeights> copies;
    RandomTernary(int64_t rows, int64_t cols, int64_t min_total_bytes, const cuda::Stream& stream) {
        const int64_t bytes = packed_bytes(rows, cols);
        const int64_t count = std::max<int64_t>(1, (min_total_bytes + bytes - 1) / bytes);
        codes = cuda::DeviceBuffer(static_cast<size_t>(bytes * count));
        for (int64_t c = 0; c < count; ++c) {
            uint8_t* p = codes.as<uint8_t>() + c * bytes;
            cuda::fill_random_ternary(p, rows, cols, 100 + static_cast<uint64_t>(c), stream);
            copies.push_back({p, rows, cols, 1.0f / static_cast<float>(cols)});
        }
    }
};

// Random quantized activations for k columns and m tokens (quantized on the GPU).
struct RandomActivations {
    cuda::DeviceBuffer x, q, scale, sum;
    cuda::QuantizedActivations view;
    RandomActivations(int64_t m, int64_t k, const cuda::Stream& stream)
        : x(static_cast<size_t>(m * k) * sizeof(float)),
          q(static_cast<size_t>(m * packed_cols(k))),
          scale(static_cast<size_t>(m) * sizeof(float)),
          sum(static_cast<size_t>(m) * sizeof(int32_t)) {
        view = {q.as<int8_t>(), packed_cols(k), scale.as<float>(), sum.as<int32_t>()};
        cuda::fill_random_uniform(x.as<float>(), m * k, -1.0f, 1.0f, 7, stream);
        cuda::quantize_activations(x.as<float>(), m, k, k, view, stream);
    }
};

void bench_cuda_gemv(const BenchOptions& options, BenchReporter& reporter) {
    if (!have_gpu("cuda-gemv")) return;
    cuda::Stream stream;
    const Bandwidth bw = measure_bandwidth(stream, options.quick);
    report_bandwidth(bw, reporter);
    const std::string vs_read = fmt::format("read bandwidth {:.0f} GB/s", bw.read_gbps);
    const int64_t rotate_bytes = options.quick ? (int64_t{64} << 20) : (int64_t{512} << 20);

    // Decode GEMVs of the 70B shapes (MLP, TTT projections).
    struct Shape {
        const char* name;
        int64_t rows, cols;
    };
    const int64_t s = options.quick ? 4 : 1;  // quick: quarter-size shapes
    const Shape shapes[] = {{"mlp.gate", 28672 / s, 8192 / s},
                            {"mlp.down", 8192 / s, 28672 / s},
                            {"ttt.down", 2048 / s, 8192 / s},
                            {"ttt.up", 8192 / s, 2048 / s}};
    double gemv_ms_8192 = 0;
    std::vector<double> int8_gbps;
    for (const auto& shape : shapes) {
        RandomTernary w(shape.rows, shape.cols, rotate_bytes, stream);
        RandomActivations a(1, shape.cols, stream);
        cuda::DeviceBuffer y(static_cast<size_t>(shape.rows) * sizeof(float));
        size_t next = 0;
        const double ms = median_device_ms(
            stream,
            [&] {
                cuda::ternary_matmul(w.copies[next++ % w.copies.size()], a.view, 1, y.as<float>(),
                                     shape.rows, false, stream);
            },
            9, 20);
        const double gbps =
            static_cast<double>(packed_bytes(shape.rows, shape.cols)) / (ms * 1e-3) / 1e9;
        reporter.report({fmt::format("cuda.gemv.{}.{}x{}", shape.name, shape.rows, shape.cols),
                         gbps, "GB/s", vs_read, gbps / bw.read_gbps});
        int8_gbps.push_back(gbps);
    }

    // The same shapes with the input quantized on the fly from a float row (gemv_float.hpp): after
    // an RMSNorm where the decode step has one (gate, ttt.down), plain otherwise; and the gate/up
    // pair with the SwiGLU epilogue.
    for (size_t i = 0; i <= std::size(shapes); ++i) {
        const bool pair = i == std::size(shapes);
        const Shape& shape = shapes[pair ? 0 : i];
        const bool norm = pair || i == 0 || i == 2;
        RandomTernary w(shape.rows, shape.cols, rotate_bytes, stream);
        RandomTernary w2(pair ? shape.rows : 1, pair ? shape.cols : 16, rotate_bytes, stream);
        const int64_t groups = (shape.cols + 15) / 16;
        cuda::DeviceBuffer a(static_cast<size_t>(shape.cols) * 4),
            g(static_cast<size_t>(shape.cols) * 4), y(static_cast<size_t>(shape.rows) * 4),
            partials(static_cast<size_t>(groups) * 8), keys(16);
        cuda::fill_random_uniform(a.as<float>(), shape.cols, -1.0f, 1.0f, 7, stream);
        cuda::fill_random_uniform(g.as<float>(), shape.cols, 0.9f, 1.1f, 8, stream);
        auto* key = keys.as<unsigned long long>();
        const cuda::RowStats stats{partials.as<double>(), groups, key};
        cuda::row_stats(a.as<float>(), shape.cols, norm ? g.as<float>() : nullptr, stats, key, 2,
                        stream);
        const cuda::FloatRow row{a.as<float>(), shape.cols, norm ? g.as<float>() : nullptr, 1e-5f,
                                 stats};
        const cuda::RowStats out{nullptr, 0, key + 1};  // the epilogue's atomics included
        size_t next = 0;
        const double ms = median_device_ms(
            stream,
            [&] {
                const size_t c = next++;
                if (pair)
                    cuda::ternary_gemv_swiglu(w.copies[c % w.copies.size()],
                                              w2.copies[c % w2.copies.size()], row, y.as<float>(),
                                              out, stream);
                else
                    cuda::ternary_gemv_float(w.copies[c % w.copies.size()], row, y.as<float>(),
                                             false, out, nullptr, stream);
            },
            9, 20);
        const double bytes =
            static_cast<double>(packed_bytes(shape.rows, shape.cols)) * (pair ? 2.0 : 1.0);
        const double gbps = bytes / (ms * 1e-3) / 1e9;
        reporter.report(
            {fmt::format("cuda.gemv_float.{}{}.{}x{}", pair ? "swiglu" : shape.name,
                         norm ? ".norm" : "", shape.rows, shape.cols),
             gbps, "GB/s",
             fmt::format("{}; int8-input GEMV {:.0f} GB/s", vs_read, int8_gbps[pair ? 0 : i]),
             gbps / bw.read_gbps});
    }

    // Prompt GEMM: Gop/s (2 ops per weight and token), and the gain over m decode GEMVs.
    {
        const int64_t rows = 8192 / s, cols = 8192 / s;
        RandomTernary w(rows, cols, rotate_bytes, stream);
        RandomActivations a1(1, cols, stream);
        cuda::DeviceBuffer y1(static_cast<size_t>(rows) * sizeof(float));
        size_t next = 0;
        gemv_ms_8192 = median_device_ms(
            stream,
            [&] {
                cuda::ternary_matmul(w.copies[next++ % w.copies.size()], a1.view, 1, y1.as<float>(),
                                     rows, false, stream);
            },
            9, 20);
        for (int64_t m : {int64_t{64}, int64_t{512}}) {
            RandomActivations a(m, cols, stream);
            cuda::DeviceBuffer y(static_cast<size_t>(rows * m) * sizeof(float));
            const double ms = median_device_ms(
                stream,
                [&] {
                    cuda::ternary_matmul(w.copies[next++ % w.copies.size()], a.view, m,
                                         y.as<float>(), rows, false, stream);
                },
                7, 5);
            const double gops = 2.0 * static_cast<double>(rows * cols * m) / (ms * 1e-3) / 1e9;
            reporter.report({fmt::format("cuda.gemm.{}x{}.m{}", rows, cols, m), gops, "Gop/s",
                             fmt::format("{} decode GEMVs ({:.1f} us each)", m, gemv_ms_8192 * 1e3),
                             gemv_ms_8192 * static_cast<double>(m) / ms});
        }
    }

    // The bf16 lm_head GEMV (128256 x 8192).
    {
        const int64_t rows = 128256 / s, cols = 8192 / s;
        const int64_t bytes = rows * cols * 2;
        cuda::DeviceBuffer w(static_cast<size_t>(bytes)), x(static_cast<size_t>(cols) * 4),
            y(static_cast<size_t>(rows) * 4);
        cuda::fill_random_bf16(w.as<uint16_t>(), rows * cols, 0.05f, 3, stream);
        cuda::fill_random_uniform(x.as<float>(), cols, -1.0f, 1.0f, 4, stream);
        const double ms = median_device_ms(
            stream,
            [&] {
                cuda::bf16_gemv(w.as<uint16_t>(), rows, cols, x.as<float>(), y.as<float>(), stream);
            },
            9, 5);
        const double gbps = static_cast<double>(bytes) / (ms * 1e-3) / 1e9;
        reporter.report({fmt::format("cuda.gemv.bf16.lm_head.{}x{}", rows, cols), gbps, "GB/s",
                         vs_read, gbps / bw.read_gbps});
    }
}

// ---- cuda-decode ----

struct DecodeConfig {
    int64_t dim, layers, mlp, vocab, ttt_dim;
    float inner_lr = 0.1f, eps = 1e-5f;
};

// Which parts of the token step to enqueue (the breakdown runs each part alone).
struct Parts {
    bool gemv = true;       // ternary projections and lm_head
    bool ttt = true;        // TTT state steps
    bool pointwise = true;  // norms, quantization, SiLU, embedding
    // norm/SiLU + quantization over several blocks with a grid barrier (model_kernels.hpp);
    // measured slower than one block each on an H100 (bench/RESULTS.md), so only compared
    bool wide = false;
    // With gemv and pointwise: RMSNorm/quantization fused into the GEMV that reads it
    // (ternary_gemv_fused): 6 kernels per layer instead of 9, but measured slower at this shape
    // (bench/RESULTS.md), so only compared.
    bool fused = false;
};

// A random-weight Bit-TTT model living on the GPU, and one decode step over it.
class DecodeModel {
  public:
    DecodeModel(const DecodeConfig& c, const cuda::Stream& stream) : c_(c) {
        const int64_t shapes[5][2] = {
            {c.ttt_dim, c.dim}, {c.dim, c.ttt_dim}, {c.mlp, c.dim}, {c.mlp, c.dim}, {c.dim, c.mlp}};
        int64_t layer_bytes = 0;
        for (const auto& s : shapes) layer_bytes += packed_bytes(s[0], s[1]);
        ternary_bytes_ = layer_bytes * c.layers;
        lm_head_bytes_ = c.vocab * c.dim * 2;
        state_bytes_ = c.layers * c.ttt_dim * c.ttt_dim * 4;

        const int64_t needed =
            ternary_bytes_ + 2 * lm_head_bytes_ + state_bytes_ + (int64_t{1} << 30);
        const auto info = cuda::device_info();
        check(info.free_bytes >= needed, ErrorKind::kUnsupported,
              "bench cuda-decode: the model needs {:.1f} GB of GPU memory, {} has {:.1f} GB free",
              static_cast<double>(needed) / 1e9, info.name,
              static_cast<double>(info.free_bytes) / 1e9);

        codes_ = cuda::DeviceBuffer(static_cast<size_t>(ternary_bytes_));
        uint8_t* p = codes_.as<uint8_t>();
        uint64_t seed = 1000;
        for (int64_t l = 0; l < c.layers; ++l) {
            Layer layer;
            TernaryWeights* slots[5] = {&layer.ttt_down, &layer.ttt_up, &layer.gate, &layer.up,
                                        &layer.down};
            for (int i = 0; i < 5; ++i) {
                const int64_t rows = shapes[i][0], cols = shapes[i][1];
                cuda::fill_random_ternary(p, rows, cols, seed++, stream);
                // beta ~ 1/sqrt(K) keeps the residual stream of random weights in range.
                *slots[i] = {p, rows, cols, 1.0f / std::sqrt(static_cast<float>(cols))};
                p += packed_bytes(rows, cols);
            }
            layers_.push_back(layer);
        }
        norms_ = cuda::DeviceBuffer(static_cast<size_t>((2 * c.layers + 1) * c.dim) * 4);
        cuda::fill_random_uniform(norms_.as<float>(), (2 * c.layers + 1) * c.dim, 0.9f, 1.1f,
                                  seed++, stream);
        states_ = cuda::DeviceBuffer(static_cast<size_t>(state_bytes_));
        states_.fill_bytes(0);  // W0 = 0 (DESIGN.md §2.2); the warm-up tokens fill it
        pending_floats_ = cuda::ttt_pending_floats(c.ttt_dim);
        pending_ = cuda::DeviceBuffer(static_cast<size_t>(c.layers * pending_floats_) * 4);
        pending_.fill_bytes(0);
        embed_ = cuda::DeviceBuffer(static_cast<size_t>(lm_head_bytes_));
        lm_head_ = cuda::DeviceBuffer(static_cast<size_t>(lm_head_bytes_));
        cuda::fill_random_bf16(embed_.as<uint16_t>(), c.vocab * c.dim, 1.0f, seed++, stream);
        cuda::fill_random_bf16(lm_head_.as<uint16_t>(), c.vocab * c.dim, 0.02f, seed++, stream);

        const int64_t widest = std::max({c.dim, c.mlp, c.ttt_dim});
        x_ = cuda::DeviceBuffer(static_cast<size_t>(c.dim) * 4);
        xn_ = cuda::DeviceBuffer(static_cast<size_t>(c.dim) * 4);
        f_ = cuda::DeviceBuffer(static_cast<size_t>(c.ttt_dim) * 4);
        z_ = cuda::DeviceBuffer(static_cast<size_t>(c.ttt_dim) * 4);
        g_ = cuda::DeviceBuffer(static_cast<size_t>(c.mlp) * 4);
        u_ = cuda::DeviceBuffer(static_cast<size_t>(c.mlp) * 4);
        logits_ = cuda::DeviceBuffer(static_cast<size_t>(c.vocab) * 4);
        q_ = cuda::DeviceBuffer(static_cast<size_t>(packed_cols(widest)));
        scale_ = cuda::DeviceBuffer(16);
        sum_ = cuda::DeviceBuffer(16);
        acts_ = {q_.as<int8_t>(), packed_cols(widest), scale_.as<float>(), sum_.as<int32_t>()};
        work_ = cuda::DeviceBuffer(static_cast<size_t>(cuda::kWideWorkspaceBytes));
        work_.fill_bytes(0);
        groups_ = (c.dim + 15) / 16;
        partials_ = cuda::DeviceBuffer(static_cast<size_t>(2 * groups_) * sizeof(double));
        keys_ = cuda::DeviceBuffer(static_cast<size_t>(4 * c.layers) * sizeof(uint64_t));
        stream.synchronize();
    }

    // One decode step with the GEMVs quantizing their float inputs on the fly (gemv_float.hpp):
    // per layer ttt.down(RMSNorm x), the TTT step, x += ttt.up(z), h = SwiGLU(gate/up(RMSNorm x)),
    // x += down(h); each writer publishes the statistics its reader needs.
    // ttt = false leaves out the TTT state steps (z stays as it was): for the time breakdown;
    // prefetch = false makes the steps load the state only after the previous kernel has ended.
    // step: the plain TTT step, or the deferred one (kernels.hpp: last token's state update applied
    // while ttt.down runs) with its rows held in registers or streamed.
    enum class Step { kPlain, kDeferredRegisters, kDeferredStreamed };
    // Kernels of the chain token by kind (`only`: the breakdown enqueues one kind alone).
    enum Kind : unsigned {
        kTttDown = 1,
        kTttStep = 2,
        kTttUp = 4,
        kSwiglu = 8,
        kDown = 16,
        kEnds = 32,  // the embedding and its statistics, the final norm and lm_head
        kAllKinds = 63
    };
    void enqueue_chain_token(const cuda::Stream& stream, int64_t token, bool ttt = true,
                             bool prefetch = true, Step step = Step::kPlain,
                             unsigned only = kAllKinds) const {
        const DecodeConfig& c = c_;
        float* x = x_.as<float>();
        auto* keys = keys_.as<unsigned long long>();
        double* pa = partials_.as<double>();
        double* pc = pa + groups_;
        auto norm1 = [&](int64_t l) { return norms_.as<float>() + 2 * l * c.dim; };
        if (only & kEnds) {
            cuda::bf16_to_float(embed_.as<uint16_t>() + token * c.dim, c.dim, x, stream);
            cuda::row_stats(x, c.dim, norm1(0), {pa, groups_, keys}, keys, 4 * c.layers, stream);
        }
        for (int64_t l = 0; l < c.layers; ++l) {
            const Layer& layer = layers_[static_cast<size_t>(l)];
            const float* norm2 = norm1(l) + c.dim;
            float* state = states_.as<float>() + l * c.ttt_dim * c.ttt_dim;
            const cuda::RowStats a{pa, groups_, keys + 4 * l}, z{nullptr, 0, keys + 4 * l + 1},
                h{pc, groups_, keys + 4 * l + 2}, act{nullptr, 0, keys + 4 * l + 3};
            if (only & kTttDown)
                cuda::ternary_gemv_float(layer.ttt_down, {x, c.dim, norm1(l), c.eps, a},
                                         f_.as<float>(), false, {}, nullptr, stream);
            if (ttt && step == Step::kPlain && (only & kTttStep))
                cuda::ttt_reconstruct_step(state, c.ttt_dim, c.inner_lr, f_.as<float>(),
                                           z_.as<float>(), stream, z.key, prefetch);
            else if (ttt && (only & kTttStep))
                cuda::ttt_reconstruct_step_deferred(
                    state, c.ttt_dim, c.inner_lr, f_.as<float>(), z_.as<float>(),
                    pending_.as<float>() + l * pending_floats_, stream, z.key, prefetch,
                    step == Step::kDeferredRegisters);
            if (only & kTttUp)
                cuda::ternary_gemv_float(layer.ttt_up,
                                         {z_.as<float>(), c.ttt_dim, nullptr, 0.0f, z}, x, true, h,
                                         norm2, stream);
            if (only & kSwiglu)
                cuda::ternary_gemv_swiglu(layer.gate, layer.up, {x, c.dim, norm2, c.eps, h},
                                          g_.as<float>(), act, stream);
            const bool last = l + 1 == c.layers;
            const cuda::RowStats next =
                last ? cuda::RowStats{} : cuda::RowStats{pa, groups_, keys + 4 * (l + 1)};
            if (only & kDown)
                cuda::ternary_gemv_float(layer.down, {g_.as<float>(), c.mlp, nullptr, 0.0f, act}, x,
                                         true, next, last ? nullptr : norm1(l + 1), stream);
        }
        if (only & kEnds) {
            const float* norm_f = norms_.as<float>() + 2 * c.layers * c.dim;
            cuda::rmsnorm(x, 1, c.dim, c.dim, norm_f, c.eps, xn_.as<float>(), c.dim, stream);
            cuda::bf16_gemv(lm_head_.as<uint16_t>(), c.vocab, c.dim, xn_.as<float>(),
                            logits_.as<float>(), stream);
        }
    }
    // Bytes a token moves in the kernels of one kind (weights; the TTT state read and written).
    int64_t kind_bytes(Kind kind) const {
        const int64_t d = c_.dim, dt = c_.ttt_dim, m = c_.mlp, layers = c_.layers;
        switch (kind) {
            case kTttDown:
                return layers * packed_bytes(dt, d);
            case kTttStep:
                return state_traffic_bytes();
            case kTttUp:
                return layers * packed_bytes(d, dt);
            case kSwiglu:
                return layers * 2 * packed_bytes(m, d);
            case kDown:
                return layers * packed_bytes(d, m);
            default:
                return lm_head_bytes_;
        }
    }
    int chain_kernels_per_token() const { return static_cast<int>(5 * c_.layers + 4); }
    // The logits of the last token (for checking that both token paths agree).
    std::vector<float> logits(const cuda::Stream& stream) const {
        std::vector<float> host(static_cast<size_t>(c_.vocab));
        cuda::copy_device_to_host(host.data(), logits_.data(), host.size() * 4, stream);
        stream.synchronize();
        return host;
    }
    void reset_states(const cuda::Stream& stream) const {
        cuda::memset_device(states_.data(), 0, states_.bytes(), stream);
        cuda::memset_device(pending_.data(), 0, pending_.bytes(), stream);
    }
    // Applies the deferred steps' pending updates (after Step::kDeferred* tokens).
    void apply_pending(const cuda::Stream& stream) const {
        for (int64_t l = 0; l < c_.layers; ++l)
            cuda::ttt_apply_pending(states_.as<float>() + l * c_.ttt_dim * c_.ttt_dim, c_.ttt_dim,
                                    pending_.as<float>() + l * pending_floats_, stream);
    }
    // The whole TTT state (for comparing token paths).
    std::vector<float> states(const cuda::Stream& stream) const {
        std::vector<float> host(states_.bytes() / 4);
        cuda::copy_device_to_host(host.data(), states_.data(), states_.bytes(), stream);
        stream.synchronize();
        return host;
    }

    // One decode step for a fixed token (its embedding row), enqueued on stream.
    void enqueue_token(const cuda::Stream& stream, const Parts& parts, int64_t token) const {
        const DecodeConfig& c = c_;
        float* x = x_.as<float>();
        if (parts.pointwise)
            cuda::bf16_to_float(embed_.as<uint16_t>() + token * c.dim, c.dim, x, stream);
        for (int64_t l = 0; l < c.layers; ++l) {
            const Layer& layer = layers_[static_cast<size_t>(l)];
            const float* norm1 = norms_.as<float>() + 2 * l * c.dim;
            const float* norm2 = norm1 + c.dim;
            float* state = states_.as<float>() + l * c.ttt_dim * c.ttt_dim;
            // h = x + TTT(RMSNorm(x))
            const bool fused = parts.fused && parts.gemv && parts.pointwise && !parts.wide;
            if (fused) {
                float* f = f_.as<float>();
                cuda::ternary_gemv_fused(&layer.ttt_down, &f, 1, x, c.dim, norm1, c.eps, false,
                                         stream);
                if (parts.ttt)
                    cuda::ttt_reconstruct_step(state, c.ttt_dim, c.inner_lr, f_.as<float>(),
                                               z_.as<float>(), stream);
                cuda::ternary_gemv_fused(&layer.ttt_up, &x, 1, z_.as<float>(), c.ttt_dim, nullptr,
                                         0.0f, true, stream);
                const TernaryWeights gate_up[2] = {layer.gate, layer.up};
                float* outputs[2] = {g_.as<float>(), u_.as<float>()};
                cuda::ternary_gemv_fused(gate_up, outputs, 2, x, c.dim, norm2, c.eps, false,
                                         stream);
            }
            if (!fused) {
                if (parts.pointwise) norm_quantize(x, norm1, parts, stream);
                if (parts.gemv)
                    cuda::ternary_matmul(layer.ttt_down, acts_, 1, f_.as<float>(), c.ttt_dim, false,
                                         stream);
                if (parts.ttt)
                    cuda::ttt_reconstruct_step(state, c.ttt_dim, c.inner_lr, f_.as<float>(),
                                               z_.as<float>(), stream);
                if (parts.pointwise && parts.wide)
                    cuda::quantize_activations_wide(z_.as<float>(), c.ttt_dim, acts_, work_.data(),
                                                    stream);
                else if (parts.pointwise)
                    cuda::quantize_activations(z_.as<float>(), 1, c.ttt_dim, c.ttt_dim, acts_,
                                               stream);
                if (parts.gemv)
                    cuda::ternary_matmul(layer.ttt_up, acts_, 1, x, c.dim, true, stream);
                // x = h + down(silu(gate(u)) * up(u)), u = RMSNorm(h)
                if (parts.pointwise) norm_quantize(x, norm2, parts, stream);
                if (parts.gemv) {
                    const TernaryWeights gate_up[2] = {layer.gate, layer.up};
                    float* outputs[2] = {g_.as<float>(), u_.as<float>()};
                    cuda::ternary_gemv_batch(gate_up, outputs, 2, acts_, false, stream);
                }
            }
            if (parts.pointwise && parts.wide)
                cuda::silu_mul_quantize_wide(g_.as<float>(), u_.as<float>(), c.mlp, acts_,
                                             work_.data(), stream);
            else if (parts.pointwise)
                cuda::silu_mul_quantize(g_.as<float>(), u_.as<float>(), 1, c.mlp, c.mlp, acts_,
                                        stream);
            if (parts.gemv) cuda::ternary_matmul(layer.down, acts_, 1, x, c.dim, true, stream);
        }
        if (parts.pointwise) {
            const float* norm_f = norms_.as<float>() + 2 * c.layers * c.dim;
            cuda::rmsnorm(x, 1, c.dim, c.dim, norm_f, c.eps, xn_.as<float>(), c.dim, stream);
        }
        if (parts.gemv)
            cuda::bf16_gemv(lm_head_.as<uint16_t>(), c.vocab, c.dim, xn_.as<float>(),
                            logits_.as<float>(), stream);
    }

    void norm_quantize(const float* x, const float* norm, const Parts& parts,
                       const cuda::Stream& stream) const {
        if (parts.wide)
            cuda::rmsnorm_quantize_wide(x, c_.dim, norm, c_.eps, acts_, work_.data(), stream);
        else
            cuda::rmsnorm_quantize(x, 1, c_.dim, c_.dim, norm, c_.eps, acts_, stream);
    }

    int64_t weight_bytes() const { return ternary_bytes_ + lm_head_bytes_; }
    int64_t ternary_bytes() const { return ternary_bytes_; }
    int64_t state_traffic_bytes() const { return 2 * state_bytes_; }  // read + write
    int kernels_per_token(const Parts& parts) const {
        return static_cast<int>((parts.fused ? 6 : 9) * c_.layers + 3);
    }

  private:
    struct Layer {
        TernaryWeights ttt_down, ttt_up, gate, up, down;
    };
    DecodeConfig c_;
    std::vector<Layer> layers_;
    int64_t ternary_bytes_ = 0, lm_head_bytes_ = 0, state_bytes_ = 0;
    cuda::DeviceBuffer codes_, norms_, states_, embed_, lm_head_;
    cuda::DeviceBuffer x_, xn_, f_, z_, g_, u_, logits_, q_, scale_, sum_, work_;
    cuda::QuantizedActivations acts_;
    int64_t groups_ = 0;                  // 16-value groups of a D-row
    cuda::DeviceBuffer partials_, keys_;  // row statistics of the on-the-fly chain
    int64_t pending_floats_ = 0;          // per layer: the deferred TTT step's pending update
    cuda::DeviceBuffer pending_;
};

void bench_cuda_decode(const BenchOptions& options, BenchReporter& reporter) {
    if (!have_gpu("cuda-decode")) return;
    cuda::Stream stream;
    const Bandwidth bw = measure_bandwidth(stream, options.quick);
    report_bandwidth(bw, reporter);

    const DecodeConfig c = options.quick ? DecodeConfig{1024, 4, 4096, 32000, 256}
                                         : DecodeConfig{8192, 80, 28672, 128256, 2048};
    const std::string tag = options.quick ? "quick" : "70b";
    DecodeModel model(c, stream);
    const int inner = options.quick ? 20 : 10;

    auto graph_of = [&](const Parts& parts) {
        auto graph = std::make_unique<cuda::Graph>();
        graph->begin_capture(stream);
        model.enqueue_token(stream, parts, 42);
        graph->end_capture(stream);
        return graph;
    };
    // Both token paths from the same zero state, a few tokens each: their logits must agree (the
    // on-the-fly quantization may round an int8 value differently where the RMSNorm's sum order
    // differs; random weights over 80 layers amplify such flips only mildly).
    {
        auto run_tokens = [&](bool chain) {
            model.reset_states(stream);
            for (int64_t t = 0; t < 3; ++t) {
                if (chain)
                    model.enqueue_chain_token(stream, 42 + t);
                else
                    model.enqueue_token(stream, Parts{}, 42 + t);
            }
            return model.logits(stream);
        };
        const std::vector<float> separate = run_tokens(false), chained = run_tokens(true);
        double max_ref = 0, max_diff = 0;
        for (size_t i = 0; i < separate.size(); ++i) {
            max_ref = std::max(max_ref, static_cast<double>(std::fabs(separate[i])));
            max_diff = std::max(max_diff, static_cast<double>(std::fabs(chained[i] - separate[i])));
        }
        reporter.report({fmt::format("cuda.decode.{}.logits_max_diff", tag), max_diff, "",
                         fmt::format("on-the-fly vs separate quantization after 3 tokens, max "
                                     "|logit| {:.3g}",
                                     max_ref),
                         max_ref > 0 ? max_diff / max_ref : 0.0});
    }

    // The token as measured: GEMVs quantizing their inputs on the fly (5 kernels per layer).
    auto chain_graph = std::make_unique<cuda::Graph>();
    chain_graph->begin_capture(stream);
    model.enqueue_chain_token(stream, 42);
    chain_graph->end_capture(stream);
    const double token_ms = median_device_ms(
        stream, [&] { chain_graph->launch(stream); }, 7, inner);
    const double tokens_per_s = 1e3 / token_ms;
    const double weight_gbps = static_cast<double>(model.weight_bytes()) / (token_ms * 1e-3) / 1e9;
    const double all_bytes =
        static_cast<double>(model.weight_bytes() + model.state_traffic_bytes());
    const double bound_tokens_per_s = bw.read_gbps * 1e9 / all_bytes;
    const std::string vs_read = fmt::format("read bandwidth {:.0f} GB/s", bw.read_gbps);

    reporter.report(
        {fmt::format("cuda.decode.{}.tokens_per_s", tag), tokens_per_s, "tokens/s",
         fmt::format("bandwidth bound {:.1f} tok/s ({:.2f} GB weights + {:.2f} GB "
                     "TTT state r/w per token)",
                     bound_tokens_per_s, static_cast<double>(model.weight_bytes()) / 1e9,
                     static_cast<double>(model.state_traffic_bytes()) / 1e9),
         tokens_per_s / bound_tokens_per_s});
    reporter.report({fmt::format("cuda.decode.{}.weight_bytes_per_s", tag), weight_gbps, "GB/s",
                     vs_read + " (packed ternary + bf16 lm_head read per token / token time)",
                     weight_gbps / bw.read_gbps});
    const double all_gbps = all_bytes / (token_ms * 1e-3) / 1e9;
    reporter.report({fmt::format("cuda.decode.{}.all_bytes_per_s", tag), all_gbps, "GB/s",
                     vs_read + " (weights + TTT state traffic)", all_gbps / bw.read_gbps});
    const double chain_stream_ms = median_device_ms(
        stream, [&] { model.enqueue_chain_token(stream, 42); }, 5, std::max(2, inner / 2));
    reporter.report({fmt::format("cuda.decode.{}.no_graph", tag), 1e3 / chain_stream_ms, "tokens/s",
                     fmt::format("CUDA graph {:.1f} tok/s ({} kernels per token)", tokens_per_s,
                                 model.chain_kernels_per_token()),
                     token_ms / chain_stream_ms});

    // Variants of the chain's kernels (cuda::DecodeVariant: GEMV weight prefetch 0/1/2, statistics
    // prologue 0/1), each as its own graph, timed in turns (3 rounds, median of each), against
    // the chain as it was (prefetch 0, prologue 0) in the same process; the logits after 3 tokens
    // are compared with the default variant's bit for bit.
    {
        const cuda::DecodeVariant chosen = cuda::decode_variant();
        auto logits_after_3 = [&] {
            model.reset_states(stream);
            for (int64_t t = 0; t < 3; ++t) model.enqueue_chain_token(stream, 42 + t);
            return model.logits(stream);
        };
        const std::vector<float> reference = logits_after_3();
        struct Run {
            cuda::DecodeVariant variant;
            std::unique_ptr<cuda::Graph> graph;
            std::vector<double> ms;
            size_t differing = 0;
        };
        // {GEMV weight prefetch, statistics prologue, small GEMV split, small GEMV early loads,
        // small GEMV bound in MiB}
        const cuda::DecodeVariant variants[] = {{0, 0, 0, 1, 8},  {1, 0, 0, 1, 8}, {2, 0, 0, 1, 8},
                                                {0, 1, 0, 1, 8},  {1, 1, 0, 1, 8}, {2, 1, 0, 1, 8},
                                                {1, 0, 1, 0, 8},  {1, 0, 1, 1, 8}, {1, 0, 1, 1, 64},
                                                {1, 0, 1, 0, 64}, {1, 1, 1, 1, 8}, {1, 0, 2, 0, 8}};
        std::vector<Run> runs;
        for (const cuda::DecodeVariant& variant : variants) {
            Run run{variant, std::make_unique<cuda::Graph>(), {}, 0};
            cuda::set_decode_variant(run.variant);
            const std::vector<float> got = logits_after_3();
            for (size_t i = 0; i < got.size(); ++i)
                run.differing += same_bits(got[i], reference[i]) ? 0 : 1;
            run.graph->begin_capture(stream);
            model.enqueue_chain_token(stream, 42);
            run.graph->end_capture(stream);
            runs.push_back(std::move(run));
        }
        cuda::set_decode_variant(chosen);
        model.reset_states(stream);
        for (int round = 0; round < 3; ++round)
            for (Run& run : runs)
                run.ms.push_back(median_device_ms(
                    stream, [&] { run.graph->launch(stream); }, 5, inner));
        auto median = [](std::vector<double> v) {
            std::sort(v.begin(), v.end());
            return v[v.size() / 2];
        };
        const double base_ms = median(runs[0].ms);
        for (const Run& run : runs) {
            const double ms = median(run.ms);
            reporter.report(
                {fmt::format("cuda.decode.{}.variant.prefetch{}.prologue{}{}", tag,
                             run.variant.gemv_prefetch, run.variant.prologue,
                             run.variant.small_split > 0
                                 ? fmt::format(".split{}.early{}.max{}mb", run.variant.small_split,
                                               run.variant.small_early, run.variant.small_max_mb)
                                 : std::string()),
                 1e3 / ms, "tokens/s",
                 fmt::format("{:.3f} ms/token (rounds {:.3f}/{:.3f}/{:.3f}); prefetch 0, "
                             "prologue 0: {:.1f} tok/s; bound {:.1f}; {} logits differ{}",
                             ms, run.ms[0], run.ms[1], run.ms[2], 1e3 / base_ms, bound_tokens_per_s,
                             run.differing,
                             run.variant.gemv_prefetch == chosen.gemv_prefetch &&
                                     run.variant.prologue == chosen.prologue &&
                                     run.variant.small_split == chosen.small_split &&
                                     (chosen.small_split == 0 ||
                                      (run.variant.small_early == chosen.small_early &&
                                       run.variant.small_max_mb == chosen.small_max_mb))
                                 ? " (the default)"
                                 : ""),
                 base_ms / ms});
        }
    }

    // Each kind of the chain's kernels alone (80 in a row, one graph): its time per token and
    // bandwidth; the parts add up to more than the token where neighbours overlap (PDL).
    {
        using Kind = DecodeModel::Kind;
        const std::pair<Kind, const char*> kinds[] = {
            {DecodeModel::kTttDown, "ttt_down"}, {DecodeModel::kTttStep, "ttt_step"},
            {DecodeModel::kTttUp, "ttt_up"},     {DecodeModel::kSwiglu, "gate_up_swiglu"},
            {DecodeModel::kDown, "down"},        {DecodeModel::kEnds, "embedding_norm_lm_head"}};
        // One kind's kernels captured alone in a graph: median ms per token and GB/s.
        auto time_alone = [&](Kind kind) {
            auto graph = std::make_unique<cuda::Graph>();
            graph->begin_capture(stream);
            model.enqueue_chain_token(stream, 42, true, true, DecodeModel::Step::kPlain, kind);
            graph->end_capture(stream);
            const double ms = median_device_ms(
                stream, [&] { graph->launch(stream); }, 7, inner);
            return std::pair{ms, static_cast<double>(model.kind_bytes(kind)) / (ms * 1e-3) / 1e9};
        };
        double sum_ms = 0;
        for (const auto& [kind, name] : kinds) {
            const auto [ms, gbps] = time_alone(kind);
            sum_ms += ms;
            reporter.report({fmt::format("cuda.decode.{}.alone.{}", tag, name), gbps, "GB/s",
                             fmt::format("{} ({:.3f} ms per token, {:.2f} GB)", vs_read, ms,
                                         static_cast<double>(model.kind_bytes(kind)) / 1e9),
                             gbps / bw.read_gbps});
        }
        // The TTT projections and the MLP down projection alone under small-GEMV variants
        // (DecodeVariant::small_split, small_early, small_max_mb), the rest as chosen.
        const cuda::DecodeVariant chosen = cuda::decode_variant();
        const int small[][3] = {{0, 1, 8}, {1, 0, 8}, {1, 1, 8}, {1, 1, 64}};
        for (const auto& [split, early, max_mb] : small) {
            cuda::DecodeVariant variant = chosen;
            variant.small_split = split;
            variant.small_early = early;
            variant.small_max_mb = max_mb;
            cuda::set_decode_variant(variant);
            for (const auto& [kind, name] : kinds) {
                if (kind != DecodeModel::kTttDown && kind != DecodeModel::kTttUp &&
                    kind != DecodeModel::kDown)
                    continue;
                const auto [ms, gbps] = time_alone(kind);
                reporter.report({fmt::format("cuda.decode.{}.alone.{}.split{}.early{}.max{}mb", tag,
                                             name, split, early, max_mb),
                                 gbps, "GB/s", fmt::format("{} ({:.3f} ms per token)", vs_read, ms),
                                 gbps / bw.read_gbps});
            }
        }
        cuda::set_decode_variant(chosen);
        model.reset_states(stream);
        reporter.report(
            {fmt::format("cuda.decode.{}.alone.sum", tag), sum_ms, "ms",
             fmt::format("the kinds one after the other vs the {:.3f} ms token", token_ms),
             token_ms / sum_ms});
    }

    // The chain without its TTT state steps: what the GEMVs and row statistics take.
    {
        auto graph = std::make_unique<cuda::Graph>();
        graph->begin_capture(stream);
        model.enqueue_chain_token(stream, 42, false);
        graph->end_capture(stream);
        const double ms = median_device_ms(
            stream, [&] { graph->launch(stream); }, 7, inner);
        const double gbps = static_cast<double>(model.weight_bytes()) / (ms * 1e-3) / 1e9;
        reporter.report({fmt::format("cuda.decode.{}.part.chain_without_ttt_step", tag), gbps,
                         "GB/s",
                         fmt::format("{} (weights / time; {:.3f} ms of the {:.3f} ms token)",
                                     vs_read, ms, token_ms),
                         gbps / bw.read_gbps});
    }

    // The chain with the TTT steps loading the state only after the GEMV before them has ended.
    {
        auto graph = std::make_unique<cuda::Graph>();
        graph->begin_capture(stream);
        model.enqueue_chain_token(stream, 42, true, false);
        graph->end_capture(stream);
        const double ms = median_device_ms(
            stream, [&] { graph->launch(stream); }, 7, inner);
        reporter.report({fmt::format("cuda.decode.{}.chain_without_state_prefetch", tag), 1e3 / ms,
                         "tokens/s", fmt::format("with the prefetch {:.1f} tok/s", tokens_per_s),
                         token_ms / ms});
    }

    // The chain with the deferred TTT step: the last token's state update is applied while
    // ttt.down streams its weights (W's read and write off the critical path). Same values: after
    // 3 tokens from the same state, logits and (once the pending updates are applied) states must
    // equal the plain chain's bit for bit.
    {
        using Step = DecodeModel::Step;
        auto run_tokens = [&](Step step) {
            model.reset_states(stream);
            for (int64_t t = 0; t < 3; ++t)
                model.enqueue_chain_token(stream, 42 + t, true, true, step);
            model.apply_pending(stream);
            return std::make_pair(model.logits(stream), model.states(stream));
        };
        const auto plain = run_tokens(Step::kPlain);
        for (const Step step : {Step::kDeferredRegisters, Step::kDeferredStreamed}) {
            const std::string name = step == Step::kDeferredRegisters
                                         ? "deferred_ttt_step"
                                         : "deferred_ttt_step_streamed";
            const auto got = run_tokens(step);
            size_t logit_diffs = 0, state_diffs = 0;
            for (size_t i = 0; i < got.first.size(); ++i)
                logit_diffs += same_bits(got.first[i], plain.first[i]) ? 0 : 1;
            for (size_t i = 0; i < got.second.size(); ++i)
                state_diffs += same_bits(got.second[i], plain.second[i]) ? 0 : 1;
            reporter.report({fmt::format("cuda.decode.{}.{}.bit_differences", tag, name),
                             static_cast<double>(logit_diffs + state_diffs), "",
                             fmt::format("logits ({}) and TTT states ({}) differing from the plain "
                                         "step's after 3 tokens",
                                         logit_diffs, state_diffs),
                             0.0});
            auto graph = std::make_unique<cuda::Graph>();
            graph->begin_capture(stream);
            model.enqueue_chain_token(stream, 42, true, true, step);
            graph->end_capture(stream);
            const double ms = median_device_ms(
                stream, [&] { graph->launch(stream); }, 7, inner);
            const double tps = 1e3 / ms;
            reporter.report({fmt::format("cuda.decode.{}.{}.tokens_per_s", tag, name), tps,
                             "tokens/s",
                             fmt::format("plain TTT step {:.1f} tok/s; bandwidth bound {:.1f}; "
                                         "{:.3f} ms/token",
                                         tokens_per_s, bound_tokens_per_s, ms),
                             token_ms / ms});
        }
        model.reset_states(stream);
    }

    // The reference: separate single-block norm/quantize kernels between the GEMVs.
    const auto full = graph_of(Parts{});
    const double separate_ms = median_device_ms(
        stream, [&] { full->launch(stream); }, 7, inner);
    reporter.report(
        {fmt::format("cuda.decode.{}.separate_norm_kernels", tag), 1e3 / separate_ms, "tokens/s",
         fmt::format("on-the-fly quantization {:.1f} tok/s ({} vs {} kernels)", tokens_per_s,
                     model.kernels_per_token(Parts{}), model.chain_kernels_per_token()),
         token_ms / separate_ms});
    const double stream_ms = median_device_ms(
        stream, [&] { model.enqueue_token(stream, Parts{}, 42); }, 5, std::max(2, inner / 2));
    reporter.report({fmt::format("cuda.decode.{}.separate_norm_kernels.no_graph", tag),
                     1e3 / stream_ms, "tokens/s",
                     fmt::format("its CUDA graph {:.1f} tok/s", 1e3 / separate_ms),
                     separate_ms / stream_ms});

    // The same token with the norm/quantization fused into the GEMVs that read them.
    Parts fused;
    fused.fused = true;
    const auto fused_graph = graph_of(fused);
    const double fused_ms = median_device_ms(
        stream, [&] { fused_graph->launch(stream); }, 7, inner);
    reporter.report({fmt::format("cuda.decode.{}.fused_norm_gemv", tag), 1e3 / fused_ms, "tokens/s",
                     fmt::format("separate single-block norm/quantize {:.1f} tok/s ({} vs {} "
                                 "kernels)",
                                 1e3 / separate_ms, model.kernels_per_token(fused),
                                 model.kernels_per_token(Parts{})),
                     separate_ms / fused_ms});

    // The same token with the multi-block (grid barrier) norm/quantize kernels.
    Parts wide;
    wide.wide = true;
    wide.fused = false;
    const auto wide_graph = graph_of(wide);
    const double wide_ms = median_device_ms(
        stream, [&] { wide_graph->launch(stream); }, 7, inner);
    reporter.report({fmt::format("cuda.decode.{}.multi_block_norms", tag), 1e3 / wide_ms,
                     "tokens/s",
                     fmt::format("single-block norm/quantize {:.1f} tok/s", 1e3 / separate_ms),
                     separate_ms / wide_ms});
    Parts wide_pointwise{false, false, true, true, false};
    const auto wide_pw = graph_of(wide_pointwise);
    const double wide_pw_ms = median_device_ms(
        stream, [&] { wide_pw->launch(stream); }, 7, inner);
    reporter.report(
        {fmt::format("cuda.decode.{}.part.pointwise_multi_block", tag), wide_pw_ms * 1e3, "us",
         fmt::format("share of the {:.3f} ms multi-block token", wide_ms), wide_pw_ms / wide_ms});

    // Breakdown of the separate-kernel token: each part alone, as a graph.
    const auto gemv_only = graph_of(Parts{true, false, false, false});
    const double gemv_ms = median_device_ms(
        stream, [&] { gemv_only->launch(stream); }, 7, inner);
    const double gemv_gbps = static_cast<double>(model.weight_bytes()) / (gemv_ms * 1e-3) / 1e9;
    reporter.report(
        {fmt::format("cuda.decode.{}.part.gemv", tag), gemv_gbps, "GB/s",
         fmt::format("{} ({:.3f} ms of the {:.3f} ms token)", vs_read, gemv_ms, separate_ms),
         gemv_gbps / bw.read_gbps});
    const auto ttt_only = graph_of(Parts{false, true, false, false});
    const double ttt_ms = median_device_ms(
        stream, [&] { ttt_only->launch(stream); }, 7, inner);
    const double ttt_gbps =
        static_cast<double>(model.state_traffic_bytes()) / (ttt_ms * 1e-3) / 1e9;
    reporter.report(
        {fmt::format("cuda.decode.{}.part.ttt_state", tag), ttt_gbps, "GB/s",
         fmt::format("{} ({:.3f} ms of the {:.3f} ms token)", vs_read, ttt_ms, separate_ms),
         ttt_gbps / bw.read_gbps});
    const auto pointwise_only = graph_of(Parts{false, false, true, false});
    const double pointwise_ms = median_device_ms(
        stream, [&] { pointwise_only->launch(stream); }, 7, inner);
    reporter.report(
        {fmt::format("cuda.decode.{}.part.pointwise", tag), pointwise_ms * 1e3, "us",
         fmt::format("share of the {:.3f} ms token (norms, quantization, SiLU)", separate_ms),
         pointwise_ms / separate_ms});
}

}  // namespace

double measure_gpu_read_bandwidth_gbps(bool quick) {
    cuda::require_device("bench");
    cuda::Stream stream;
    return measure_bandwidth(stream, quick).read_gbps;
}

std::string gpu_description() {
    const auto info = cuda::device_info();
    return fmt::format("{}, {} SMs, {:.0f} GB", info.name, info.multiprocessors,
                       static_cast<double>(info.memory_bytes) / 1e9);
}

void bench_cuda_gemv_entry(const BenchOptions& options, BenchReporter& reporter) {
    bench_cuda_gemv(options, reporter);
}
void bench_cuda_decode_entry(const BenchOptions& options, BenchReporter& reporter) {
    bench_cuda_decode(options, reporter);
}

#else  // no CUDA backend in this build

double measure_gpu_read_bandwidth_gbps(bool) {
    fail(ErrorKind::kUnsupported,
         "CUDA: bench: this build of bitttt has no CUDA backend (no nvcc at configure time)");
}
std::string gpu_description() {
    return "no CUDA";
}

void bench_cuda_gemv_entry(const BenchOptions&, BenchReporter&) {
    fmt::print(
        stderr,
        "bench cuda-gemv: skipped: bitttt was built without CUDA (no nvcc at configure time)\n");
}
void bench_cuda_decode_entry(const BenchOptions&, BenchReporter&) {
    fmt::print(
        stderr,
        "bench cuda-decode: skipped: bitttt was built without CUDA (no nvcc at configure time)\n");
}

#endif

}  // namespace bitttt::cli
