// A decode step of small random Bit-TTT layers, chained on one stream exactly as a GPU forward
// runs it (kernels launched back to back with Programmatic Dependent Launch), against the same
// chain of CPU scalar references: once with separate norm/quantize kernels, once with the GEMVs
// that quantize on the fly from their producers' statistics (gemv_float.hpp). A missing
// dependency between two kernels (a read of a buffer the previous kernel has not finished
// writing), or a statistic not reset between tokens, shows up as a large mismatch. Skipped
// without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/aligned_buffer.hpp"
#include "core/rng.hpp"
#include "cuda_test_util.hpp"
#include "kernels/cpu/activations.hpp"
#include "kernels/cpu/norms.hpp"
#include "kernels/cpu/ternary.hpp"
#include "kernels/cpu/ttt_scan.hpp"
#include "kernels/cuda/gemv_float.hpp"
#include "kernels/cuda/kernels.hpp"

namespace bitttt::cuda::test {
namespace {

using kernels::packed_bytes;
using kernels::packed_cols;
using kernels::TernaryWeights;

struct Matrix {
    AlignedBuffer<uint8_t> codes;
    TernaryWeights host;
    DeviceBuffer device_codes;
    Matrix(int64_t rows, int64_t cols, Rng& rng) {
        std::vector<int8_t> q(static_cast<size_t>(rows * cols));
        for (auto& v : q) v = static_cast<int8_t>(static_cast<int>(rng.below(3)) - 1);
        codes.resize(static_cast<size_t>(packed_bytes(rows, cols)));
        kernels::pack_ternary(q.data(), rows, cols, codes.data());
        host = {codes.data(), rows, cols, 1.0f / std::sqrt(static_cast<float>(cols))};
        device_codes = DeviceBuffer(codes.size());
        device_codes.copy_from_host(codes.data(), codes.size());
    }
    TernaryWeights device() const {
        return {device_codes.as<uint8_t>(), host.rows, host.cols, host.scale};
    }
};

struct Layer {
    Matrix ttt_down, ttt_up, gate, up, down;
    std::vector<float> norm1, norm2;
    std::vector<float> s;  // CPU TTT state S = Wᵀ
    DeviceBuffer d_norm1, d_norm2, d_w;
    Layer(int64_t d, int64_t dt, int64_t mlp, Rng& rng)
        : ttt_down(dt, d, rng),
          ttt_up(d, dt, rng),
          gate(mlp, d, rng),
          up(mlp, d, rng),
          down(d, mlp, rng),
          norm1(d),
          norm2(d),
          s(static_cast<size_t>(dt * dt), 0.0f) {
        for (auto& v : norm1) v = 0.8f + 0.4f * rng.uniform();
        for (auto& v : norm2) v = 0.8f + 0.4f * rng.uniform();
        d_norm1 = upload(norm1);
        d_norm2 = upload(norm2);
        d_w = upload(s);  // W0 = 0 on both sides
    }
};

// CPU: y = W xq (+ y) through the scalar references.
void cpu_linear(const Matrix& m, const std::vector<float>& in, std::vector<float>& out,
                bool accumulate) {
    const int64_t k = m.host.cols;
    std::vector<int8_t> q(static_cast<size_t>(packed_cols(k)));
    float scale = 0;
    kernels::quantize_activations_scalar(in.data(), 1, k, k, q.data(), packed_cols(k), &scale);
    std::vector<float> y(static_cast<size_t>(m.host.rows));
    kernels::ternary_matmul_scalar(m.host, q.data(), packed_cols(k), &scale, 1, y.data(),
                                   m.host.rows);
    for (size_t i = 0; i < y.size(); ++i) out[i] = accumulate ? out[i] + y[i] : y[i];
}

// One layer of the decode step on the CPU: x += ttt.up(TTT(ttt.down(RMSNorm x))), then
// x += down(silu(gate(RMSNorm x)) * up(RMSNorm x)).
void cpu_layer(Layer& L, std::vector<float>& hx, float eta, float eps) {
    const int64_t d = L.ttt_down.host.cols, dt = L.ttt_down.host.rows, mlp = L.gate.host.rows;
    std::vector<float> n(static_cast<size_t>(d)), hf(static_cast<size_t>(dt)),
        hz(static_cast<size_t>(dt)), hg(static_cast<size_t>(mlp)), hu(static_cast<size_t>(mlp));
    kernels::rmsnorm_scalar(hx.data(), 1, d, d, L.norm1.data(), eps, n.data(), d);
    cpu_linear(L.ttt_down, n, hf, false);
    kernels::ttt_scan_reconstruct_scalar(L.s.data(), dt, eta, hf.data(), dt, 1, hz.data(), dt);
    cpu_linear(L.ttt_up, hz, hx, true);
    kernels::rmsnorm_scalar(hx.data(), 1, d, d, L.norm2.data(), eps, n.data(), d);
    cpu_linear(L.gate, n, hg, false);
    cpu_linear(L.up, n, hu, false);
    kernels::silu_mul_scalar(hg.data(), hu.data(), mlp, hg.data());
    cpu_linear(L.down, hg, hx, true);
}

// TTT sums and expf differ from the CPU in the last bits, which can move an int8 activation by one
// step: agreement to a small fraction of the largest value.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, int64_t token) {
    float max_ref = 0, max_diff = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        max_ref = std::max(max_ref, std::fabs(want[i]));
        max_diff = std::max(max_diff, std::fabs(got[i] - want[i]));
    }
    EXPECT_LE(max_diff, 2e-3f * max_ref) << "token " << token;
    EXPECT_GT(max_ref, 0.1f);
}

class DecodeChainCuda : public CudaTest {};

TEST_F(DecodeChainCuda, MatchesTheCpuReferencesTokenAfterToken) {
    const int64_t d = 512, dt = 128, mlp = 1376, layers = 4, tokens = 3;
    const float eta = 0.1f, eps = 1e-5f;
    Rng rng(42);
    std::vector<Layer> net;
    for (int64_t l = 0; l < layers; ++l) net.emplace_back(d, dt, mlp, rng);

    const int64_t widest = packed_cols(mlp);
    DeviceBuffer x(d * 4), f(dt * 4), z(dt * 4), g(mlp * 4), u(mlp * 4);
    DeviceBuffer q(static_cast<size_t>(widest)), scale(16), sum(16);
    const QuantizedActivations acts{q.as<int8_t>(), widest, scale.as<float>(), sum.as<int32_t>()};
    Stream stream;
    for (int64_t t = 0; t < tokens; ++t) {
        std::vector<float> hx(static_cast<size_t>(d));
        for (auto& v : hx) v = rng.normal();
        x.copy_from_host(hx.data(), hx.size() * 4);
        for (int64_t l = 0; l < layers; ++l) {
            Layer& L = net[static_cast<size_t>(l)];
            // GPU, enqueued without any synchronization.
            rmsnorm_quantize(x.as<float>(), 1, d, d, L.d_norm1.as<float>(), eps, acts, stream);
            ternary_matmul(L.ttt_down.device(), acts, 1, f.as<float>(), dt, false, stream);
            ttt_reconstruct_step(L.d_w.as<float>(), dt, eta, f.as<float>(), z.as<float>(), stream);
            quantize_activations(z.as<float>(), 1, dt, dt, acts, stream);
            ternary_matmul(L.ttt_up.device(), acts, 1, x.as<float>(), d, true, stream);
            rmsnorm_quantize(x.as<float>(), 1, d, d, L.d_norm2.as<float>(), eps, acts, stream);
            const TernaryWeights gate_up[2] = {L.gate.device(), L.up.device()};
            float* outs[2] = {g.as<float>(), u.as<float>()};
            ternary_gemv_batch(gate_up, outs, 2, acts, false, stream);
            silu_mul_quantize(g.as<float>(), u.as<float>(), 1, mlp, mlp, acts, stream);
            ternary_matmul(L.down.device(), acts, 1, x.as<float>(), d, true, stream);

            cpu_layer(L, hx, eta, eps);  // CPU, the same math through the scalar references
        }
        stream.synchronize();
        expect_close(download<float>(x, static_cast<size_t>(d)), hx, t);
    }
}

// The chain of 5 kernels per layer: every GEMV quantizes its float input on the fly, every writer
// publishes the statistics its reader needs; row_stats starts each token (and zeroes its keys).
// Shapes include rows that are not multiples of 16 or of 4.
TEST_F(DecodeChainCuda, OnTheFlyQuantizationMatchesTheCpuReferences) {
    struct Shape {
        int64_t d, dt, mlp;
    };
    for (const Shape shape : {Shape{512, 128, 1376}, Shape{200, 72, 333}}) {
        const int64_t d = shape.d, dt = shape.dt, mlp = shape.mlp, layers = 4, tokens = 3;
        const float eta = 0.1f, eps = 1e-5f;
        Rng rng(43);
        std::vector<Layer> net;
        for (int64_t l = 0; l < layers; ++l) net.emplace_back(d, dt, mlp, rng);
        const int64_t groups = (d + 15) / 16;
        DeviceBuffer x(d * 4), f(dt * 4), z(dt * 4), h(mlp * 4);
        DeviceBuffer partials(static_cast<size_t>(2 * groups) * sizeof(double));
        DeviceBuffer key_buffer(static_cast<size_t>(4 * layers) * sizeof(uint64_t));
        auto* keys = key_buffer.as<unsigned long long>();
        double* pa = partials.as<double>();
        double* pc = pa + groups;
        Stream stream;
        for (int64_t t = 0; t < tokens; ++t) {
            std::vector<float> hx(static_cast<size_t>(d));
            for (auto& v : hx) v = rng.normal();
            x.copy_from_host(hx.data(), hx.size() * 4);
            row_stats(x.as<float>(), d, net[0].d_norm1.as<float>(), {pa, groups, keys}, keys,
                      4 * layers, stream);
            for (int64_t l = 0; l < layers; ++l) {
                Layer& L = net[static_cast<size_t>(l)];
                const RowStats a{pa, groups, keys + 4 * l}, zs{nullptr, 0, keys + 4 * l + 1},
                    c{pc, groups, keys + 4 * l + 2}, hs{nullptr, 0, keys + 4 * l + 3};
                const float* norm2 = L.d_norm2.as<float>();
                ternary_gemv_float(L.ttt_down.device(),
                                   {x.as<float>(), d, L.d_norm1.as<float>(), eps, a}, f.as<float>(),
                                   false, {}, nullptr, stream);
                ttt_reconstruct_step(L.d_w.as<float>(), dt, eta, f.as<float>(), z.as<float>(),
                                     stream, zs.key, true);
                ternary_gemv_float(L.ttt_up.device(), {z.as<float>(), dt, nullptr, 0.0f, zs},
                                   x.as<float>(), true, c, norm2, stream);
                ternary_gemv_swiglu(L.gate.device(), L.up.device(),
                                    {x.as<float>(), d, norm2, eps, c}, h.as<float>(), hs, stream);
                const bool last = l + 1 == layers;
                const RowStats next = last ? RowStats{} : RowStats{pa, groups, keys + 4 * (l + 1)};
                const float* next_norm =
                    last ? nullptr : net[static_cast<size_t>(l + 1)].d_norm1.as<float>();
                ternary_gemv_float(L.down.device(), {h.as<float>(), mlp, nullptr, 0.0f, hs},
                                   x.as<float>(), true, next, next_norm, stream);
                cpu_layer(L, hx, eta, eps);
            }
            stream.synchronize();
            expect_close(download<float>(x, static_cast<size_t>(d)), hx, t);
        }
    }
}

}  // namespace
}  // namespace bitttt::cuda::test
