// Model benchmarks: `bitttt bench decode` (tokens/s of one token at a time, and the bytes each
// token streams against the machine's read bandwidth) and `bitttt bench prompt` (tokens/s of a
// batched prompt, against decode), at the default config and at a 7B-class shape, with random
// weights generated in memory (or a model file given with --model).
#include <fmt/format.h>

#include <chrono>
#include <string>
#include <vector>

#include "bitttt/model.hpp"
#include "cli/bench.hpp"
#include "core/threads.hpp"
#include "model/config.hpp"
#include "model/weights.hpp"

namespace bitttt::cli {
namespace {

struct Shape {
    std::string name;
    ModelConfig config;
    double target_tokens_per_s;  // the target with 2 threads (0: none)
};

std::vector<Shape> shapes(const BenchOptions& options) {
    ModelConfig def;  // D=256, L=8, vocab 16384 (DESIGN.md §2 defaults)
    def.resolve_and_validate();
    // With --model the file's own config is used: one run, not one per built-in shape.
    if (!options.model.empty()) return {{"model", def, 0}};
    if (options.quick) {
        ModelConfig small = def;
        small.num_layers = 2;
        small.vocab_size = 4096;
        return {{"quick", small, 0}};
    }
    ModelConfig big;
    big.hidden_dim = 4096;
    big.num_layers = 32;
    big.mlp_dim = 11008;
    big.vocab_size = 32000;
    big.resolve_and_validate();  // ttt_dim = D/4 = 1024
    return {{"default", def, 5000}, {"7b", big, 13}};
}

DeviceOptions device_of(const BenchOptions& options) {
    DeviceOptions d;
    d.device = parse_device(options.device);
    d.lm_head = parse_lm_head(options.lm_head);
    return d;
}

std::shared_ptr<const Model> make_model(const Shape& shape, const BenchOptions& options) {
    if (!options.model.empty()) return Model::load(options.model, device_of(options));
    return Model::from_weights(ModelWeights::random_packed(shape.config, 1234), nullptr,
                               device_of(options));
}

bool on_gpu(const BenchOptions& options) {
    return parse_device(options.device) == Device::kCuda;
}

// Bytes one decode step reads: every packed BitLinear tensor, the lm_head (bf16 by default; fp32,
// or int8 with a float scale per row, as the model was placed: DeviceOptions::lm_head), the
// fp32 tensors it touches (the step-size projections, norms), one embedding row of
// `embed_value_bytes` per value (fp32 on the CPU, bf16 on the GPU) and the TTT states (read and
// written).
double lm_head_bytes(const Model& model) {
    const ModelConfig& c = model.config();
    const auto values = static_cast<double>(c.vocab_size * c.hidden_dim);
    switch (model.device_options().lm_head) {
        case LmHead::kF32:
            return values * 4;
        case LmHead::kInt8:  // the codes (rows padded to 64 bytes) and a float scale per row
            return static_cast<double>(c.vocab_size) *
                   static_cast<double>(kernels::int8_row_stride(c.hidden_dim) + 4);
        case LmHead::kBf16:
            break;
    }
    return values * 2;
}

double bytes_per_token(const Model& model, int embed_value_bytes) {
    const ModelWeights& w = model.weights();
    const ModelConfig& c = w.config;
    double bytes = 0;
    for (const ParamSpec& spec : w.table) {
        if (spec.kind == ParamKind::kBitLinear)
            bytes += static_cast<double>(kernels::packed_bytes(spec.shape[0], spec.shape[1]));
        else if (spec.kind == ParamKind::kEmbedding)
            bytes += static_cast<double>(c.hidden_dim) * embed_value_bytes;
        else if (spec.name == "lm_head.weight")
            bytes += lm_head_bytes(model);
        else
            bytes += static_cast<double>(spec.numel()) * 4;
    }
    bytes += 2.0 * static_cast<double>(c.num_layers * c.ttt_dim * c.head_dim()) * 4;
    return bytes;
}

std::string label(const Shape& s, const BenchOptions& options) {
    return options.model.empty() ? s.name : "model";
}

// Decode: warm up, then time `tokens` single-token steps (best of 3 runs, as seconds_per_call).
double decode_tokens_per_s(Session& session, int64_t tokens, int64_t vocab) {
    int32_t id = 1;
    auto step = [&] {
        for (int64_t i = 0; i < tokens; ++i) {
            session.forward_token(id);
            id = static_cast<int32_t>((id * 7 + 3) % vocab);
        }
    };
    return static_cast<double>(tokens) / seconds_per_call(step, 0.5, 3);
}

}  // namespace

// Decode on the GPU: tokens/s (logits downloaded to the host every token, as generation needs
// them) against the HBM read bandwidth measured in the same run.
void bench_decode_gpu(const BenchOptions& options, BenchReporter& reporter) {
    const double bandwidth = measure_gpu_read_bandwidth_gbps(options.quick);
    const std::string gpu = gpu_description();
    for (const Shape& shape : shapes(options)) {
        auto model = make_model(shape, options);
        Session session(model);
        const bool big = model->config().hidden_dim >= 2048;
        const double tps = decode_tokens_per_s(session, big ? 32 : 256, model->config().vocab_size);
        const std::string name = fmt::format("cuda.decode.{}", label(shape, options));
        const double bytes = bytes_per_token(*model, 2);
        const double gbps = bytes * tps / 1e9;
        reporter.report({name, tps, "tokens/s",
                         fmt::format("bound {:.0f} tokens/s = read bandwidth / {:.1f} MB per token",
                                     bandwidth * 1e9 / bytes, bytes / 1e6),
                         tps * bytes / (bandwidth * 1e9)});
        reporter.report({name + ".stream", gbps, "GB/s",
                         fmt::format("read bandwidth {:.0f} GB/s on {}", bandwidth, gpu),
                         gbps / bandwidth});
    }
}

void bench_decode(const BenchOptions& options, BenchReporter& reporter) {
    if (on_gpu(options)) return bench_decode_gpu(options, reporter);
    const double bandwidth =
        measure_read_bandwidth_gbps(options.quick ? size_t{64} << 20 : size_t{1} << 30);
    for (const Shape& shape : shapes(options)) {
        auto model = make_model(shape, options);
        Session session(model);
        const bool big = model->config().hidden_dim >= 2048;
        // A model file times 128 tokens a call, as llama-bench's tg128 (bench/llamacpp): every
        // timed window then spans seconds at large shapes, not a burst of a quiet moment.
        const int64_t tokens = !options.model.empty() ? 128 : (big ? 4 : 64);
        const double tps = decode_tokens_per_s(session, tokens, model->config().vocab_size);
        const std::string name = fmt::format("decode.{}", label(shape, options));
        if (shape.target_tokens_per_s > 0 && options.model.empty())
            reporter.report({name, tps, "tokens/s",
                             fmt::format("target {:g} tokens/s", shape.target_tokens_per_s),
                             tps / shape.target_tokens_per_s});
        else
            reporter.report({name, tps, "tokens/s", "", 0});
        const double gbps = bytes_per_token(*model, 4) * tps / 1e9;
        reporter.report({name + ".stream", gbps, "GB/s",
                         fmt::format("read bandwidth {:.1f} GB/s ({:.0f} MB/token)", bandwidth,
                                     bytes_per_token(*model, 4) / 1e6),
                         gbps / bandwidth});
    }
}

void bench_prompt(const BenchOptions& options, BenchReporter& reporter) {
    for (const Shape& shape : shapes(options)) {
        auto model = make_model(shape, options);
        const ModelConfig& c = model->config();
        const bool big = c.hidden_dim >= 2048;
        const int64_t n = options.quick ? 64 : (big ? 64 : 512);
        std::vector<int32_t> ids(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>((i * 7 + 3) % c.vocab_size);
        Session session(model);
        const double prompt_s =
            seconds_per_call([&] { session.forward(ids); }, big ? 1.0 : 0.5, big ? 1 : 3);
        const double prompt_tps = static_cast<double>(n) / prompt_s;
        Session decode_session(model);
        const double decode_tps = decode_tokens_per_s(decode_session, big ? 4 : 64, c.vocab_size);
        reporter.report({fmt::format("{}prompt.{}.{}tok", on_gpu(options) ? "cuda." : "",
                                     label(shape, options), n),
                         prompt_tps, "tokens/s", fmt::format("decode {:.4g} tokens/s", decode_tps),
                         prompt_tps / decode_tps});
    }
}

}  // namespace bitttt::cli
