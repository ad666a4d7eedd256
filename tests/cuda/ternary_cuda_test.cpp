// CUDA ternary products and activation quantization against the CPU scalar references
// (kernels::ternary_matmul_scalar, quantize_activations_scalar): bit-identical results on random
// data and odd shapes, the decode GEMV (m = 1) and the prompt GEMM (m > 1), the fused residual add,
// batched GEMVs, and clear errors for hostile arguments. Skipped without a GPU, except the test
// that checks the error a GPU-less machine gives.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "core/aligned_buffer.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "cuda_test_util.hpp"
#include "kernels/cpu/ternary.hpp"
#include "kernels/cuda/kernels.hpp"
#include "random_ternary_weights.hpp"

namespace bitttt::cuda::test {
namespace {

using kernels::packed_bytes;
using kernels::packed_cols;
using kernels::TernaryWeights;

// m tokens of k random activations with varied magnitudes, quantized on the host.
struct HostActivations {
    int64_t stride;
    std::vector<float> x;
    std::vector<int8_t> q;
    std::vector<float> scale;
    std::vector<int32_t> sum;
    HostActivations(int64_t m, int64_t k, Rng& rng)
        : stride(packed_cols(k)),
          x(static_cast<size_t>(m * k)),
          q(static_cast<size_t>(m * stride)),
          scale(static_cast<size_t>(m)),
          sum(static_cast<size_t>(m)) {
        for (int64_t i = 0; i < m; ++i) {
            const float magnitude = std::exp2(static_cast<float>(rng.below(20)) - 10.0f);
            for (int64_t j = 0; j < k; ++j) x[i * k + j] = rng.normal() * magnitude;
        }
        kernels::quantize_activations_scalar(x.data(), m, k, k, q.data(), stride, scale.data());
        for (int64_t i = 0; i < m; ++i) {
            int32_t s = 0;
            for (int64_t j = 0; j < stride; ++j) s += q[i * stride + j];
            sum[i] = s;
        }
    }
};

// Device copies of quantized activations.
struct DeviceActivations {
    DeviceBuffer q, scale, sum;
    QuantizedActivations view;
    explicit DeviceActivations(const HostActivations& a)
        : q(upload(a.q)),
          scale(upload(a.scale)),
          sum(upload(a.sum)),
          view{q.as<int8_t>(), a.stride, scale.as<float>(), sum.as<int32_t>()} {}
};

// Runs the CUDA product and the CPU scalar reference on the same random data and requires
// bit-identical outputs (and, with accumulate, y0 + product with the same float add).
void expect_matmul_matches(int64_t rows, int64_t cols, int64_t m, bool accumulate, Rng& rng) {
    SCOPED_TRACE(::testing::Message() << "rows " << rows << " cols " << cols << " m " << m
                                      << (accumulate ? " accumulate" : ""));
    Weights w(rows, cols, rng);
    HostActivations a(m, cols, rng);
    std::vector<float> ref(static_cast<size_t>(m * rows));
    kernels::ternary_matmul_scalar(w.host, a.q.data(), a.stride, a.scale.data(), m, ref.data(),
                                   rows);
    std::vector<float> y0(ref.size());
    for (auto& v : y0) v = rng.normal();
    if (accumulate)
        for (size_t i = 0; i < ref.size(); ++i) ref[i] = y0[i] + ref[i];
    // Without accumulate the output starts as NaN, so an unwritten element cannot pass.
    if (!accumulate) std::fill(y0.begin(), y0.end(), std::numeric_limits<float>::quiet_NaN());

    DeviceActivations da(a);
    DeviceBuffer y = upload(y0);
    Stream stream;
    ternary_matmul(w.device(), da.view, m, y.as<float>(), rows, accumulate, stream);
    stream.synchronize();
    const auto got = download<float>(y, ref.size());
    int64_t mismatches = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        if (bits(got[i]) != bits(ref[i]) && mismatches++ < 5)
            ADD_FAILURE() << "token " << i / rows << " row " << i % rows << ": " << got[i]
                          << " != " << ref[i];
    }
    EXPECT_EQ(mismatches, 0);
}

class TernaryCuda : public CudaTest {};

TEST_F(TernaryCuda, GemvMatchesScalarOnOddShapes) {
    Rng rng(1);
    for (int64_t rows : {1, 3, 17, 255, 4097})
        for (int64_t cols : {1, 3, 17, 255, 4097}) expect_matmul_matches(rows, cols, 1, false, rng);
}

TEST_F(TernaryCuda, GemmMatchesScalarOnOddShapes) {
    Rng rng(2);
    for (int64_t rows : {1, 3, 17, 255, 4097})
        for (int64_t cols : {1, 3, 17, 255, 4097}) expect_matmul_matches(rows, cols, 3, false, rng);
}

TEST_F(TernaryCuda, EveryTokenCountFrom1To33) {
    Rng rng(3);
    for (int64_t m = 1; m <= 33; ++m) expect_matmul_matches(67, 300, m, false, rng);
    // Several token tiles of the GEMM (64 tokens each) and row tiles (64 rows each).
    expect_matmul_matches(130, 100, 130, false, rng);
}

TEST_F(TernaryCuda, AccumulateAddsToTheOutput) {
    Rng rng(4);
    expect_matmul_matches(255, 4097, 1, true, rng);
    expect_matmul_matches(255, 300, 17, true, rng);
}

TEST_F(TernaryCuda, BatchedGemvMatchesEachMatrix) {
    Rng rng(5);
    const int64_t cols = 1000;
    Weights w0(17, cols, rng), w1(4097, cols, rng), w2(255, cols, rng);
    HostActivations a(1, cols, rng);
    DeviceActivations da(a);
    const Weights* ws[3] = {&w0, &w1, &w2};
    TernaryWeights device_w[3];
    std::vector<DeviceBuffer> outputs;
    float* ys[3];
    for (int j = 0; j < 3; ++j) {
        device_w[j] = ws[j]->device();
        outputs.push_back(upload(std::vector<float>(static_cast<size_t>(ws[j]->host.rows), NAN)));
        ys[j] = outputs.back().as<float>();
    }
    Stream stream;
    ternary_gemv_batch(device_w, ys, 3, da.view, false, stream);
    stream.synchronize();
    for (int j = 0; j < 3; ++j) {
        std::vector<float> ref(static_cast<size_t>(ws[j]->host.rows));
        kernels::ternary_matmul_scalar(ws[j]->host, a.q.data(), a.stride, a.scale.data(), 1,
                                       ref.data(), ws[j]->host.rows);
        const auto got = download<float>(outputs[j], ref.size());
        for (size_t i = 0; i < ref.size(); ++i)
            ASSERT_EQ(bits(got[i]), bits(ref[i])) << "matrix " << j << " row " << i;
    }
}

TEST_F(TernaryCuda, QuantizeMatchesScalar) {
    Rng rng(6);
    for (int64_t k : {1, 3, 17, 255, 4097, 28672}) {
        for (int64_t m : {1, 3, 33}) {
            SCOPED_TRACE(::testing::Message() << "k " << k << " m " << m);
            HostActivations a(m, k, rng);
            // Special rows: all zeros (gamma = 1e-5), an infinity, a NaN among finite values.
            if (m >= 3) {
                std::fill(a.x.begin(), a.x.begin() + k, 0.0f);
                a.x[k] = std::numeric_limits<float>::infinity();
                a.x[2 * k] = std::numeric_limits<float>::quiet_NaN();
                kernels::quantize_activations_scalar(a.x.data(), m, k, k, a.q.data(), a.stride,
                                                     a.scale.data());
            }
            std::vector<int32_t> ref_sum(static_cast<size_t>(m));
            for (int64_t i = 0; i < m; ++i)
                for (int64_t j = 0; j < a.stride; ++j) ref_sum[i] += a.q[i * a.stride + j];

            DeviceBuffer x = upload(a.x);
            DeviceBuffer q = upload(std::vector<int8_t>(a.q.size(), 99));  // poisoned
            DeviceBuffer scale = upload(std::vector<float>(m, NAN));
            DeviceBuffer sum = upload(std::vector<int32_t>(m, -1));
            Stream stream;
            quantize_activations(x.as<float>(), m, k, k,
                                 {q.as<int8_t>(), a.stride, scale.as<float>(), sum.as<int32_t>()},
                                 stream);
            stream.synchronize();
            EXPECT_EQ(download<int8_t>(q, a.q.size()), a.q);
            const auto got_scale = download<float>(scale, m);
            for (int64_t i = 0; i < m; ++i) EXPECT_EQ(bits(got_scale[i]), bits(a.scale[i]));
            EXPECT_EQ(download<int32_t>(sum, m), ref_sum);
        }
    }
}

TEST_F(TernaryCuda, QuantizeThenGemvMatchesTheCpuPipeline) {
    // The decode path as the model runs it: float activations quantized on the GPU, then the GEMV.
    Rng rng(7);
    const int64_t rows = 300, cols = 2000;
    Weights w(rows, cols, rng);
    HostActivations a(1, cols, rng);
    std::vector<float> ref(rows);
    kernels::ternary_matmul_scalar(w.host, a.q.data(), a.stride, a.scale.data(), 1, ref.data(),
                                   rows);
    DeviceBuffer x = upload(a.x);
    DeviceBuffer q(static_cast<size_t>(a.stride)), scale(4), sum(4);
    DeviceBuffer y(rows * sizeof(float));
    const QuantizedActivations view{q.as<int8_t>(), a.stride, scale.as<float>(), sum.as<int32_t>()};
    Stream stream;
    quantize_activations(x.as<float>(), 1, cols, cols, view, stream);
    ternary_matmul(w.device(), view, 1, y.as<float>(), rows, false, stream);
    stream.synchronize();
    const auto got = download<float>(y, rows);
    for (int64_t i = 0; i < rows; ++i) ASSERT_EQ(bits(got[i]), bits(ref[i])) << "row " << i;
}

TEST_F(TernaryCuda, RandomTernaryFillIsUniformWithNeutralPadding) {
    const int64_t rows = 37, cols = 45;  // both padded: rows to 48, columns to 48
    Stream stream;
    DeviceBuffer codes(static_cast<size_t>(packed_bytes(rows, cols)));
    fill_random_ternary(codes.as<uint8_t>(), rows, cols, 11, stream);
    stream.synchronize();
    const auto bytes = download<uint8_t>(codes, codes.bytes());
    int64_t counts[4] = {};
    for (int64_t r = 0; r < kernels::packed_rows(rows); ++r) {
        for (int64_t c = 0; c < packed_cols(cols); ++c) {
            const int code =
                (bytes[kernels::packed_byte_index(r, c, cols)] >> kernels::packed_bit_shift(c)) & 3;
            if (r >= rows || c >= cols) {
                ASSERT_EQ(code, 1) << "padding at " << r << "," << c;
            } else {
                ++counts[code];
            }
        }
    }
    EXPECT_EQ(counts[3], 0);
    for (int code = 0; code < 3; ++code) {
        EXPECT_GT(counts[code], rows * cols / 3 - 120) << "code " << code;
        EXPECT_LT(counts[code], rows * cols / 3 + 120) << "code " << code;
    }
    // The same seed gives the same codes, another seed other codes.
    DeviceBuffer again(codes.bytes()), other(codes.bytes());
    fill_random_ternary(again.as<uint8_t>(), rows, cols, 11, stream);
    fill_random_ternary(other.as<uint8_t>(), rows, cols, 12, stream);
    stream.synchronize();
    EXPECT_EQ(download<uint8_t>(again, again.bytes()), bytes);
    EXPECT_NE(download<uint8_t>(other, other.bytes()), bytes);
}

// Expects fn to throw a bitttt::Error whose message contains `text`.
template <typename Fn>
void expect_error(Fn&& fn, const std::string& text) {
    try {
        fn();
        ADD_FAILURE() << "no error (expected one mentioning '" << text << "')";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
}

TEST_F(TernaryCuda, HostileArgumentsGiveClearErrors) {
    Rng rng(8);
    Weights w(17, 64, rng);
    HostActivations a(2, 64, rng);
    DeviceActivations da(a);
    DeviceBuffer y(4096);
    Stream stream;
    float* out = y.as<float>();
    expect_error([&] { ternary_matmul(w.device(), da.view, -1, out, 17, false, stream); },
                 "token count");
    TernaryWeights huge = w.device();
    huge.cols = int64_t{1} << 23;
    expect_error([&] { ternary_matmul(huge, da.view, 1, out, 17, false, stream); }, "out of range");
    TernaryWeights null_codes = w.device();
    null_codes.codes = nullptr;
    expect_error([&] { ternary_matmul(null_codes, da.view, 1, out, 17, false, stream); },
                 "weight codes");
    QuantizedActivations misaligned = da.view;
    misaligned.q += 1;
    expect_error([&] { ternary_matmul(w.device(), misaligned, 1, out, 17, false, stream); },
                 "16-byte aligned");
    QuantizedActivations short_stride = da.view;
    short_stride.stride = 16;  // rows hold 64 bytes
    expect_error([&] { ternary_matmul(w.device(), short_stride, 2, out, 17, false, stream); },
                 "activation stride");
    expect_error([&] { ternary_matmul(w.device(), da.view, 2, out, 5, false, stream); },
                 "output stride");
    const TernaryWeights ws[2] = {w.device(), w.device()};
    float* ys[2] = {out, out};
    expect_error([&] { ternary_gemv_batch(ws, ys, 0, da.view, false, stream); }, "matrices");
    TernaryWeights other_cols[2] = {w.device(), w.device()};
    other_cols[1].cols = 48;
    expect_error([&] { ternary_gemv_batch(other_cols, ys, 2, da.view, false, stream); }, "columns");
    expect_error([&] { quantize_activations(nullptr, 1, 64, 64, da.view, stream); }, "null input");
    stream.synchronize();  // nothing was launched: the stream is still usable
}

// Runs on machines WITHOUT a GPU (CI): anything asking for CUDA fails with a clear message.
TEST(CudaWithoutGpu, RequestsFailWithAClearMessage) {
    if (device_count() > 0) GTEST_SKIP() << "this machine has a GPU";
    try {
        require_device("test");
        FAIL() << "require_device did not throw";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
        EXPECT_NE(std::string(e.what()).find("CUDA: test: no CUDA GPU is available"),
                  std::string::npos)
            << e.what();
    }
    EXPECT_THROW(DeviceBuffer(64), Error);
    EXPECT_THROW(Stream(), Error);
    EXPECT_THROW(device_info(), Error);
}

}  // namespace
}  // namespace bitttt::cuda::test
