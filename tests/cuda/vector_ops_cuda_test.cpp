// CUDA RMSNorm, SiLU-gated product (plain and fused with the quantization), the TTT `reconstruct`
// step and the bf16 GEMV against the CPU references (kernels::rmsnorm_scalar, silu_mul_scalar,
// ttt_scan_reconstruct_scalar, a double-precision dot product) on random data and odd shapes.
// Skipped without a GPU.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "cuda_test_util.hpp"
#include "io/safetensors.hpp"
#include "kernels/cpu/activations.hpp"
#include "kernels/cpu/norms.hpp"
#include "kernels/cpu/ternary.hpp"
#include "kernels/cpu/ttt_scan.hpp"
#include "kernels/cuda/gemv_float.hpp"
#include "kernels/cuda/kernels.hpp"

namespace bitttt::cuda::test {
namespace {

using kernels::packed_cols;

std::vector<float> random_vector(size_t n, Rng& rng, float scale = 1.0f) {
    std::vector<float> v(n);
    for (auto& x : v) x = rng.normal() * scale;
    return v;
}

// |got - ref| <= rel * |ref| + abs for every element, reporting the first few misses.
void expect_close(const std::vector<float>& got, const std::vector<float>& ref, float rel,
                  float abs) {
    ASSERT_EQ(got.size(), ref.size());
    int misses = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        const bool ok = std::fabs(got[i] - ref[i]) <= rel * std::fabs(ref[i]) + abs;
        if (!ok && misses++ < 5)
            ADD_FAILURE() << "element " << i << ": " << got[i] << " vs " << ref[i];
    }
    EXPECT_EQ(misses, 0);
}

class VectorOpsCuda : public CudaTest {};

TEST_F(VectorOpsCuda, RmsnormMatchesScalar) {
    Rng rng(1);
    for (int64_t d : {1, 3, 17, 255, 4097, 8192}) {
        for (int64_t m : {1, 5}) {
            SCOPED_TRACE(::testing::Message() << "d " << d << " m " << m);
            const int64_t stride = d + 3;  // rows with a gap between them
            auto x = random_vector(static_cast<size_t>(m * stride), rng, 3.0f);
            auto weight = random_vector(static_cast<size_t>(d), rng);
            std::vector<float> ref(x.size(), 0.0f);
            kernels::rmsnorm_scalar(x.data(), m, d, stride, weight.data(), 1e-5f, ref.data(),
                                    stride);
            DeviceBuffer dx = upload(x), dw = upload(weight);
            DeviceBuffer dy = upload(std::vector<float>(x.size(), 0.0f));
            Stream stream;
            rmsnorm(dx.as<float>(), m, d, stride, dw.as<float>(), 1e-5f, dy.as<float>(), stride,
                    stream);
            // In place, as the model may call it.
            rmsnorm(dx.as<float>(), m, d, stride, dw.as<float>(), 1e-5f, dx.as<float>(), stride,
                    stream);
            stream.synchronize();
            // Same formula; only the order of the (double) sum of squares differs.
            expect_close(download<float>(dy, x.size()), ref, 1e-6f, 0.0f);
            auto in_place = download<float>(dx, x.size());
            for (int64_t i = 0; i < m; ++i)  // gaps between rows keep the input values
                for (int64_t j = d; j < stride; ++j) ref[i * stride + j] = x[i * stride + j];
            expect_close(in_place, ref, 1e-6f, 0.0f);
        }
    }
}

TEST_F(VectorOpsCuda, RmsnormQuantizeMatchesCpuPipeline) {
    Rng rng(2);
    for (int64_t d : {1, 3, 17, 255, 4097, 8192}) {
        const int64_t m = 3, stride = packed_cols(d);
        SCOPED_TRACE(::testing::Message() << "d " << d);
        auto x = random_vector(static_cast<size_t>(m * d), rng, 2.0f);
        auto weight = random_vector(static_cast<size_t>(d), rng);
        std::vector<float> normed(x.size());
        kernels::rmsnorm_scalar(x.data(), m, d, d, weight.data(), 1e-5f, normed.data(), d);
        std::vector<int8_t> ref_q(static_cast<size_t>(m * stride));
        std::vector<float> ref_scale(m);
        kernels::quantize_activations_scalar(normed.data(), m, d, d, ref_q.data(), stride,
                                             ref_scale.data());
        DeviceBuffer dx = upload(x), dw = upload(weight);
        DeviceBuffer q = upload(std::vector<int8_t>(ref_q.size(), 99));
        DeviceBuffer scale(m * sizeof(float)), sum(m * sizeof(int32_t));
        Stream stream;
        rmsnorm_quantize(dx.as<float>(), m, d, d, dw.as<float>(), 1e-5f,
                         {q.as<int8_t>(), stride, scale.as<float>(), sum.as<int32_t>()}, stream);
        stream.synchronize();
        // The normalization factor equals the CPU's unless the double sums round differently
        // (odds ~1e-9 per row), so the int8 values are identical.
        EXPECT_EQ(download<int8_t>(q, ref_q.size()), ref_q);
        const auto got_scale = download<float>(scale, m);
        for (int64_t i = 0; i < m; ++i) EXPECT_EQ(bits(got_scale[i]), bits(ref_scale[i]));
        const auto got_sum = download<int32_t>(sum, m);
        for (int64_t i = 0; i < m; ++i) {
            int32_t s = 0;
            for (int64_t j = 0; j < stride; ++j) s += ref_q[i * stride + j];
            EXPECT_EQ(got_sum[i], s);
        }
    }
}

TEST_F(VectorOpsCuda, SiluMulMatchesScalar) {
    Rng rng(3);
    for (int64_t n : {1, 3, 17, 255, 4097, 28672}) {
        auto gate = random_vector(static_cast<size_t>(n), rng, 4.0f);
        auto up = random_vector(static_cast<size_t>(n), rng);
        gate[0] = -100.0f;  // exp overflows to inf: silu -> -0
        std::vector<float> ref(n);
        kernels::silu_mul_scalar(gate.data(), up.data(), n, ref.data());
        DeviceBuffer dg = upload(gate), du = upload(up);
        DeviceBuffer dy = upload(std::vector<float>(n, NAN));
        Stream stream;
        silu_mul(dg.as<float>(), du.as<float>(), n, dy.as<float>(), stream);
        silu_mul(dg.as<float>(), du.as<float>(), n, dg.as<float>(), stream);  // out aliases gate
        stream.synchronize();
        // CUDA's expf is within 2 ulp of the exact value, as is glibc's.
        expect_close(download<float>(dy, n), ref, 1e-6f, 1e-30f);
        expect_close(download<float>(dg, n), ref, 1e-6f, 1e-30f);
    }
}

TEST_F(VectorOpsCuda, SiluMulQuantizeMatchesCpuPipeline) {
    Rng rng(4);
    for (int64_t n : {1, 3, 17, 255, 4097, 28672}) {
        SCOPED_TRACE(::testing::Message() << "n " << n);
        const int64_t m = 2, stride = packed_cols(n);
        auto gate = random_vector(static_cast<size_t>(m * n), rng, 3.0f);
        auto up = random_vector(static_cast<size_t>(m * n), rng);
        std::vector<float> act(gate.size());
        kernels::silu_mul_scalar(gate.data(), up.data(), m * n, act.data());
        std::vector<int8_t> ref_q(static_cast<size_t>(m * stride));
        std::vector<float> ref_scale(m);
        kernels::quantize_activations_scalar(act.data(), m, n, n, ref_q.data(), stride,
                                             ref_scale.data());
        DeviceBuffer dg = upload(gate), du = upload(up);
        DeviceBuffer q = upload(std::vector<int8_t>(ref_q.size(), 99));
        DeviceBuffer scale(m * sizeof(float)), sum(m * sizeof(int32_t));
        Stream stream;
        silu_mul_quantize(dg.as<float>(), du.as<float>(), m, n, n,
                          {q.as<int8_t>(), stride, scale.as<float>(), sum.as<int32_t>()}, stream);
        stream.synchronize();
        // expf may differ from the CPU's by an ulp, which can move a value across a rounding
        // boundary: every int8 within 1, almost all equal; padding exactly zero.
        const auto got = download<int8_t>(q, ref_q.size());
        int64_t differing = 0;
        for (size_t i = 0; i < got.size(); ++i) {
            ASSERT_LE(std::abs(got[i] - ref_q[i]), 1) << "element " << i;
            differing += got[i] != ref_q[i];
            if (static_cast<int64_t>(i % stride) >= n) {
                ASSERT_EQ(got[i], 0);
            }
        }
        EXPECT_LE(differing, 2 + m * n / 1000);
        const auto got_scale = download<float>(scale, m);
        for (int64_t i = 0; i < m; ++i)
            EXPECT_NEAR(got_scale[i], ref_scale[i], 2e-6f * ref_scale[i]);
        const auto got_sum = download<int32_t>(sum, m);
        for (int64_t i = 0; i < m; ++i) {
            int32_t s = 0;
            for (int64_t j = 0; j < stride; ++j) s += got[i * stride + j];
            EXPECT_EQ(got_sum[i], s);
        }
    }
}

TEST_F(VectorOpsCuda, TttStepMatchesScalarScan) {
    Rng rng(5);
    const float eta = 0.1f;
    const int64_t tokens = 4;
    // 64, 256 and 2048 take the register path, the others the two-pass path.
    for (int64_t dt : {1, 3, 17, 64, 255, 256, 2048, 2049}) {
        SCOPED_TRACE(::testing::Message() << "dt " << dt);
        const size_t n = static_cast<size_t>(dt * dt);
        auto w = random_vector(n, rng, 0.3f);  // W row-major (the GPU layout)
        std::vector<float> s(n);               // S = Wᵀ (the CPU layout)
        for (int64_t i = 0; i < dt; ++i)
            for (int64_t j = 0; j < dt; ++j) s[j * dt + i] = w[i * dt + j];
        auto f = random_vector(static_cast<size_t>(tokens * dt), rng, 2.0f);
        std::vector<float> ref_z(f.size());
        kernels::ttt_scan_reconstruct_scalar(s.data(), dt, eta, f.data(), dt, tokens, ref_z.data(),
                                             dt);

        DeviceBuffer dw = upload(w), df = upload(f);
        DeviceBuffer dz = upload(std::vector<float>(f.size(), NAN));
        Stream stream;
        for (int64_t t = 0; t < tokens; ++t)
            ttt_reconstruct_step(dw.as<float>(), dt, eta, df.as<float>() + t * dt,
                                 dz.as<float>() + t * dt, stream);
        stream.synchronize();
        // Sums in another order: float rounding, relative to the size of the values.
        expect_close(download<float>(dz, f.size()), ref_z, 1e-5f, 1e-5f);
        const auto got_w = download<float>(dw, n);
        std::vector<float> got_s(n);
        for (int64_t i = 0; i < dt; ++i)
            for (int64_t j = 0; j < dt; ++j) got_s[j * dt + i] = got_w[i * dt + j];
        expect_close(got_s, s, 1e-5f, 1e-6f);
        // The step changed the state (a test that cannot pass by doing nothing).
        EXPECT_NE(got_w, w);
    }
}

// Prologue level 1 (DecodeVariant: f loaded in batches, the first batch kept for f̂) sums in the
// same order as level 0: z, the z key and the state bit for bit, for widths below, at and
// above one batch of 8 x 256 values, on the register and the scalar path.
TEST_F(VectorOpsCuda, TttStepBatchedPrologueIsBitIdentical) {
    Rng rng(9);
    const float eta = 0.1f;
    const int64_t tokens = 3;
    const DecodeVariant chosen = decode_variant();
    for (int64_t dt : {1, 3, 17, 255, 256, 2048, 2049, 4100}) {
        SCOPED_TRACE(::testing::Message() << "dt " << dt);
        const size_t n = static_cast<size_t>(dt * dt);
        const auto w = random_vector(n, rng, 0.3f);
        const auto f = random_vector(static_cast<size_t>(tokens * dt), rng, 2.0f);
        std::vector<float> results[2];
        for (int prologue : {0, 1}) {
            set_decode_variant({chosen.gemv_prefetch, prologue});
            DeviceBuffer dw = upload(w), df = upload(f), dz(f.size() * 4 + 16), key(16);
            key.fill_bytes(0);
            Stream stream;
            // No early state load: each step writes the W that the next one reads.
            for (int64_t t = 0; t < tokens; ++t)
                ttt_reconstruct_step(dw.as<float>(), dt, eta, df.as<float>() + t * dt,
                                     dz.as<float>() + t * dt, stream, key.as<unsigned long long>(),
                                     false);
            stream.synchronize();
            auto& r = results[prologue];
            r = download<float>(dz, f.size());
            const auto got_w = download<float>(dw, n);
            r.insert(r.end(), got_w.begin(), got_w.end());
            const auto k = download<unsigned long long>(key, 1)[0];
            r.push_back(std::bit_cast<float>(static_cast<uint32_t>(k >> 32)));
            r.push_back(std::bit_cast<float>(static_cast<uint32_t>(k)));
        }
        set_decode_variant(chosen);
        ASSERT_EQ(results[0].size(), results[1].size());
        EXPECT_EQ(std::memcmp(results[0].data(), results[1].data(), results[0].size() * 4), 0);
        EXPECT_NE(results[1][0], 0.0f);  // the step ran: z of the first token from W0 ≠ 0
    }
}

// The deferred step (state one update behind, kernels.hpp) against the plain one: two states
// stepped in turn (as two layers of a decode token: the other state's step runs between two steps
// of one, so the pending update may be applied before the PDL wait), then the pending updates
// applied. z, the z keys and the final states must equal the plain step's bit for bit where both
// sum in the same order (dt % 4 == 0 up to 2048, or dt % 4 != 0); dt = 4096 streams in float4s
// where the plain step reads scalars: close.
TEST_F(VectorOpsCuda, TttDeferredStepEqualsPlainStep) {
    Rng rng(8);
    const float eta = 0.1f;
    const int64_t tokens = 4;
    for (int64_t dt : {1, 3, 17, 64, 255, 256, 2048, 2049, 4096}) {
        for (const bool hold_rows : {true, false}) {
            for (const bool early : {true, false}) {
                SCOPED_TRACE(::testing::Message()
                             << "dt " << dt << " hold_rows " << hold_rows << " early " << early);
                const size_t n = static_cast<size_t>(dt * dt);
                const auto w0 = random_vector(n, rng, 0.3f), w1 = random_vector(n, rng, 0.3f);
                const auto f = random_vector(static_cast<size_t>(2 * tokens * dt), rng, 2.0f);
                DeviceBuffer df = upload(f);
                Stream stream;
                auto run = [&](bool deferred) {
                    DeviceBuffer dw[2] = {upload(w0), upload(w1)};
                    const auto pf = static_cast<size_t>(ttt_pending_floats(dt));
                    DeviceBuffer pending[2] = {upload(std::vector<float>(pf, 0.0f)),
                                               upload(std::vector<float>(pf, 0.0f))};
                    DeviceBuffer dz = upload(std::vector<float>(f.size(), NAN));
                    DeviceBuffer keys = upload(std::vector<uint64_t>(2 * tokens, 0));
                    for (int64_t t = 0; t < tokens; ++t) {
                        for (int s = 0; s < 2; ++s) {
                            const int64_t at = (2 * t + s) * dt;
                            unsigned long long* key = keys.as<unsigned long long>() + 2 * t + s;
                            if (deferred)
                                ttt_reconstruct_step_deferred(
                                    dw[s].as<float>(), dt, eta, df.as<float>() + at,
                                    dz.as<float>() + at, pending[s].as<float>(), stream, key, early,
                                    hold_rows);
                            else
                                ttt_reconstruct_step(dw[s].as<float>(), dt, eta,
                                                     df.as<float>() + at, dz.as<float>() + at,
                                                     stream, key);
                        }
                    }
                    if (deferred)
                        for (int s = 0; s < 2; ++s)
                            ttt_apply_pending(dw[s].as<float>(), dt, pending[s].as<float>(),
                                              stream);
                    stream.synchronize();
                    std::vector<float> out = download<float>(dz, f.size());
                    for (int s = 0; s < 2; ++s) {
                        const auto ws = download<float>(dw[s], n);
                        out.insert(out.end(), ws.begin(), ws.end());
                    }
                    const auto k = download<uint64_t>(keys, 2 * tokens);
                    for (const uint64_t key : k) out.push_back(static_cast<float>(key >> 32));
                    return out;
                };
                const auto plain = run(false), deferred = run(true);
                ASSERT_EQ(plain.size(), deferred.size());
                if (dt % 4 != 0 || dt <= 2048) {
                    size_t differ = 0;
                    for (size_t i = 0; i < plain.size(); ++i)
                        differ += bits(plain[i]) != bits(deferred[i]) ? 1 : 0;
                    EXPECT_EQ(differ, 0u);
                } else {
                    expect_close(deferred, plain, 1e-5f, 1e-6f);
                }
                // The steps did something: the final states differ from the initial ones.
                EXPECT_NE(std::vector<float>(deferred.begin() + static_cast<int64_t>(f.size()),
                                             deferred.begin() + static_cast<int64_t>(f.size() + n)),
                          w0);
            }
        }
    }
}

TEST_F(VectorOpsCuda, TttDeferredStepRejectsBadArguments) {
    Stream stream;
    DeviceBuffer buf(4096);
    float* p = buf.as<float>();
    EXPECT_THROW(ttt_reconstruct_step_deferred(p, 0, 0.1f, p, p + 8, p + 16, stream), Error);
    EXPECT_THROW(ttt_reconstruct_step_deferred(p, 4, 0.1f, p, p, p + 16, stream), Error);
    EXPECT_THROW(ttt_reconstruct_step_deferred(p, 4, 0.1f, p, p + 8, nullptr, stream), Error);
    EXPECT_THROW(ttt_reconstruct_step_deferred(p, 4, 0.1f, p, p + 8, p + 17, stream), Error);
    EXPECT_THROW(ttt_apply_pending(p, 100000, p + 16, stream), Error);
}

TEST_F(VectorOpsCuda, TttStepRejectsBadArguments) {
    Stream stream;
    DeviceBuffer buf(4096);
    float* p = buf.as<float>();
    EXPECT_THROW(ttt_reconstruct_step(p, 0, 0.1f, p, p + 8, stream), Error);
    EXPECT_THROW(ttt_reconstruct_step(p, 100000, 0.1f, p, p + 8, stream), Error);
    EXPECT_THROW(ttt_reconstruct_step(p, 4, 0.1f, p, p, stream), Error);  // z aliases f
}

TEST_F(VectorOpsCuda, Bf16GemvMatchesDoubleReference) {
    Rng rng(6);
    for (int64_t rows : {1, 3, 17, 255, 4097}) {
        for (int64_t cols : {8, 24, 1032, 4096}) {
            SCOPED_TRACE(::testing::Message() << "rows " << rows << " cols " << cols);
            std::vector<uint16_t> w(static_cast<size_t>(rows * cols));
            for (auto& v : w) v = io::f32_to_bf16(rng.normal());
            auto x = random_vector(static_cast<size_t>(cols), rng);
            std::vector<float> ref(rows), bound(rows);
            for (int64_t r = 0; r < rows; ++r) {
                double acc = 0, mag = 0;
                for (int64_t k = 0; k < cols; ++k) {
                    const double p = static_cast<double>(io::bf16_to_f32(w[r * cols + k])) * x[k];
                    acc += p;
                    mag += std::fabs(p);
                }
                ref[r] = static_cast<float>(acc);
                bound[r] = static_cast<float>(mag);
            }
            DeviceBuffer dw = upload(w), dx = upload(x);
            DeviceBuffer dy = upload(std::vector<float>(rows, NAN));
            Stream stream;
            bf16_gemv(dw.as<uint16_t>(), rows, cols, dx.as<float>(), dy.as<float>(), stream);
            stream.synchronize();
            const auto got = download<float>(dy, rows);
            for (int64_t r = 0; r < rows; ++r)  // fp32 accumulation error ~ 1e-7 * Σ|w x| * log
                ASSERT_LE(std::fabs(got[r] - ref[r]), 1e-5f * bound[r] + 1e-30f) << "row " << r;
        }
    }
    Stream stream;
    DeviceBuffer buf(4096);
    EXPECT_THROW(bf16_gemv(buf.as<uint16_t>(), 4, 12, buf.as<float>(), buf.as<float>(), stream),
                 Error);  // 12 columns: not a multiple of 8
}

TEST_F(VectorOpsCuda, Bf16ToFloatIsExact) {
    Rng rng(7);
    std::vector<uint16_t> row(1001);
    for (auto& v : row) v = io::f32_to_bf16(rng.normal() * 100.0f);
    DeviceBuffer d = upload(row);
    DeviceBuffer out = upload(std::vector<float>(row.size(), NAN));
    Stream stream;
    bf16_to_float(d.as<uint16_t>(), static_cast<int64_t>(row.size()), out.as<float>(), stream);
    stream.synchronize();
    const auto got = download<float>(out, row.size());
    for (size_t i = 0; i < row.size(); ++i) ASSERT_EQ(bits(got[i]), bits(io::bf16_to_f32(row[i])));
}

}  // namespace
}  // namespace bitttt::cuda::test
