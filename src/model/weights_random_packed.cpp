// ModelWeights::random_packed: large random models for benchmarks, generated in packed form.
#include <algorithm>
#include <cmath>

#include "core/aligned_buffer.hpp"
#include "core/rng.hpp"
#include "model/weights.hpp"

namespace bitttt {
namespace {

constexpr int64_t kBlockWords = int64_t{1} << 15;  // 256 KiB per parallel block

// A different stream for every (tensor, block), so the result does not depend on the thread count.
uint64_t block_seed(uint64_t seed, size_t tensor, int64_t block) {
    uint64_t s = seed ^ (static_cast<uint64_t>(tensor) << 40) ^ static_cast<uint64_t>(block);
    return splitmix64(s);
}

// Random 2-bit codes in {0, 1, 2}: a random word with every field equal to 3 turned into 1
// (its high bit cleared), so weights are -1, 0, +1 with probabilities 1/4, 1/2, 1/4.
void fill_codes(uint8_t* codes, int64_t bytes, uint64_t seed, size_t tensor) {
    const int64_t words = bytes / 8;  // packed sizes are multiples of 64 bytes
    uint64_t* w = reinterpret_cast<uint64_t*>(codes);
    const int64_t blocks = (words + kBlockWords - 1) / kBlockWords;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
        Rng rng(block_seed(seed, tensor, b));
        for (int64_t i = b * kBlockWords; i < std::min(words, (b + 1) * kBlockWords); ++i) {
            const uint64_t v = rng.next_u64();
            w[i] = v & ~((v & (v >> 1) & 0x5555555555555555ull) << 1);
        }
    }
}

// Padding rows and columns must hold code 1 (weight 0), as pack_ternary writes them.
void clear_padding(uint8_t* codes, int64_t rows, int64_t cols) {
    const int64_t rows_pad = kernels::packed_rows(rows), cols_pad = kernels::packed_cols(cols);
    auto set_zero = [&](int64_t r, int64_t c) {
        uint8_t& byte = codes[kernels::packed_byte_index(r, c, cols)];
        const int shift = kernels::packed_bit_shift(c);
        byte = static_cast<uint8_t>((byte & ~(3u << shift)) | (1u << shift));
    };
    for (int64_t r = 0; r < rows_pad; ++r)
        for (int64_t c = cols; c < cols_pad; ++c) set_zero(r, c);
    for (int64_t r = rows; r < rows_pad; ++r)
        for (int64_t c = 0; c < cols; ++c) set_zero(r, c);
}

// Uniform in [-a, a) with a = sqrt(3) * std (that uniform has the given std).
void fill_uniform(float* x, int64_t n, float std, uint64_t seed, size_t tensor) {
    const float a = std::sqrt(3.0f) * std;
    const int64_t blocks = (n + kBlockWords - 1) / kBlockWords;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
        Rng rng(block_seed(seed, tensor, b));
        for (int64_t i = b * kBlockWords; i < std::min(n, (b + 1) * kBlockWords); ++i)
            x[i] = (2.0f * rng.uniform() - 1.0f) * a;
    }
}

}  // namespace

ModelWeights ModelWeights::random_packed(const ModelConfig& config, uint64_t seed) {
    ModelWeights w;
    w.config = config;
    w.table = parameter_table(config);
    w.tensors.resize(w.table.size());
    for (size_t i = 0; i < w.table.size(); ++i) {
        const ParamSpec& spec = w.table[i];
        const float fan_in = static_cast<float>(spec.shape.back());
        if (spec.kind == ParamKind::kBitLinear) {
            const int64_t rows = spec.shape[0], cols = spec.shape[1];
            auto codes = std::make_shared<AlignedBuffer<uint8_t>>(
                static_cast<size_t>(kernels::packed_bytes(rows, cols)));
            fill_codes(codes->data(), static_cast<int64_t>(codes->size()), seed, i);
            if (rows % kernels::kRowGroup || cols % kernels::kColBlock)
                clear_padding(codes->data(), rows, cols);
            // mean |w| of normal(0, 1/fan_in) = sqrt(2/pi) / sqrt(fan_in)
            const float beta = std::sqrt(2.0f / 3.14159265f) / std::sqrt(fan_in);
            w.tensors[i].ternary = {codes->data(), rows, cols, beta};
            w.storage.push_back(codes);
        } else {
            auto data = std::make_shared<AlignedBuffer<float>>(static_cast<size_t>(spec.numel()));
            if (spec.kind == ParamKind::kNorm)
                std::fill(data->begin(), data->end(), 1.0f);
            else if (spec.kind != ParamKind::kBias)
                fill_uniform(data->data(), spec.numel(), 1.0f / std::sqrt(fan_in), seed, i);
            w.tensors[i].f32 = data->data();
            w.storage.push_back(data);
        }
    }
    w.link();
    return w;
}

}  // namespace bitttt
