// The model forward on the GPU (and split between GPU and CPU) against the CPU forward: the new
// kernels against their CPU references on random and odd shapes, then whole random models of both
// TTT rules and models/default.bitt: greedy tokens equal to the CPU's, logits within a stated
// tolerance, batched prompts equal to token-by-token decoding, TTT state round trips. Skipped
// without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <span>
#include <vector>

#include "bitttt/model.hpp"
#include "bitttt/tokenizer.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "cuda_test_util.hpp"
#include "kernels/cpu/ternary.hpp"
#include "kernels/cuda/kernels.hpp"
#include "kernels/cuda/model_kernels.hpp"
#include "model/config.hpp"
#include "model/delta_rule.hpp"
#include "model/weights.hpp"

namespace bitttt::cuda::test {
namespace {

std::vector<float> random_vector(size_t n, Rng& rng, float lo = -1.0f, float hi = 1.0f) {
    std::vector<float> v(n);
    for (auto& x : v) x = lo + (hi - lo) * rng.uniform();
    return v;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    float m = 0.0f;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

float max_abs(std::span<const float> a) {
    float m = 0.0f;
    for (float x : a) m = std::max(m, std::fabs(x));
    return m;
}

// ---- kernels ----

struct ScanCase {
    int64_t heads, dh, tokens;
    bool read_after, separate_q, per_token_eta;
};

TEST_F(CudaTest, DeltaRuleScanMatchesCpuReference) {
    // Odd head sizes, several heads, both read modes, the register (Dh <= 2048) and memory paths.
    const ScanCase cases[] = {{1, 5, 7, false, false, false},    {3, 33, 9, true, true, true},
                              {2, 100, 4, true, true, true},     {1, 300, 3, false, true, true},
                              {1, 1024, 3, false, false, false}, {4, 64, 20, true, true, true},
                              {1, 2100, 2, true, false, true}};
    Rng rng(7);
    for (const ScanCase& sc : cases) {
        const int64_t dt = sc.heads * sc.dh, T = sc.tokens;
        const int64_t stride = dt + 3;  // rows of a wider buffer, as the model's q|k|v
        auto w = random_vector(static_cast<size_t>(sc.heads * sc.dh * sc.dh), rng, -0.1f, 0.1f);
        auto k = random_vector(static_cast<size_t>(T * stride), rng);
        auto q = random_vector(static_cast<size_t>(T * stride), rng);
        auto v = random_vector(static_cast<size_t>(T * stride), rng);
        for (auto* vec : {&k, &q})  // unit keys and queries per head
            for (int64_t t = 0; t < T; ++t)
                for (int64_t h = 0; h < sc.heads; ++h) {
                    float* p = vec->data() + t * stride + h * sc.dh;
                    float ss = 0;
                    for (int64_t j = 0; j < sc.dh; ++j) ss += p[j] * p[j];
                    for (int64_t j = 0; j < sc.dh; ++j) p[j] /= std::sqrt(ss);
                }
        auto eta = random_vector(static_cast<size_t>(T * sc.heads), rng, 0.05f, 0.6f);
        std::vector<float> out(static_cast<size_t>(T * dt), 0.0f);

        DeltaRuleScan cpu;
        std::vector<float> w_cpu = w, out_cpu = out;
        cpu.w = w_cpu.data();
        cpu.heads = sc.heads;
        cpu.head_dim = sc.dh;
        cpu.tokens = T;
        cpu.k = k.data();
        cpu.k_stride = stride;
        cpu.v = v.data();
        cpu.v_stride = stride;
        cpu.q = sc.separate_q ? q.data() : nullptr;
        cpu.q_stride = stride;
        cpu.eta = eta.data();
        cpu.eta_stride = sc.per_token_eta ? sc.heads : 0;
        cpu.read_after_update = sc.read_after;
        cpu.out = out_cpu.data();
        cpu.out_stride = dt;
        delta_rule_scan_scalar(cpu);

        DeviceBuffer dw = upload(w), dk = upload(k), dq = upload(q), dv = upload(v),
                     de = upload(eta), dout = upload(out);
        DeltaScanArgs gpu;
        gpu.w = dw.as<float>();
        gpu.heads = sc.heads;
        gpu.head_dim = sc.dh;
        gpu.tokens = T;
        gpu.k = dk.as<float>();
        gpu.k_stride = stride;
        gpu.v = dv.as<float>();
        gpu.v_stride = stride;
        gpu.q = sc.separate_q ? dq.as<float>() : nullptr;
        gpu.q_stride = stride;
        gpu.eta = de.as<float>();
        gpu.eta_stride = cpu.eta_stride;
        gpu.read_after_update = sc.read_after;
        gpu.out = dout.as<float>();
        gpu.out_stride = dt;
        Stream stream;
        delta_rule_scan(gpu, stream);
        stream.synchronize();
        const auto w_gpu = download<float>(dw, w.size());
        const auto out_gpu = download<float>(dout, out.size());
        // Sums of up to 2100 products in another order, over a few tokens: a few ulps of O(1).
        EXPECT_LT(max_abs_diff(w_gpu, w_cpu), 2e-5f) << "dh " << sc.dh << " heads " << sc.heads;
        EXPECT_LT(max_abs_diff(out_gpu, out_cpu), 2e-5f) << "dh " << sc.dh << " heads " << sc.heads;
    }
}

TEST_F(CudaTest, DeltaRuleScanRejectsBadArguments) {
    Stream stream;
    DeltaScanArgs a;
    a.heads = 0;
    EXPECT_THROW(delta_rule_scan(a, stream), bitttt::Error);
    a.heads = 1;
    a.head_dim = 4;
    a.tokens = 1;
    EXPECT_THROW(delta_rule_scan(a, stream), bitttt::Error);  // null pointers
}

TEST_F(CudaTest, NormalizeStepSizesEmbedAndGemvMatchCpu) {
    Rng rng(11);
    Stream stream;
    // L2 normalization of 5 rows x 3 heads of 37 (stride 120).
    {
        const int64_t n = 5, heads = 3, dh = 37, stride = 120;
        auto x = random_vector(static_cast<size_t>(n * stride), rng);
        DeviceBuffer dx = upload(x);
        l2_normalize_heads(dx.as<float>(), n, stride, heads, dh, stream);
        stream.synchronize();
        const auto got = download<float>(dx, x.size());
        auto want = x;
        for (int64_t t = 0; t < n; ++t)
            for (int64_t h = 0; h < heads; ++h) {
                float* v = want.data() + t * stride + h * dh;
                float ss = 0;
                for (int64_t j = 0; j < dh; ++j) ss += v[j] * v[j];
                const float inv = 1.0f / (std::sqrt(ss) + 1e-6f);
                for (int64_t j = 0; j < dh; ++j) v[j] *= inv;
            }
        EXPECT_LT(max_abs_diff(got, want), 1e-6f);
    }
    // Step sizes: 4 tokens, 3 heads, d = 77.
    {
        const int64_t n = 4, heads = 3, d = 77;
        const float inner_lr = 0.7f;
        auto w = random_vector(static_cast<size_t>(heads * d), rng);
        auto b = random_vector(static_cast<size_t>(heads), rng);
        auto u = random_vector(static_cast<size_t>(n * d), rng);
        DeviceBuffer dw = upload(w), db = upload(b), du = upload(u),
                     de(static_cast<size_t>(n * heads) * 4);
        delta_step_sizes(dw.as<float>(), db.as<float>(), heads, d, du.as<float>(), n, inner_lr,
                         de.as<float>(), stream);
        stream.synchronize();
        const auto got = download<float>(de, static_cast<size_t>(n * heads));
        for (int64_t t = 0; t < n; ++t)
            for (int64_t h = 0; h < heads; ++h) {
                double acc = b[h];
                for (int64_t j = 0; j < d; ++j) acc += double{w[h * d + j]} * u[t * d + j];
                const double want = inner_lr / (1.0 + std::exp(-acc));
                EXPECT_NEAR(got[t * heads + h], want, 1e-6);
            }
    }
    // Embedding rows (fp32 and bf16) and the fp32 GEMV with a ragged column count.
    {
        const int64_t V = 50, d = 40;
        auto table = random_vector(static_cast<size_t>(V * d), rng);
        std::vector<uint16_t> table16(table.size());
        for (size_t i = 0; i < table.size(); ++i) {
            uint32_t bits;
            std::memcpy(&bits, &table[i], 4);
            table16[i] = static_cast<uint16_t>(bits >> 16);
        }
        const std::vector<int32_t> ids = {3, 49, 0, 3};
        DeviceBuffer dt = upload(table), dt16 = upload(table16), dids = upload(ids),
                     dx(ids.size() * d * 4);
        for (bool bf16 : {false, true}) {
            embed_lookup(bf16 ? dt16.data() : dt.data(), bf16, d, dids.as<int32_t>(),
                         static_cast<int64_t>(ids.size()), dx.as<float>(), stream);
            stream.synchronize();
            const auto got = download<float>(dx, ids.size() * d);
            for (size_t t = 0; t < ids.size(); ++t)
                for (int64_t j = 0; j < d; ++j) {
                    float want = table[ids[t] * d + j];
                    if (bf16) {
                        const uint32_t bits = uint32_t{table16[ids[t] * d + j]} << 16;
                        std::memcpy(&want, &bits, 4);
                    }
                    ASSERT_EQ(bits(got[t * d + j]), bits(want));
                }
        }
        const int64_t rows = 13, cols = 301;
        auto w = random_vector(static_cast<size_t>(rows * cols), rng);
        auto x = random_vector(static_cast<size_t>(cols), rng);
        DeviceBuffer dw = upload(w), dxx = upload(x), dy(rows * 4);
        f32_gemv(dw.as<float>(), rows, cols, dxx.as<float>(), dy.as<float>(), stream);
        stream.synchronize();
        const auto y = download<float>(dy, rows);
        for (int64_t r = 0; r < rows; ++r) {
            double acc = 0;
            for (int64_t j = 0; j < cols; ++j) acc += double{w[r * cols + j]} * x[j];
            EXPECT_NEAR(y[r], acc, 1e-4);
        }
    }
}

TEST_F(CudaTest, WideQuantizeMatchesSingleBlockKernels) {
    Rng rng(5);
    Stream stream;
    DeviceBuffer work(static_cast<size_t>(kWideWorkspaceBytes));
    work.fill_bytes(0);
    for (int64_t k : {int64_t{5}, int64_t{1000}, int64_t{1024}, int64_t{2048}, int64_t{8192},
                      int64_t{28672}, int64_t{30001}}) {
        const int64_t kp = kernels::packed_cols(k);
        auto a = random_vector(static_cast<size_t>(k), rng, -3.0f, 3.0f);
        auto b = random_vector(static_cast<size_t>(k), rng, 0.5f, 1.5f);
        DeviceBuffer da = upload(a), db = upload(b);
        DeviceBuffer q1(static_cast<size_t>(kp)), q2(static_cast<size_t>(kp)), s1(16), s2(16),
            n1(16), n2(16);
        const QuantizedActivations one{q1.as<int8_t>(), kp, s1.as<float>(), n1.as<int32_t>()};
        const QuantizedActivations wide{q2.as<int8_t>(), kp, s2.as<float>(), n2.as<int32_t>()};
        for (int mode = 0; mode < 3; ++mode) {
            SCOPED_TRACE(testing::Message() << "k " << k << " mode " << mode);
            q2.fill_bytes(0x55);  // padding must be written
            if (mode == 0) quantize_activations(da.as<float>(), 1, k, k, one, stream);
            if (mode == 1)
                rmsnorm_quantize(da.as<float>(), 1, k, k, db.as<float>(), 1e-5f, one, stream);
            if (mode == 2) silu_mul_quantize(da.as<float>(), db.as<float>(), 1, k, k, one, stream);
            // Many launches back to back on one workspace: the barrier must reset itself.
            for (int rep = 0; rep < 20; ++rep) {
                if (mode == 0)
                    quantize_activations_wide(da.as<float>(), k, wide, work.data(), stream);
                if (mode == 1)
                    rmsnorm_quantize_wide(da.as<float>(), k, db.as<float>(), 1e-5f, wide,
                                          work.data(), stream);
                if (mode == 2)
                    silu_mul_quantize_wide(da.as<float>(), db.as<float>(), k, wide, work.data(),
                                           stream);
            }
            stream.synchronize();
            const auto qa = download<int8_t>(q1, static_cast<size_t>(kp));
            const auto qb = download<int8_t>(q2, static_cast<size_t>(kp));
            const auto sa = download<float>(s1, 1), sb = download<float>(s2, 1);
            const auto na = download<int32_t>(n1, 1), nb = download<int32_t>(n2, 1);
            if (mode != 1) {  // the same arithmetic: bit-identical
                EXPECT_EQ(qa, qb);
                EXPECT_EQ(bits(sa[0]), bits(sb[0]));
                EXPECT_EQ(na[0], nb[0]);
            } else {  // the sum of squares in another order: at most a rare rounding flip
                int64_t off = 0;
                for (int64_t j = 0; j < kp; ++j) {
                    EXPECT_LE(std::abs(int{qa[j]} - int{qb[j]}), 1);
                    off += qa[j] != qb[j];
                }
                EXPECT_LE(off, std::max<int64_t>(1, k / 200));
                EXPECT_NEAR(sa[0], sb[0], 1e-6f * sa[0]);
            }
        }
    }
}

TEST_F(CudaTest, FusedGemvMatchesQuantizeThenGemv) {
    Rng rng(17);
    Stream stream;
    for (int64_t k :
         {int64_t{5}, int64_t{100}, int64_t{2048}, int64_t{4100}, int64_t{8192}, int64_t{16384}}) {
        for (int count : {1, 3}) {
            for (bool with_norm : {false, true}) {
                SCOPED_TRACE(testing::Message()
                             << "k " << k << " count " << count << " norm " << with_norm);
                const int64_t rows[3] = {17, 2048, 1};
                std::vector<DeviceBuffer> codes;
                std::vector<kernels::TernaryWeights> w;
                std::vector<DeviceBuffer> y1, y2;
                std::vector<float*> p1, p2;
                for (int j = 0; j < count; ++j) {
                    codes.emplace_back(static_cast<size_t>(kernels::packed_bytes(rows[j], k)));
                    fill_random_ternary(codes.back().as<uint8_t>(), rows[j], k, 40 + j, stream);
                    w.push_back({codes.back().as<uint8_t>(), rows[j], k,
                                 1.0f / std::sqrt(static_cast<float>(k))});
                    auto init = random_vector(static_cast<size_t>(rows[j]), rng);
                    y1.push_back(upload(init));
                    y2.push_back(upload(init));
                    p1.push_back(y1.back().as<float>());
                    p2.push_back(y2.back().as<float>());
                }
                auto a = random_vector(static_cast<size_t>(k), rng, -2.0f, 2.0f);
                auto norm = random_vector(static_cast<size_t>(k), rng, 0.5f, 1.5f);
                DeviceBuffer da = upload(a), dn = upload(norm);
                const int64_t kp = kernels::packed_cols(k);
                DeviceBuffer q(static_cast<size_t>(kp)), sc(16), sm(16);
                const QuantizedActivations acts{q.as<int8_t>(), kp, sc.as<float>(),
                                                sm.as<int32_t>()};
                const bool accumulate = count == 3;
                if (with_norm)
                    rmsnorm_quantize(da.as<float>(), 1, k, k, dn.as<float>(), 1e-5f, acts, stream);
                else
                    quantize_activations(da.as<float>(), 1, k, k, acts, stream);
                ternary_gemv_batch(w.data(), p1.data(), count, acts, accumulate, stream);
                ternary_gemv_fused(w.data(), p2.data(), count, da.as<float>(), k,
                                   with_norm ? dn.as<float>() : nullptr, 1e-5f, accumulate, stream);
                stream.synchronize();
                const float act_scale = download<float>(sc, 1)[0];
                for (int j = 0; j < count; ++j) {
                    const auto want = download<float>(y1[j], static_cast<size_t>(rows[j]));
                    const auto got = download<float>(y2[j], static_cast<size_t>(rows[j]));
                    for (int64_t r = 0; r < rows[j]; ++r) {
                        if (!with_norm) {
                            ASSERT_EQ(bits(got[r]), bits(want[r]))
                                << "matrix " << j << " row " << r;
                        } else {  // a rare int8 flip from the sum of squares' order
                            ASSERT_LE(std::fabs(got[r] - want[r]),
                                      3.0f * w[j].scale * act_scale + 1e-6f * std::fabs(want[r]))
                                << "matrix " << j << " row " << r;
                        }
                    }
                }
            }
        }
    }
}

// ---- whole models ----

ModelConfig small_config(const char* rule, int64_t heads) {
    ModelConfig c;
    c.vocab_size = 300;
    c.hidden_dim = 64;
    c.num_layers = 3;
    c.ttt_rule = parse_ttt_rule(rule);
    c.ttt_heads = heads;
    c.inner_lr = 0.5f;  // the TTT state matters within a few tokens
    c.resolve_and_validate();
    return c;
}

// Random weights whose embedding and lm_head are bf16 values, so that a GPU copy in bf16 is exact
// and the GPU must give the CPU's tokens with either dense precision.
ModelWeights bf16_exact_random(const ModelConfig& c, uint64_t seed) {
    ModelWeights w = ModelWeights::random(c, seed);
    for (const float* p : {w.embed, w.lm_head}) {
        float* m = const_cast<float*>(p);  // owned by w.storage (random weights)
        for (int64_t i = 0; i < c.vocab_size * c.hidden_dim; ++i) {
            uint32_t bits;
            std::memcpy(&bits, &m[i], 4);
            bits &= 0xffff0000u;
            std::memcpy(&m[i], &bits, 4);
        }
    }
    return w;
}

DeviceOptions on_gpu(int64_t layers, bool bf16) {
    DeviceOptions o;
    o.device = Device::kCuda;
    o.gpu_layers = layers;
    o.dense_bf16 = bf16;
    return o;
}

std::vector<int32_t> greedy(Session& s, const std::vector<int32_t>& prompt, int64_t n) {
    GenerateOptions o;
    o.max_new_tokens = n;
    o.stop_at_end_of_text = false;
    o.sampling.temperature = 0.0f;
    return s.generate(prompt, o).tokens;
}

// Greedy decoding that also records, at every step, how far apart the two largest logits are.
struct GreedyRun {
    std::vector<int32_t> tokens;
    std::vector<float> gaps;  // top-1 minus top-2 logit at each step
    float max_logit = 0.0f;   // the largest |logit| seen
};

GreedyRun greedy_run(Session& s, const std::vector<int32_t>& prompt, int64_t n) {
    GreedyRun r;
    auto first = s.forward(prompt);
    std::vector<float> logits(first.begin(), first.end());
    for (int64_t i = 0; i < n; ++i) {
        size_t best = 0;
        for (size_t j = 1; j < logits.size(); ++j)
            if (logits[j] > logits[best]) best = j;
        float second = -std::numeric_limits<float>::infinity();
        for (size_t j = 0; j < logits.size(); ++j)
            if (j != best) second = std::max(second, logits[j]);
        r.tokens.push_back(static_cast<int32_t>(best));
        r.gaps.push_back(logits[best] - second);
        r.max_logit = std::max(r.max_logit, max_abs(std::span<const float>(logits)));
        auto next = s.forward_token(static_cast<int32_t>(best));
        logits.assign(next.begin(), next.end());
    }
    return r;
}

// The GPU's greedy tokens must be the CPU's, except that from a step where the CPU's two best
// logits lie within `tolerance` of each other (rounding within the stated logit tolerance may order
// them either way) the two runs may part; after that they continue from different tokens.
void expect_same_greedy(const GreedyRun& cpu, const std::vector<int32_t>& got, float tolerance) {
    ASSERT_EQ(got.size(), cpu.tokens.size());
    for (size_t i = 0; i < got.size(); ++i) {
        if (got[i] == cpu.tokens[i]) continue;
        EXPECT_LE(cpu.gaps[i], tolerance)
            << "step " << i << ": the GPU chose " << got[i] << ", the CPU " << cpu.tokens[i]
            << " with a clear margin";
        std::printf(
            "[ greedy ] the runs part at step %zu of %zu, a near tie on the CPU (gap %.3g, "
            "tolerance %.3g)\n",
            i, got.size(), cpu.gaps[i], tolerance);
        return;
    }
}

std::vector<int32_t> some_ids(int64_t n, int64_t vocab, uint64_t seed) {
    Rng rng(seed);
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (auto& id : ids) id = static_cast<int32_t>(rng.below(static_cast<uint64_t>(vocab)));
    return ids;
}

struct RuleCase {
    const char* rule;
    int64_t heads;
};
const RuleCase kRules[] = {{"reconstruct", 1}, {"delta", 1}, {"delta", 2}};

// Logit tolerance: GPU and CPU differ by float rounding in the norms and the TTT state (and by
// the rare int8 activation that lands on the other side of a rounding boundary); relative to the
// largest logit.
constexpr float kLogitTolerance = 2e-3f;
// Where the GPU computes the head, it multiplies the fp32 hidden state by lm_head (fp32, or bf16
// weights with fp32 activations) while the CPU reads both lm_head and the hidden state in bf16
// (forward.cpp, kernels/cpu/bf16_matmul.hpp: within 2^-8 sum|w x| of the fp32 product). For these
// random models sum|w x| is a few times the largest logit, so the CPU's own rounding reaches ~0.6%
// of it (measured on the H100: 0.012-0.014 at max |logit| ~2.5): the head's tolerance covers that.
constexpr float kHeadTolerance = 1.5e-2f;
float logit_tolerance(bool head_on_gpu) {
    return head_on_gpu ? kHeadTolerance : kLogitTolerance;
}

TEST_F(CudaTest, GpuAndHybridDecodeGiveTheCpuTokens) {
    for (const RuleCase& rc : kRules) {
        const ModelConfig c = small_config(rc.rule, rc.heads);
        const ModelWeights w = bf16_exact_random(c, 3);
        const auto prompt = some_ids(8, c.vocab_size, 5);
        Session cpu(Model::from_weights(w));
        cpu.forward(prompt);
        const auto second = cpu.forward(prompt);  // the second read: the TTT state matters
        const std::vector<float> first_cpu(second.begin(), second.end());
        cpu.reset();
        const GreedyRun want = greedy_run(cpu, prompt, 24);
        for (int64_t layers : {int64_t{0}, int64_t{1}, int64_t{2}, int64_t{3}, int64_t{-1}}) {
            for (bool bf16 : {false, true}) {
                SCOPED_TRACE(testing::Message() << rc.rule << " heads " << rc.heads
                                                << " gpu_layers " << layers << " bf16 " << bf16);
                auto model = Model::from_weights(w, nullptr, on_gpu(layers, bf16));
                EXPECT_EQ(model->device_options().gpu_layers, layers < 0 ? 3 : layers);
                Session gpu(model, 16);
                gpu.forward(prompt);
                const auto first = gpu.forward(prompt);
                const float diff =
                    max_abs_diff(std::vector<float>(first.begin(), first.end()), first_cpu);
                const bool head_on_gpu = layers < 0 || layers == c.num_layers;
                EXPECT_LE(diff, logit_tolerance(head_on_gpu) * std::max(1.0f, max_abs(first_cpu)));
                if (layers == 0) {
                    EXPECT_EQ(diff, 0.0f);  // pure CPU
                }
                std::printf(
                    "[ logits ] %s/%lld gpu_layers %lld bf16 %d: max |gpu - cpu| %.3g "
                    "(max |logit| %.3g)\n",
                    rc.rule, static_cast<long long>(rc.heads), static_cast<long long>(layers),
                    bf16 ? 1 : 0, diff, max_abs(first_cpu));
                gpu.reset();
                expect_same_greedy(
                    want, greedy(gpu, prompt, 24),
                    2.0f * logit_tolerance(head_on_gpu) * std::max(1.0f, want.max_logit));
            }
        }
    }
}

// Wider than the D <= 1024 fusion, a reconstruct decode token runs the on-the-fly chain
// (gemv_float.hpp: no norm/quantize kernels). Odd widths (D = 1100, Dt = 275, MLP 600): rows and
// columns that are not multiples of 16 or 4. Hybrid (head on the CPU: logits within the CPU
// tolerance) and full GPU give the CPU's greedy tokens.
TEST_F(CudaTest, WideReconstructDecodeGivesTheCpuTokens) {
    ModelConfig c;
    c.vocab_size = 300;
    c.hidden_dim = 1100;
    c.mlp_dim = 600;
    c.num_layers = 2;
    c.inner_lr = 0.5f;
    c.resolve_and_validate();
    ASSERT_EQ(c.ttt_dim, 275);
    const ModelWeights w = bf16_exact_random(c, 17);
    const auto prompt = some_ids(6, c.vocab_size, 18);
    Session cpu(Model::from_weights(w));
    const GreedyRun want = greedy_run(cpu, prompt, 16);
    cpu.reset();
    cpu.forward(prompt);
    const auto cpu_next = cpu.forward_token(5);
    for (int64_t layers : {int64_t{1}, int64_t{2}}) {
        SCOPED_TRACE(testing::Message() << "gpu_layers " << layers);
        auto model = Model::from_weights(w, nullptr, on_gpu(layers, false));
        Session gpu(model, 16);
        gpu.forward(prompt);
        const auto next = gpu.forward_token(5);  // one decode token through the chain
        const float diff = max_abs_diff(std::vector<float>(next.begin(), next.end()),
                                        std::vector<float>(cpu_next.begin(), cpu_next.end()));
        std::printf("[ wide chain ] gpu_layers %lld: max |gpu - cpu| %.3g (max |logit| %.3g)\n",
                    static_cast<long long>(layers), diff,
                    max_abs(std::vector<float>(cpu_next.begin(), cpu_next.end())));
        if (layers == 1) {
            EXPECT_LE(diff,
                      kLogitTolerance * std::max(1.0f, max_abs(std::vector<float>(
                                                           cpu_next.begin(), cpu_next.end()))));
        }
        gpu.reset();
        expect_same_greedy(
            want, greedy(gpu, prompt, 16),
            2.0f * logit_tolerance(layers == c.num_layers) * std::max(1.0f, want.max_logit));
    }
}

TEST_F(CudaTest, GpuPromptBatchedEqualsTokenByToken) {
    for (const RuleCase& rc : kRules) {
        SCOPED_TRACE(rc.rule);
        const ModelConfig c = small_config(rc.rule, rc.heads);
        auto model = Model::from_weights(ModelWeights::random(c, 9), nullptr, on_gpu(-1, true));
        const auto ids = some_ids(37, c.vocab_size, 2);  // 3 chunks of 16
        Session batched(model, 16), single(model, 16);
        std::vector<float> all(ids.size() * static_cast<size_t>(c.vocab_size));
        const auto last = batched.forward(ids, all);
        std::vector<float> one_by_one;
        for (int32_t id : ids) {
            const auto l = single.forward_token(id);
            one_by_one.insert(one_by_one.end(), l.begin(), l.end());
        }
        // The GEMM and the GEMV are both exact integer products; the TTT step of one token is a
        // fused kernel (float sums in another order), so a rare int8 activation may round the
        // other way: the CPU tolerance.
        const float scale = std::max(1.0f, max_abs(std::span<const float>(all)));
        const float diff = max_abs_diff(all, one_by_one);
        std::printf("[ batched ] %s/%lld: max |batched - one by one| %.3g (max |logit| %.3g)\n",
                    rc.rule, static_cast<long long>(rc.heads), diff, scale);
        EXPECT_LE(diff, kLogitTolerance * scale);
        EXPECT_LE(
            max_abs_diff(std::vector<float>(last.begin(), last.end()),
                         std::vector<float>(one_by_one.end() - c.vocab_size, one_by_one.end())),
            kLogitTolerance * scale);
        for (int64_t l = 0; l < c.num_layers; ++l) {
            const auto a = batched.state(l), b = single.state(l);
            EXPECT_LE(max_abs_diff(std::vector<float>(a.begin(), a.end()),
                                   std::vector<float>(b.begin(), b.end())),
                      1e-4f);
        }
        EXPECT_EQ(batched.position(), 37);
    }
}

TEST_F(CudaTest, GpuStateRoundTripAndCpuInterchange) {
    const auto dir = std::filesystem::temp_directory_path() / "bitttt_model_cuda_test";
    std::filesystem::create_directories(dir);
    for (const RuleCase& rc : kRules) {
        SCOPED_TRACE(rc.rule);
        const ModelConfig c = small_config(rc.rule, rc.heads);
        const ModelWeights w = ModelWeights::random(c, 21);
        auto gpu_model = Model::from_weights(w, nullptr, on_gpu(2, false));  // hybrid 2 of 3
        auto full_model = Model::from_weights(w, nullptr, on_gpu(-1, false));
        auto cpu_model = Model::from_weights(w);
        ASSERT_EQ(gpu_model->identity_hash(), cpu_model->identity_hash());
        const auto prompt = some_ids(12, c.vocab_size, 4);
        const auto path = (dir / (std::string(rc.rule) + ".tttstate")).string();
        for (const auto& model : {gpu_model, full_model}) {
            const float tolerance = logit_tolerance(model == full_model);
            Session a(model);
            a.forward(prompt);
            a.save_state(path);
            const auto next_a = a.forward_token(7);
            const std::vector<float> expect(next_a.begin(), next_a.end());
            Session b(model);
            b.load_state(path);
            EXPECT_EQ(b.position(), 12);
            EXPECT_TRUE(b.last_logits().empty());
            const auto next_b = b.forward_token(7);
            EXPECT_EQ(max_abs_diff(std::vector<float>(next_b.begin(), next_b.end()), expect),
                      0.0f);  // same GPU, same kernels: bit-identical
            // The file is the CPU's format: a CPU session continues from it.
            Session cpu(cpu_model);
            cpu.load_state(path);
            const auto next_cpu = cpu.forward_token(7);
            EXPECT_LE(max_abs_diff(std::vector<float>(next_cpu.begin(), next_cpu.end()), expect),
                      tolerance * std::max(1.0f, max_abs(next_cpu)));
            // States read on the host agree with the CPU's after the same tokens.
            for (int64_t l = 0; l < c.num_layers; ++l) {
                const auto g = b.state(l), h = cpu.state(l);
                EXPECT_LE(max_abs_diff(std::vector<float>(g.begin(), g.end()),
                                       std::vector<float>(h.begin(), h.end())),
                          1e-4f);
            }
            // Host writes reach the device: zero layer 0 on both and continue.
            for (float& v : b.mutable_state(0)) v = 0.0f;
            for (float& v : cpu.mutable_state(0)) v = 0.0f;
            const auto gz = b.forward_token(9);
            const auto cz = cpu.forward_token(9);
            EXPECT_LE(max_abs_diff(std::vector<float>(gz.begin(), gz.end()),
                                   std::vector<float>(cz.begin(), cz.end())),
                      tolerance * std::max(1.0f, max_abs(cz)));
            // reset() forgets on the device too.
            b.reset();
            Session fresh(model);
            const auto r1 = b.forward_token(3);
            const std::vector<float> after_reset(r1.begin(), r1.end());
            const auto r2 = fresh.forward_token(3);
            EXPECT_EQ(max_abs_diff(after_reset, std::vector<float>(r2.begin(), r2.end())), 0.0f);
        }
    }
    std::filesystem::remove_all(dir);
}

TEST_F(CudaTest, DefaultModelGivesTheCpuTokens) {
    const std::string path = std::string(BITTTT_SOURCE_DIR) + "/models/default.bitt";
    if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is not there";
    auto cpu_model = Model::load(path);
    ASSERT_NE(cpu_model->tokenizer(), nullptr);
    std::vector<int32_t> prompt;
    for (uint32_t id : cpu_model->tokenizer()->encode("Once upon a time, a little girl"))
        prompt.push_back(static_cast<int32_t>(id));
    Session cpu(cpu_model);
    const auto want = greedy(cpu, prompt, 48);
    cpu.reset();
    const auto cpu_first = cpu.forward(prompt);
    const std::vector<float> first_cpu(cpu_first.begin(), cpu_first.end());
    const int64_t L = cpu_model->config().num_layers;
    for (int64_t layers : {L, L / 2, int64_t{1}}) {
        for (bool bf16 : {false, true}) {
            if (layers < L && bf16) continue;  // the head is on the CPU: bf16 changes only embed
            SCOPED_TRACE(testing::Message() << "gpu_layers " << layers << " bf16 " << bf16);
            Session gpu(Model::load(path, on_gpu(layers, bf16)));
            const auto got = greedy(gpu, prompt, 48);
            gpu.reset();
            const auto first = gpu.forward(prompt);
            const float diff =
                max_abs_diff(std::vector<float>(first.begin(), first.end()), first_cpu);
            size_t same = 0;
            while (same < std::min(got.size(), want.size()) && got[same] == want[same]) ++same;
            std::printf(
                "[ default.bitt ] gpu_layers %lld bf16 %d: %zu of %zu greedy tokens equal, "
                "max |logit diff| %.3g (max |logit| %.3g)\n",
                static_cast<long long>(layers), bf16 ? 1 : 0, same, want.size(), diff,
                max_abs(first_cpu));
            if (!bf16) {
                EXPECT_EQ(got, want);
                EXPECT_LE(diff, logit_tolerance(layers == L) * std::max(1.0f, max_abs(first_cpu)));
            } else {
                // bf16 rounds every lm_head weight by up to 2^-9 relative.
                EXPECT_LE(diff, 2e-2f * std::max(1.0f, max_abs(first_cpu)));
            }
        }
    }
}

}  // namespace
}  // namespace bitttt::cuda::test
