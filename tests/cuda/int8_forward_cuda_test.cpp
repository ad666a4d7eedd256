// The int8 forward products of GPU training (kernels/cuda/int8_gemm.hpp) and the int8 halves of
// the training ops (train_ops.hpp: codes8 outputs, int32 product inputs):
//   - the int8 product equals the exact integer product (CPU) and the bf16 product with fp32
//     accumulation (cuBLAS, as the model runs it) bit for bit, on random and odd row counts, with
//     the largest sums the model can make (K = 4096 codes of ±127 times 1); shapes it refuses (K
//     or OC not multiples of 16) throw, and the model keeps the bf16 products for them
//     (train_model_cuda_test);
//   - every quantizing op's int8 codes equal its bf16 codes, and every op that reads a product of
//     codes gives the same bits from int32 as from the same values in fp32 (row lengths that take
//     the register kernels, the general ones and the two-op fallbacks);
//   - the whole training model: the same loss, logits and gradients with and without the int8
//     products, both rules, every memory setting; the bf16 products where int8 does not apply.
#include <cublas_v2.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <string>
#include <tuple>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "cuda_test_util.hpp"
#include "io/safetensors.hpp"
#include "kernels/cuda/int8_gemm.hpp"
#include "kernels/cuda/train_model.hpp"
#include "kernels/cuda/train_ops.hpp"
#include "train/model.hpp"

namespace bitttt::cuda::test {
namespace {

class Int8ForwardCuda : public CudaTest {};

// bf16 bits of a small integer (exact: |v| <= 256).
uint16_t bf16_of_int(int v) {
    return io::f32_to_bf16(static_cast<float>(v));
}

// The bf16 product of the model (train_model.cpp, bl_forward): outᵀ = W · xᵀ in fp32 from bf16.
void bf16_product(float* out, const uint16_t* x, const uint16_t* w, int64_t N, int64_t K,
                  int64_t OC, const Stream& stream) {
    cublasHandle_t h = nullptr;
    ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
    ASSERT_EQ(cublasSetStream(h, static_cast<cudaStream_t>(stream.handle())),
              CUBLAS_STATUS_SUCCESS);
    const float one = 1.0f, zero = 0.0f;
    const int m = static_cast<int>(OC), n = static_cast<int>(N), k = static_cast<int>(K);
    EXPECT_EQ(
        cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, w, CUDA_R_16BF, k, x, CUDA_R_16BF,
                     k, &zero, out, CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        CUBLAS_STATUS_SUCCESS);
    stream.synchronize();
    cublasDestroy(h);
}

// x codes in [-127, 127], ternary w; extreme: every x = ±127 and w = 1 (the largest sums).
void check_product(int64_t N, int64_t K, int64_t OC, bool extreme) {
    SCOPED_TRACE(::testing::Message() << N << "x" << K << "x" << OC << (extreme ? " extreme" : ""));
    ASSERT_TRUE(Int8Gemm::supported(N, K, OC));
    Rng rng(static_cast<uint64_t>(N * 131 + K * 7 + OC));
    std::vector<int8_t> x(N * K), w(OC * K);
    for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k)
            x[n * K + k] = static_cast<int8_t>(extreme ? (n % 2 ? -127 : 127)
                                                       : static_cast<int>(rng.below(255)) - 127);
    for (auto& v : w) v = static_cast<int8_t>(extreme ? 1 : static_cast<int>(rng.below(3)) - 1);
    std::vector<uint16_t> xb(x.size()), wb(w.size());
    for (size_t i = 0; i < x.size(); ++i) xb[i] = bf16_of_int(x[i]);
    for (size_t i = 0; i < w.size(); ++i) wb[i] = bf16_of_int(w[i]);
    Stream stream;
    DeviceBuffer dx = upload(x), dw = upload(w), dxb = upload(xb), dwb = upload(wb);
    DeviceBuffer d_i32(N * OC * 4), d_f32(N * OC * 4);
    DeviceBuffer ws(1 << 20);
    Int8Gemm gemm(ws.data(), ws.bytes());
    gemm.run(d_i32.as<int32_t>(), dx.as<int8_t>(), dw.as<int8_t>(), N, K, OC, stream);
    stream.synchronize();
    bf16_product(d_f32.as<float>(), dxb.as<uint16_t>(), dwb.as<uint16_t>(), N, K, OC, stream);
    const auto got = download<int32_t>(d_i32, N * OC);
    const auto ref = download<float>(d_f32, N * OC);
    int64_t exact = 0, bits_equal = 0;
    for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < OC; ++o) {
            int64_t sum = 0;
            for (int64_t k = 0; k < K; ++k) sum += int64_t{x[n * K + k]} * w[o * K + k];
            const int32_t v = got[n * OC + o];
            exact += v == sum;
            bits_equal += bits(static_cast<float>(v)) == bits(ref[n * OC + o]);
        }
    EXPECT_EQ(exact, N * OC) << "int8 product vs the exact integer product";
    EXPECT_EQ(bits_equal, N * OC) << "int8 product vs the bf16 product (fp32 accumulation)";
    // Twice with the same plan: the same result.
    gemm.run(d_i32.as<int32_t>(), dx.as<int8_t>(), dw.as<int8_t>(), N, K, OC, stream);
    EXPECT_EQ(download<int32_t>(d_i32, N * OC), got);
}

TEST_F(Int8ForwardCuda, ProductEqualsExactAndBf16Products) {
    // Row counts 1, odd, not multiples of 16; the model's shapes (D 256/1024, Dt = D/4, M = 4D).
    for (auto [N, K, OC] : {std::tuple<int64_t, int64_t, int64_t>{1, 16, 16},
                            {37, 64, 48},
                            {130, 32, 16},
                            {333, 256, 64},
                            {200, 1024, 256},
                            {257, 256, 1024},
                            {64, 1024, 4096},
                            {77, 4096, 1024}})
        check_product(N, K, OC, false);
    check_product(9, 4096, 32, true);  // |sums| = 520192 = 4096 · 127 (< 2^24)
}

TEST_F(Int8ForwardCuda, RefusesShapesItDoesNotTake) {
    for (auto [N, K, OC] : {std::tuple<int64_t, int64_t, int64_t>{0, 16, 16},
                            {5, 20, 16},
                            {5, 16, 36},
                            {5, 8, 16},
                            {5, 100, 100}})
        EXPECT_FALSE(Int8Gemm::supported(N, K, OC)) << N << "x" << K << "x" << OC;
    DeviceBuffer ws(1 << 16), a(4096), b(4096), c(4096 * 4);
    Int8Gemm gemm(ws.data(), ws.bytes());
    Stream stream;
    EXPECT_THROW(gemm.run(c.as<int32_t>(), a.as<int8_t>(), b.as<int8_t>(), 5, 20, 16, stream),
                 Error);
    // Misaligned operands are refused too.
    EXPECT_THROW(gemm.run(c.as<int32_t>(), a.as<int8_t>() + 4, b.as<int8_t>(), 4, 16, 16, stream),
                 Error);
}

// ---- the ops ----

std::vector<float> random_vec(size_t n, uint64_t seed, float scale = 1.0f) {
    Rng rng(seed);
    std::vector<float> v(n);
    for (auto& x : v) x = scale * static_cast<float>(rng.normal());
    return v;
}

// Random raw products of codes: integers below 2^19 in magnitude, as int32 and as fp32.
std::pair<std::vector<int32_t>, std::vector<float>> random_raw(size_t n, uint64_t seed,
                                                               int limit = 300000) {
    Rng rng(seed);
    std::vector<int32_t> i(n);
    std::vector<float> f(n);
    for (size_t j = 0; j < n; ++j) {
        i[j] = static_cast<int32_t>(rng.below(2 * static_cast<uint64_t>(limit) + 1)) - limit;
        f[j] = static_cast<float>(i[j]);
    }
    return {i, f};
}

// codes8[i] == the value of codes[i] (bf16), for every element.
void expect_codes_equal(const DeviceBuffer& codes, const DeviceBuffer& codes8, int64_t n,
                        const char* what) {
    const auto b = download<uint16_t>(codes, n);
    const auto q = download<int8_t>(codes8, n);
    int64_t equal = 0;
    for (int64_t i = 0; i < n; ++i) equal += io::bf16_to_f32(b[i]) == static_cast<float>(q[i]);
    EXPECT_EQ(equal, n) << what;
}

template <typename T>
void expect_same_bits(const DeviceBuffer& a, const DeviceBuffer& b, int64_t n, const char* what) {
    EXPECT_EQ(download<T>(a, n), download<T>(b, n)) << what;
}

TEST_F(Int8ForwardCuda, QuantizingOpsWriteTheSameCodesAsInt8) {
    Stream s;
    // C: register kernels (64, 1024), general kernels (30: not a multiple of 4; 1028: too long).
    for (int64_t C : {64, 1024, 30, 1028}) {
        SCOPED_TRACE(C);
        const int64_t N = 37, n = N * C;
        const auto x = random_vec(n, 1 + C), w = random_vec(C, 2 + C);
        DeviceBuffer dx = upload(x), dw = upload(w);
        DeviceBuffer codes(n * 2), codes8(n), scale(N * 4), rstd(N * 4);
        train_act_quant_forward(nullptr, codes.as<uint16_t>(), scale.as<float>(), dx.as<float>(), N,
                                C, 8, s, codes8.as<int8_t>());
        s.synchronize();
        expect_codes_equal(codes, codes8, n, "act_quant");
        train_rmsnorm_quant_forward(rstd.as<float>(), codes.as<uint16_t>(), scale.as<float>(),
                                    dx.as<float>(), dw.as<float>(), N, C, 1e-5f, 8, s,
                                    codes8.as<int8_t>());
        s.synchronize();
        expect_codes_equal(codes, codes8, n, "rmsnorm_quant");
        // int8 codes only (no bf16 ones): the same codes.
        DeviceBuffer only8(n);
        train_rmsnorm_quant_forward(rstd.as<float>(), nullptr, scale.as<float>(), dx.as<float>(),
                                    dw.as<float>(), N, C, 1e-5f, 8, s, only8.as<int8_t>());
        s.synchronize();
        expect_same_bits<int8_t>(codes8, only8, n, "rmsnorm_quant, int8 codes alone");
        EXPECT_THROW(train_act_quant_forward(nullptr, codes.as<uint16_t>(), scale.as<float>(),
                                             dx.as<float>(), N, C, 0, s, codes8.as<int8_t>()),
                     Error);
    }
    // Ternary weight codes of two tensors.
    const std::vector<int64_t> offsets = {0, 1040}, sizes = {1030, 500};
    const auto w = random_vec(1540, 9);
    DeviceBuffer dw = upload(w), doff = upload(offsets), dsz = upload(sizes);
    DeviceBuffer beta(8), partial(8 * train_weight_beta_partials(2, 1030));
    DeviceBuffer codes(1540 * 2), codes8(1540);
    codes.fill_bytes(0), codes8.fill_bytes(0);
    train_weight_beta(beta.as<float>(), partial.as<double>(), dw.as<float>(), doff.as<int64_t>(),
                      dsz.as<int64_t>(), 2, 1030, true, s);
    train_weight_quant_apply(nullptr, codes.as<uint16_t>(), beta.as<float>(), dw.as<float>(),
                             doff.as<int64_t>(), dsz.as<int64_t>(), 2, 1030, 0, true, s,
                             codes8.as<int8_t>());
    s.synchronize();
    expect_codes_equal(codes, codes8, 1540, "weight codes");
    EXPECT_THROW(train_weight_quant_apply(nullptr, codes.as<uint16_t>(), beta.as<float>(),
                                          dw.as<float>(), doff.as<int64_t>(), dsz.as<int64_t>(), 2,
                                          1030, 0, false, s, codes8.as<int8_t>()),
                 Error);
}

TEST_F(Int8ForwardCuda, OpsReadInt32ProductsAsTheirFp32Values) {
    Stream s;
    for (int64_t C : {64, 1024, 30, 1028}) {
        SCOPED_TRACE(C);
        const int64_t N = 37, n = N * C;
        const auto [ri, rf] = random_raw(n, 3 + C);
        const auto a = random_vec(n, 4 + C), w = random_vec(C, 5 + C);
        const auto rs = random_vec(N, 6 + C, 1e-3f);
        const std::vector<float> beta = {0.37f};
        DeviceBuffer dri = upload(ri), drf = upload(rf), da = upload(a), dw = upload(w);
        DeviceBuffer drs = upload(rs), dbeta = upload(beta);
        // residual + RMSNorm + quantization (register kernel or the two-op fallback)
        DeviceBuffer h1(n * 4), h2(n * 4), r1(N * 4), r2(N * 4), c1(n * 2), c2(n * 2), q1(n), q2(n),
            s1(N * 4), s2(N * 4);
        train_residual_norm_quant(h1.as<float>(), da.as<float>(), drf.as<float>(), drs.as<float>(),
                                  dbeta.as<float>(), r1.as<float>(), c1.as<uint16_t>(),
                                  s1.as<float>(), dw.as<float>(), N, C, 1e-5f, 8, s,
                                  q1.as<int8_t>(), false);
        train_residual_norm_quant(
            h2.as<float>(), da.as<float>(), reinterpret_cast<const float*>(dri.as<int32_t>()),
            drs.as<float>(), dbeta.as<float>(), r2.as<float>(), c2.as<uint16_t>(), s2.as<float>(),
            dw.as<float>(), N, C, 1e-5f, 8, s, q2.as<int8_t>(), true);
        s.synchronize();
        expect_same_bits<uint32_t>(h1, h2, n, "residual_norm_quant h");
        expect_same_bits<uint32_t>(r1, r2, N, "residual_norm_quant rstd");
        expect_same_bits<uint16_t>(c1, c2, n, "residual_norm_quant codes");
        expect_same_bits<int8_t>(q1, q2, n, "residual_norm_quant int8 codes");
        expect_same_bits<uint32_t>(s1, s2, N, "residual_norm_quant scale");
        expect_codes_equal(c1, q1, n, "residual_norm_quant codes vs int8 codes");
        // residual of a rescaled product
        train_residual_scaled_forward(h1.as<float>(), da.as<float>(), drf.as<float>(),
                                      drs.as<float>(), dbeta.as<float>(), N, C, s, false);
        train_residual_scaled_forward(h2.as<float>(), da.as<float>(),
                                      reinterpret_cast<const float*>(dri.as<int32_t>()),
                                      drs.as<float>(), dbeta.as<float>(), N, C, s, true);
        s.synchronize();
        expect_same_bits<uint32_t>(h1, h2, n, "residual_scaled_forward");
        // the rescale in place
        DeviceBuffer x1 = upload(rf), x2 = upload(ri);
        train_scale_rows(x1.as<float>(), drs.as<float>(), dbeta.as<float>(), N, C, s, false);
        train_scale_rows(reinterpret_cast<float*>(x2.as<int32_t>()), drs.as<float>(),
                         dbeta.as<float>(), N, C, s, true);
        s.synchronize();
        expect_same_bits<uint32_t>(x1, x2, n, "scale_rows");
    }
}

TEST_F(Int8ForwardCuda, SwigluOpsReadInt32ProductsAsTheirFp32Values) {
    Stream s;
    // M: the vector kernel (64, 4096), the cached scalar one (30), rows past shared memory (13000).
    for (int64_t M : {64, 4096, 30, 13000}) {
        SCOPED_TRACE(M);
        const int64_t N = M > 4096 ? 3 : 21, n = N * M;
        const auto [gi, gf] = random_raw(n, 7 + M, 20000);
        const auto [ui, uf] = random_raw(n, 8 + M, 20000);
        const auto rs = random_vec(N, 9 + M, 1e-4f);
        const auto dout = random_vec(n, 10 + M);
        const std::vector<float> bg = {0.41f}, bu = {0.29f};
        DeviceBuffer dgi = upload(gi), dgf = upload(gf), dui = upload(ui), duf = upload(uf);
        DeviceBuffer drs = upload(rs), dbg = upload(bg), dbu = upload(bu), dd = upload(dout);
        const auto as_f = [](const DeviceBuffer& b) {
            return reinterpret_cast<const float*>(b.as<int32_t>());
        };
        DeviceBuffer c1(n * 2), c2(n * 2), q1(n), q2(n), s1(N * 4), s2(N * 4);
        train_swiglu_quant_forward(dgf.as<float>(), duf.as<float>(), drs.as<float>(),
                                   dbg.as<float>(), dbu.as<float>(), nullptr, c1.as<uint16_t>(),
                                   s1.as<float>(), N, M, 8, s, q1.as<int8_t>(), false);
        train_swiglu_quant_forward(as_f(dgi), as_f(dui), drs.as<float>(), dbg.as<float>(),
                                   dbu.as<float>(), nullptr, c2.as<uint16_t>(), s2.as<float>(), N,
                                   M, 8, s, q2.as<int8_t>(), true);
        s.synchronize();
        expect_same_bits<uint16_t>(c1, c2, n, "swiglu_quant codes");
        expect_same_bits<int8_t>(q1, q2, n, "swiglu_quant int8 codes");
        expect_same_bits<uint32_t>(s1, s2, N, "swiglu_quant scale");
        expect_codes_equal(c1, q1, n, "swiglu_quant codes vs int8 codes");
        std::vector<DeviceBuffer> b1, b2;
        for (int i = 0; i < 4; ++i) b1.emplace_back(n * 2), b2.emplace_back(n * 2);
        train_swiglu_backward_bf16(b1[0].as<uint16_t>(), b1[1].as<uint16_t>(), b1[2].as<uint16_t>(),
                                   b1[3].as<uint16_t>(), drs.as<float>(), dbg.as<float>(),
                                   dbu.as<float>(), dd.as<float>(), dgf.as<float>(),
                                   duf.as<float>(), N, M, s, false);
        train_swiglu_backward_bf16(b2[0].as<uint16_t>(), b2[1].as<uint16_t>(), b2[2].as<uint16_t>(),
                                   b2[3].as<uint16_t>(), drs.as<float>(), dbg.as<float>(),
                                   dbu.as<float>(), dd.as<float>(), as_f(dgi), as_f(dui), N, M, s,
                                   true);
        s.synchronize();
        for (int i = 0; i < 4; ++i)
            expect_same_bits<uint16_t>(b1[static_cast<size_t>(i)], b2[static_cast<size_t>(i)], n,
                                       "swiglu_backward_bf16");
    }
}

// ---- the training model ----

// D, ttt_dim and mlp_dim multiples of 16 (the int8 products apply), unless `odd`.
ModelConfig model_config(TttRule rule, bool odd = false) {
    ModelConfig c;
    c.vocab_size = 61, c.num_layers = 2, c.ttt_rule = rule;
    c.hidden_dim = odd ? 40 : 32, c.ttt_dim = odd ? 20 : 16, c.mlp_dim = odd ? 72 : 64;
    c.ttt_heads = rule == TttRule::kDelta ? 2 : 1;
    c.act_bits = 8;
    c.inner_lr = 0.5f;
    c.resolve_and_validate();
    return c;
}

struct Result {
    double loss = 0;
    std::vector<float> grads, logits;
};

// Two forward/backward passes (the second reuses every buffer), then a forward without targets.
// int8: GpuMemoryOptions::int8_forward (a mask of products; 0: the bf16 products).
Result run_model(const ModelConfig& c, const AlignedBuffer<float>& params, GpuMemoryOptions st,
                 int int8, bool quantize = true) {
    const int64_t B = 2, T = 37;
    std::vector<int32_t> in(B * T), tg(B * T);
    Rng rng(8);
    for (auto& t : in) t = static_cast<int32_t>(rng.below(c.vocab_size));
    for (auto& t : tg) t = static_cast<int32_t>(rng.below(c.vocab_size));
    st.int8_forward = int8;
    GpuTrainModel gpu(c, TrainPrecision::kBf16, st);
    gpu.set_quantize_weights(quantize);
    const bool env = std::getenv("BITTTT_CUDA_INT8_FORWARD") != nullptr;
    const bool shapes = c.hidden_dim % 16 == 0 && c.ttt_dim % 16 == 0 && c.mlp_dim % 16 == 0;
    if (!env) {
        EXPECT_EQ(gpu.int8_forward_active(), int8 != 0 && quantize && shapes);
    }
    gpu.upload(GpuTrainModel::Buffer::kParams, params.data());
    Result r;
    for (int rep = 0; rep < 2; ++rep) {
        r.loss = gpu.forward(in.data(), tg.data(), B, T);
        gpu.zero_grad();
        gpu.backward();
    }
    r.grads.resize(params.size());
    gpu.download(GpuTrainModel::Buffer::kGrads, r.grads.data());
    gpu.forward(in.data(), nullptr, B, T);
    r.logits.resize(static_cast<size_t>(B * T * c.vocab_size));
    gpu.download_logits(r.logits.data());
    return r;
}

// Every gradient that is a product (BitLinear, lm_head, ttt.lr) bit for bit; those summed with
// float atomics in a varying order (embedding, norm weights, the ttt.lr bias) within 1e-6.
void expect_same(const ModelConfig& c, const Result& a, const Result& b, const char* what) {
    EXPECT_EQ(bits(static_cast<float>(a.loss)), bits(static_cast<float>(b.loss))) << what;
    EXPECT_EQ(a.loss, b.loss) << what;
    int64_t logits_equal = 0;
    for (size_t i = 0; i < a.logits.size(); ++i)
        logits_equal += bits(a.logits[i]) == bits(b.logits[i]);
    EXPECT_EQ(logits_equal, static_cast<int64_t>(a.logits.size())) << what << ": logits";
    const train::ParamLayout L(c);
    for (size_t i = 0; i < L.specs.size(); ++i) {
        const ParamSpec& spec = L.specs[i];
        const int64_t off = L.offsets[i], n = spec.numel();
        if (spec.kind == ParamKind::kBitLinear || spec.kind == ParamKind::kLinear) {
            int64_t equal = 0;
            for (int64_t j = off; j < off + n; ++j)
                equal +=
                    bits(a.grads[static_cast<size_t>(j)]) == bits(b.grads[static_cast<size_t>(j)]);
            EXPECT_EQ(equal, n) << what << ": " << spec.name;
        } else {
            double diff = 0, ref = 0;
            for (int64_t j = off; j < off + n; ++j) {
                const double x = a.grads[static_cast<size_t>(j)],
                             y = b.grads[static_cast<size_t>(j)];
                diff += (x - y) * (x - y), ref += y * y;
            }
            EXPECT_LE(std::sqrt(diff), 1e-6 * std::max(std::sqrt(ref), 1e-30))
                << what << ": " << spec.name;
        }
    }
}

TEST_F(Int8ForwardCuda, ModelGivesTheBf16ProductsResults) {
    // default; MLP recomputed; activations kept; both; the lean state (int8 moments, bf16
    // gradients, MLP recomputed).
    const GpuMemoryOptions settings[] = {
        {},
        {OptimizerState::kFp32, true},
        {OptimizerState::kFp32, false, true},
        {OptimizerState::kFp32, true, true},
        {OptimizerState::kInt8, true, false, GradPrecision::kBf16}};
    for (TttRule rule : {TttRule::kReconstruct, TttRule::kDelta}) {
        const ModelConfig c = model_config(rule);
        train::TrainModel<float> host(c);
        host.init_random(9);
        int k = 0;
        for (const GpuMemoryOptions& st : settings) {
            const int setting = k++;
            const std::string what =
                std::string(ttt_rule_name(rule)) + ", setting " + std::to_string(setting);
            const Result bf = run_model(c, host.params, st, 0);
            // Every product in int8; with the default and the recomputed MLP also each part
            // (1 TTT projections, 2 gate/up, 4 down) and each pair.
            for (int mask = setting <= 1 ? 1 : 7; mask <= 7; ++mask) {
                const Result i8 = run_model(c, host.params, st, mask);
                expect_same(c, i8, bf, (what + ", products " + std::to_string(mask)).c_str());
            }
            std::cout << "[int8 forward] " << what << ": loss " << bf.loss << "\n";
        }
    }
}

TEST_F(Int8ForwardCuda, ModelKeepsBf16ProductsWhereInt8DoesNotApply) {
    for (TttRule rule : {TttRule::kReconstruct, TttRule::kDelta}) {
        // D 40, ttt_dim 20, mlp_dim 72: not multiples of 16.
        const ModelConfig odd = model_config(rule, true);
        train::TrainModel<float> host(odd);
        host.init_random(3);
        expect_same(odd, run_model(odd, host.params, {}, 7), run_model(odd, host.params, {}, 0),
                    "odd shapes");
        // Unquantized weights (the exact model of the gradient checks).
        const ModelConfig c = model_config(rule);
        train::TrainModel<float> h2(c);
        h2.init_random(4);
        expect_same(c, run_model(c, h2.params, {}, 7, false), run_model(c, h2.params, {}, 0, false),
                    "unquantized weights");
    }
}

// Host only: the int8 products add the int8 codes of one layer's weights and one product input
// (N x max(D, ttt_dim, mlp_dim) bytes) to the plan, nothing where they do not apply.
TEST(Int8ForwardPlan, MemoryPlanAddsTheInt8Copies) {
    auto total = [](const std::vector<MemoryItem>& plan) {
        int64_t t = 0;
        for (const auto& item : plan) t += item.bytes;
        return t;
    };
    auto round = [](int64_t bytes) { return (bytes + 255) / 256 * 256; };
    for (TttRule rule : {TttRule::kReconstruct, TttRule::kDelta}) {
        ModelConfig c;
        c.hidden_dim = 256, c.num_layers = 2, c.ttt_rule = rule;
        c.resolve_and_validate();
        const train::ParamLayout L(c);
        int64_t lo = LLONG_MAX, hi = 0;
        for (size_t i = 0; i < L.specs.size(); ++i)
            if (L.specs[i].kind == ParamKind::kBitLinear && L.specs[i].layer == 0)
                lo = std::min(lo, L.offsets[i]),
                hi = std::max(hi, L.offsets[i] + L.specs[i].numel());
        const int64_t B = 4, T = 32;
        GpuMemoryOptions on, off, automatic;
        on.int8_forward = 7, off.int8_forward = 0;
        const int64_t widest = std::max({c.hidden_dim, c.ttt_dim, c.mlp_dim});
        const int64_t added =
            total(GpuTrainModel::memory_plan(c, TrainPrecision::kBf16, on, B, T)) -
            total(GpuTrainModel::memory_plan(c, TrainPrecision::kBf16, off, B, T));
        if (std::getenv("BITTTT_CUDA_INT8_FORWARD") == nullptr) {
            EXPECT_EQ(added, (hi - lo) + round(B * T * widest));
        }
        // The default picks them from D = 1024 up.
        EXPECT_EQ(total(GpuTrainModel::memory_plan(c, TrainPrecision::kBf16, automatic, B, T)),
                  total(GpuTrainModel::memory_plan(c, TrainPrecision::kBf16, off, B, T)));
        ModelConfig big = c;
        big.hidden_dim = 1024, big.ttt_dim = 0, big.mlp_dim = 0;
        big.resolve_and_validate();
        if (std::getenv("BITTTT_CUDA_INT8_FORWARD") == nullptr) {
            EXPECT_EQ(
                total(GpuTrainModel::memory_plan(big, TrainPrecision::kBf16, automatic, B, T)),
                total(GpuTrainModel::memory_plan(big, TrainPrecision::kBf16, on, B, T)));
        }
        EXPECT_GT(total(GpuTrainModel::memory_plan(big, TrainPrecision::kBf16, on, B, T)),
                  total(GpuTrainModel::memory_plan(big, TrainPrecision::kBf16, off, B, T)));
        // fp32 products and unquantized activations: no int8 copies.
        EXPECT_EQ(total(GpuTrainModel::memory_plan(c, TrainPrecision::kFp32, on, B, T)),
                  total(GpuTrainModel::memory_plan(c, TrainPrecision::kFp32, off, B, T)));
        ModelConfig c0 = c;
        c0.act_bits = 0;
        EXPECT_EQ(total(GpuTrainModel::memory_plan(c0, TrainPrecision::kBf16, on, B, T)),
                  total(GpuTrainModel::memory_plan(c0, TrainPrecision::kBf16, off, B, T)));
    }
}

}  // namespace
}  // namespace bitttt::cuda::test
