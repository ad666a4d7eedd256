// Weight quantization, packing and activation quantization: the scalar definitions of §2.1.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/cpu_features.hpp"
#include "core/error.hpp"
#include "kernels/cpu/ternary.hpp"
#include "kernels/cpu/ternary_isa.hpp"

namespace bitttt::kernels {

float ternary_scale(const float* w, int64_t n) {
    if (n <= 0) return 0.0f;
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += std::fabs(static_cast<double>(w[i]));
    return static_cast<float>(sum / static_cast<double>(n));
}

void quantize_ternary(const float* w, int64_t n, float beta, int8_t* q) {
    const float denom = beta + 1e-8f;
    for (int64_t i = 0; i < n; ++i) {
        float r = std::nearbyint(w[i] / denom);  // default rounding mode: half to even
        q[i] = static_cast<int8_t>(std::clamp(r, -1.0f, 1.0f));
    }
}

void pack_ternary(const int8_t* q, int64_t rows, int64_t cols, uint8_t* codes) {
    // Code 1 (weight 0) everywhere first: 0b01010101 covers the padding rows and columns.
    std::memset(codes, 0x55, static_cast<size_t>(packed_bytes(rows, cols)));
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
            int64_t idx = packed_byte_index(r, c, cols);
            int shift = packed_bit_shift(c);
            uint8_t code = static_cast<uint8_t>(q[r * cols + c] + 1);
            codes[idx] = static_cast<uint8_t>((codes[idx] & ~(3u << shift)) | (code << shift));
        }
    }
}

void unpack_ternary(const uint8_t* codes, int64_t rows, int64_t cols, int8_t* q) {
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
            q[r * cols + c] = static_cast<int8_t>(
                ((codes[packed_byte_index(r, c, cols)] >> packed_bit_shift(c)) & 3) - 1);
}

void check_quantize_args(const float* x, int64_t m, int64_t k, int64_t x_stride, const int8_t* xq,
                         int64_t xq_stride, const float* act_scale) {
    constexpr int64_t kMaxDim = int64_t{1} << 40;  // keeps every byte offset far from overflow
    check(m >= 0 && m <= kMaxDim && k >= 0 && k <= kMaxDim, ErrorKind::kInvalidArgument,
          "quantize_activations: shape [{}, {}] is out of range", m, k);
    if (m == 0) return;
    check(x != nullptr && xq != nullptr && act_scale != nullptr, ErrorKind::kInvalidArgument,
          "quantize_activations: null input, output or scale buffer");
    check(m == 1 || (x_stride >= k && x_stride <= kMaxDim), ErrorKind::kDimensionMismatch,
          "quantize_activations: input stride {} is not in [{}, 2^40]", x_stride, k);
    check(m == 1 || (xq_stride >= packed_cols(k) && xq_stride <= kMaxDim),
          ErrorKind::kDimensionMismatch,
          "quantize_activations: output stride {} is not in [{}, 2^40]", xq_stride, packed_cols(k));
}

void quantize_activations_scalar(const float* x, int64_t m, int64_t k, int64_t x_stride, int8_t* xq,
                                 int64_t xq_stride, float* act_scale) {
    check_quantize_args(x, m, k, x_stride, xq, xq_stride, act_scale);
    const int64_t k_pad = packed_cols(k);
    for (int64_t i = 0; i < m; ++i) {
        const float* xi = x + i * x_stride;
        int8_t* qi = xq + i * xq_stride;
        float absmax = 0.0f;
        for (int64_t j = 0; j < k; ++j) absmax = std::max(absmax, std::fabs(xi[j]));
        const float gamma = std::max(absmax, 1e-5f);
        const float s = 127.0f / gamma;
        for (int64_t j = 0; j < k; ++j) {
            float r = std::nearbyint(xi[j] * s);
            if (!(r == r)) r = 0.0f;  // NaN (inputs must be finite; this only avoids UB)
            qi[j] = static_cast<int8_t>(std::clamp(r, -127.0f, 127.0f));
        }
        for (int64_t j = k; j < k_pad; ++j) qi[j] = 0;
        act_scale[i] = gamma / 127.0f;
    }
}

void quantize_activations(const float* x, int64_t m, int64_t k, int64_t x_stride, int8_t* xq,
                          int64_t xq_stride, float* act_scale) {
    switch (active_isa()) {
        case Isa::kAvx512:
            return quantize_activations_avx512(x, m, k, x_stride, xq, xq_stride, act_scale);
        case Isa::kAvx2:
            return quantize_activations_avx2(x, m, k, x_stride, xq, xq_stride, act_scale);
        case Isa::kScalar:
            break;
    }
    quantize_activations_scalar(x, m, k, x_stride, xq, xq_stride, act_scale);
}

}  // namespace bitttt::kernels
