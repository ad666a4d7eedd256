// int8 products: weight quantization, argument checks, the scalar reference and the ISA dispatch
// (math: int8_matmul.hpp).
#include "kernels/cpu/int8_matmul.hpp"

#include <atomic>
#include <cmath>
#include <cstring>

#include "core/cpu_features.hpp"
#include "core/error.hpp"
#include "core/team.hpp"
#include "kernels/cpu/f32_matmul.hpp"

namespace bitttt::kernels {
namespace {

void check_args(const Int8Weights& w, const int8_t* xq, int64_t xq_stride, const float* act_scale,
                int64_t m, const float* y, int64_t y_stride) {
    constexpr int64_t kMaxDim = int64_t{1} << 40;  // keeps every offset far from overflow
    check(w.rows >= 0 && w.rows <= kMaxDim && w.cols >= 1 && w.cols <= kInt8MaxCols && m >= 0 &&
              m <= kMaxDim,
          ErrorKind::kInvalidArgument,
          "int8_matmul: shape [{}, {}] x {} tokens is out of range (cols in [1, {}])", w.rows,
          w.cols, m, kInt8MaxCols);
    if (m == 0 || w.rows == 0) return;
    check(w.q != nullptr && w.scale != nullptr && w.row_sum != nullptr && xq != nullptr &&
              act_scale != nullptr && y != nullptr,
          ErrorKind::kInvalidArgument, "int8_matmul: null weight, scale, input or output buffer");
    check(m == 1 || (xq_stride >= w.cols && xq_stride <= kMaxDim), ErrorKind::kDimensionMismatch,
          "int8_matmul: input stride {} is not in [{}, 2^40]", xq_stride, w.cols);
    check(m == 1 || (y_stride >= w.rows && y_stride <= kMaxDim), ErrorKind::kDimensionMismatch,
          "int8_matmul: output stride {} is not in [{}, 2^40]", y_stride, w.rows);
}

}  // namespace

void quantize_int8_rows(const float* w, int64_t rows, int64_t cols, int8_t* q, float* scale,
                        int32_t* row_sum) {
    check(rows >= 0 && cols >= 1 && cols <= kInt8MaxCols, ErrorKind::kInvalidArgument,
          "int8 quantization: shape [{}, {}] is out of range (cols in [1, {}])", rows, cols,
          kInt8MaxCols);
    if (rows == 0) return;
    check(w != nullptr && q != nullptr && scale != nullptr && row_sum != nullptr,
          ErrorKind::kInvalidArgument, "int8 quantization: null buffer");
    const int64_t stride = int8_row_stride(cols);
    // A row with a NaN or an infinity has no absmax scale: remember the first such row and fail
    // after the loop (no exception may leave an OpenMP region).
    std::atomic<int64_t> bad{rows};
    parallel_for(rows, rows * cols >= kParallelMinWork, [&](int64_t n) {
        const float* wn = w + n * cols;
        int8_t* qn = q + n * stride;
        float absmax = 0.0f;
        bool finite = true;
        for (int64_t k = 0; k < cols; ++k) {
            finite = finite && std::isfinite(wn[k]);
            absmax = std::fmax(absmax, std::fabs(wn[k]));
        }
        std::memset(qn, 0, static_cast<size_t>(stride));
        scale[n] = 0.0f;
        row_sum[n] = 0;
        if (!finite) {
            int64_t seen = bad.load();
            while (n < seen && !bad.compare_exchange_weak(seen, n)) {
            }
            return;
        }
        if (absmax == 0.0f) return;  // a row of zeros: q = 0, s = 0
        const float inv = 127.0f / absmax;
        int32_t sum = 0;
        for (int64_t k = 0; k < cols; ++k) {
            float r = std::nearbyint(wn[k] * inv);  // default rounding mode: half to even
            r = std::fmin(std::fmax(r, -127.0f), 127.0f);
            qn[k] = static_cast<int8_t>(r);
            sum += qn[k];
        }
        scale[n] = absmax / 127.0f;
        row_sum[n] = sum;
    });
    check(bad.load() == rows, ErrorKind::kInvalidArgument,
          "int8 quantization: row {} holds a NaN or infinite weight", bad.load());
}

void int8_matmul_scalar(const Int8Weights& w, const int8_t* xq, int64_t xq_stride,
                        const float* act_scale, int64_t m, float* y, int64_t y_stride) {
    check_args(w, xq, xq_stride, act_scale, m, y, y_stride);
    const int64_t stride = int8_row_stride(w.cols);
    parallel_for(w.rows, w.rows * w.cols * m >= kParallelMinWork, [&](int64_t n) {
        const int8_t* qn = w.q + n * stride;
        for (int64_t i = 0; i < m; ++i) {
            const int8_t* xi = xq + i * xq_stride;
            int64_t acc = 0;
            for (int64_t k = 0; k < w.cols; ++k)
                acc += static_cast<int64_t>(qn[k]) * static_cast<int64_t>(xi[k]);
            y[i * y_stride + n] = static_cast<float>(acc) * (w.scale[n] * act_scale[i]);
        }
    });
}

void int8_matmul(const Int8Weights& w, const int8_t* xq, int64_t xq_stride, const float* act_scale,
                 int64_t m, float* y, int64_t y_stride) {
    check_args(w, xq, xq_stride, act_scale, m, y, y_stride);
    if (m == 0 || w.rows == 0) return;
    switch (active_isa()) {
        case Isa::kAvx512:
            return int8_matmul_avx512(w, xq, xq_stride, act_scale, m, y, y_stride);
        case Isa::kAvx2:
            return int8_matmul_avx2(w, xq, xq_stride, act_scale, m, y, y_stride);
        case Isa::kScalar:
            break;
    }
    int8_matmul_scalar(w, xq, xq_stride, act_scale, m, y, y_stride);
}

}  // namespace bitttt::kernels
