// The decode GEMVs that quantize a float input on the fly (kernels/cuda/gemv_float.hpp) against the
// CPU scalar references (rmsnorm_scalar, quantize_activations_scalar, ternary_matmul_scalar,
// silu_mul_scalar) on random data and odd shapes (team sizes 1..8, rows and columns that are not
// multiples of 16), and the statistics every producer publishes (row_stats, the GEMV epilogues,
// the TTT step's z key) against the same statistics computed on the host. Skipped without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/aligned_buffer.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "cuda_test_util.hpp"
#include "kernels/cpu/activations.hpp"
#include "kernels/cpu/norms.hpp"
#include "kernels/cpu/ternary.hpp"
#include "kernels/cpu/ttt_scan.hpp"
#include "kernels/cuda/gemv_float.hpp"
#include "kernels/cuda/kernels.hpp"
#include "random_ternary_weights.hpp"

namespace bitttt::cuda::test {
namespace {

using kernels::packed_cols;
using kernels::TernaryWeights;

// y = W · quantize(x) on the CPU (scalar references); returns the activation scale too.
std::vector<float> cpu_gemv(const Weights& w, const std::vector<float>& x, float* act_scale) {
    const int64_t k = w.host.cols;
    std::vector<int8_t> q(static_cast<size_t>(packed_cols(k)));
    kernels::quantize_activations_scalar(x.data(), 1, k, k, q.data(), packed_cols(k), act_scale);
    std::vector<float> y(static_cast<size_t>(w.host.rows));
    kernels::ternary_matmul_scalar(w.host, q.data(), packed_cols(k), act_scale, 1, y.data(),
                                   w.host.rows);
    return y;
}

std::vector<float> random_row(int64_t n, Rng& rng) {
    const float magnitude = std::exp2(static_cast<float>(rng.below(12)) - 6.0f);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = rng.normal() * magnitude;
    return v;
}

// The key and sum-of-squares partials a producer must publish for v (reader norm `norm` or none).
unsigned long long host_key(const std::vector<float>& v, const std::vector<float>* norm) {
    unsigned long long best = 0;
    for (size_t j = 0; j < v.size(); ++j) {
        const float n = std::fabs(norm != nullptr ? v[j] * (*norm)[j] : v[j]);
        const unsigned long long key = (static_cast<unsigned long long>(bits(n)) << 32) | j;
        best = std::max(best, key);
    }
    return best;
}
std::vector<double> host_partials(const std::vector<float>& v) {
    std::vector<double> p((v.size() + 15) / 16, 0.0);
    for (size_t j = 0; j < v.size(); ++j) p[j / 16] += static_cast<double>(v[j]) * v[j];
    return p;
}

// Device-side statistics of one row.
struct Stats {
    DeviceBuffer partials, key;
    int64_t groups;
    explicit Stats(int64_t n)
        : partials(static_cast<size_t>(std::max<int64_t>((n + 15) / 16, 2)) * sizeof(double)),
          key(16),
          groups((n + 15) / 16) {
        key.fill_bytes(0);
    }
    RowStats view() { return {partials.as<double>(), groups, key.as<unsigned long long>()}; }
    unsigned long long read_key() const { return download<unsigned long long>(key, 1)[0]; }
    std::vector<double> read_partials() const {
        return download<double>(partials, static_cast<size_t>(groups));
    }
};

void expect_stats(Stats& stats, const std::vector<float>& v, const std::vector<float>* norm,
                  const std::string& what) {
    EXPECT_EQ(stats.read_key(), host_key(v, norm)) << what;
    const auto got = stats.read_partials();
    const auto want = host_partials(v);
    for (size_t g = 0; g < want.size(); ++g)
        EXPECT_NEAR(got[g], want[g], 1e-12 * want[g] + 1e-300) << what << " group " << g;
}

const int64_t kShapes[] = {1, 3, 17, 255, 4097};
// Few row groups of many columns: teams of 16 and 32 warps.
const int64_t kLongRows[][2] = {{17, 8193}, {40, 16400}, {2048, 8192}};

class GemvFloatCuda : public CudaTest {};

TEST_F(GemvFloatCuda, PlainInputIsBitIdenticalToQuantizeAndGemv) {
    Rng rng(11);
    Stream stream;
    std::vector<std::pair<int64_t, int64_t>> shapes;
    for (int64_t rows : kShapes)
        for (int64_t cols : kShapes) shapes.emplace_back(rows, cols);
    for (const auto& rc : kLongRows) shapes.emplace_back(rc[0], rc[1]);
    for (const auto& [rows, cols] : shapes) {
        {
            for (bool accumulate : {false, true}) {
                const std::string what = std::to_string(rows) + "x" + std::to_string(cols) +
                                         (accumulate ? " accumulate" : "");
                Weights w(rows, cols, rng);
                const auto a = random_row(cols, rng);
                const auto y0 = random_row(rows, rng);
                std::vector<float> out_norm(static_cast<size_t>(rows));
                for (auto& v : out_norm) v = 0.5f + rng.uniform();
                DeviceBuffer da = upload(a), dy = upload(y0), dn = upload(out_norm);
                Stats in(cols), out(rows);
                // The input's statistics as a producer would publish them (no norm: key only).
                row_stats(da.as<float>(), cols, nullptr, {nullptr, 0, in.view().key}, in.view().key,
                          1, stream);
                ternary_gemv_float(w.device(), {da.as<float>(), cols, nullptr, 0.0f, in.view()},
                                   dy.as<float>(), accumulate, out.view(), dn.as<float>(), stream);
                stream.synchronize();
                EXPECT_EQ(in.read_key(), host_key(a, nullptr)) << what;
                float scale = 0;
                auto want = cpu_gemv(w, a, &scale);
                if (accumulate)
                    for (size_t i = 0; i < want.size(); ++i) want[i] = y0[i] + want[i];
                const auto got = download<float>(dy, static_cast<size_t>(rows));
                for (int64_t i = 0; i < rows; ++i)
                    ASSERT_EQ(bits(got[i]), bits(want[i])) << what << " row " << i;
                expect_stats(out, got, &out_norm, what);
            }
        }
    }
}

// With an RMSNorm the sum of squares is added in another order than the CPU's and the absmax is
// located before normalizing, so an int8 value may round the other way: each output stays within
// a few quantization steps of the CPU's (and most are bit-identical).
TEST_F(GemvFloatCuda, NormInputMatchesRmsnormQuantizeAndGemv) {
    Rng rng(12);
    Stream stream;
    const float eps = 1e-5f;
    int64_t outputs = 0, identical = 0;
    for (int64_t rows : kShapes) {
        for (int64_t cols : kShapes) {
            const std::string what = std::to_string(rows) + "x" + std::to_string(cols);
            Weights w(rows, cols, rng);
            const auto a = random_row(cols, rng);
            std::vector<float> norm(static_cast<size_t>(cols));
            for (auto& v : norm) v = 0.5f + rng.uniform();
            DeviceBuffer da = upload(a), dn = upload(norm);
            DeviceBuffer dy(static_cast<size_t>(rows) * 4);
            Stats in(cols);
            row_stats(da.as<float>(), cols, dn.as<float>(), in.view(), in.view().key, 1, stream);
            ternary_gemv_float(w.device(), {da.as<float>(), cols, dn.as<float>(), eps, in.view()},
                               dy.as<float>(), false, {}, nullptr, stream);
            stream.synchronize();
            expect_stats(in, a, &norm, what + " (row_stats)");
            std::vector<float> normed(static_cast<size_t>(cols));
            kernels::rmsnorm_scalar(a.data(), 1, cols, cols, norm.data(), eps, normed.data(), cols);
            float scale = 0;
            const auto want = cpu_gemv(w, normed, &scale);
            const auto got = download<float>(dy, static_cast<size_t>(rows));
            const float step = w.host.scale * scale;  // one int8 step times one weight
            for (int64_t i = 0; i < rows; ++i) {
                EXPECT_NEAR(got[i], want[i], 3.0f * step + 1e-5f * std::fabs(want[i]))
                    << what << " row " << i;
                identical += bits(got[i]) == bits(want[i]);
                ++outputs;
            }
        }
    }
    EXPECT_GE(identical * 10, outputs * 9) << identical << " of " << outputs << " bit-identical";
}

TEST_F(GemvFloatCuda, SwigluMatchesTwoGemvsAndSiluMul) {
    Rng rng(13);
    Stream stream;
    const float eps = 1e-5f;
    for (int64_t rows : kShapes) {
        for (int64_t cols : {int64_t{3}, int64_t{255}, int64_t{4097}}) {
            for (bool with_norm : {false, true}) {
                const std::string what =
                    std::to_string(rows) + "x" + std::to_string(cols) + (with_norm ? " norm" : "");
                Weights gate(rows, cols, rng), up(rows, cols, rng);
                const auto a = random_row(cols, rng);
                std::vector<float> norm(static_cast<size_t>(cols));
                for (auto& v : norm) v = 0.5f + rng.uniform();
                DeviceBuffer da = upload(a), dn = upload(norm);
                DeviceBuffer dh(static_cast<size_t>(rows) * 4);
                Stats in(cols), out(rows);
                const float* nptr = with_norm ? dn.as<float>() : nullptr;
                row_stats(da.as<float>(), cols, nptr, in.view(), in.view().key, 1, stream);
                ternary_gemv_swiglu(gate.device(), up.device(),
                                    {da.as<float>(), cols, nptr, eps, in.view()}, dh.as<float>(),
                                    out.view(), stream);
                stream.synchronize();
                std::vector<float> x = a;
                if (with_norm)
                    kernels::rmsnorm_scalar(a.data(), 1, cols, cols, norm.data(), eps, x.data(),
                                            cols);
                float scale = 0;
                const auto g = cpu_gemv(gate, x, &scale);
                const auto u = cpu_gemv(up, x, &scale);
                std::vector<float> want(static_cast<size_t>(rows));
                kernels::silu_mul_scalar(g.data(), u.data(), rows, want.data());
                const auto got = download<float>(dh, static_cast<size_t>(rows));
                // expf may differ from the CPU's exp in the last bit; with a norm an int8 value may
                // round the other way (a few steps of gate or up).
                const float step = std::max(gate.host.scale, up.host.scale) * scale;
                float gmax = 0, umax = 0;
                for (int64_t i = 0; i < rows; ++i) {
                    gmax = std::max(gmax, std::fabs(g[i]));
                    umax = std::max(umax, std::fabs(u[i]));
                }
                const float tol = with_norm ? 3.0f * step * (gmax + umax + 3.0f * step) : 0.0f;
                for (int64_t i = 0; i < rows; ++i)
                    ASSERT_NEAR(got[i], want[i], tol + 1e-5f * std::fabs(want[i]))
                        << what << " row " << i;
                expect_stats(out, got, nullptr, what);
            }
        }
    }
}

// Every DecodeVariant of the general kernel (small_split 0; weights prefetched one or two steps
// ahead, each statistics prologue) computes the same integer sums and float epilogue: outputs and
// keys equal the first variant's bit for bit, partials within double rounding, for the
// single-matrix and the SwiGLU GEMV, with and without a norm, on shapes with one-warp teams of
// several unrolled steps and a tail (20000 x 2100), 16-warp teams (2048 x 8192) and odd small ones.
// One random problem of a decode-variant sweep on the device: weights (a second matrix for the
// SwiGLU), an input row with norm weights and its statistics, the output's initial values and the
// norm weights its statistics use.
struct SweepCase {
    int64_t rows, cols;
    Weights w0;
    std::optional<Weights> w1;
    std::vector<float> a, y0, norm, out_norm;
    DeviceBuffer da, dn, don;
    SweepCase(int64_t rows_, int64_t cols_, bool swiglu, Rng& rng)
        : rows(rows_), cols(cols_), w0(rows_, cols_, rng) {
        if (swiglu) w1.emplace(rows, cols, rng);
        a = random_row(cols, rng);
        y0 = random_row(rows, rng);
        norm.resize(static_cast<size_t>(cols));
        out_norm.resize(static_cast<size_t>(rows));
        for (auto& v : norm) v = 0.5f + rng.uniform();
        for (auto& v : out_norm) v = 0.5f + rng.uniform();
        da = upload(a);
        dn = upload(norm);
        don = upload(out_norm);
    }
};

// What one launch writes: the output row, its key and its sum-of-squares partials.
struct GemvResult {
    std::vector<float> y;
    unsigned long long key;
    std::vector<double> partials;
};

// One launch of the case's GEMV (SwiGLU when it has two matrices) under `variant`, the input
// normalized by `norm` (nullptr: none) with its statistics `in`.
GemvResult run_variant(const DecodeVariant& variant, SweepCase& c, const float* norm, Stats& in,
                       bool accumulate, Stream& stream) {
    set_decode_variant(variant);
    DeviceBuffer dy = upload(c.y0);
    Stats out(c.rows);
    const FloatRow row{c.da.as<float>(), c.cols, norm, 1e-5f, in.view()};
    if (c.w1)
        ternary_gemv_swiglu(c.w0.device(), c.w1->device(), row, dy.as<float>(), out.view(), stream);
    else
        ternary_gemv_float(c.w0.device(), row, dy.as<float>(), accumulate, out.view(),
                           c.don.as<float>(), stream);
    stream.synchronize();
    return {download<float>(dy, static_cast<size_t>(c.rows)), out.read_key(), out.read_partials()};
}

// got == want bit for bit in the output and the key; the partials within partial_rtol relative
// (0: bit for bit).
void expect_same_result(const GemvResult& got, const GemvResult& want, double partial_rtol,
                        const std::string& what) {
    ASSERT_EQ(got.y.size(), want.y.size());
    for (size_t i = 0; i < want.y.size(); ++i)
        ASSERT_EQ(bits(got.y[i]), bits(want.y[i])) << what << " row " << i;
    EXPECT_EQ(got.key, want.key) << what;
    ASSERT_EQ(got.partials.size(), want.partials.size());
    for (size_t g = 0; g < want.partials.size(); ++g) {
        if (partial_rtol == 0)
            ASSERT_EQ(std::memcmp(&got.partials[g], &want.partials[g], 8), 0)
                << what << " group " << g << ": " << got.partials[g] << " vs " << want.partials[g];
        else
            ASSERT_NEAR(got.partials[g], want.partials[g], partial_rtol * want.partials[g])
                << what << " group " << g;
    }
}

TEST_F(GemvFloatCuda, EveryDecodeVariantGivesTheSameBits) {
    Rng rng(17);
    Stream stream;
    const DecodeVariant chosen = decode_variant();
    const int64_t shapes[][3] = {// rows, cols, matrices
                                 {3, 17, 1},       {255, 4097, 1}, {2048, 8192, 1},
                                 {20000, 2100, 1}, {255, 4097, 2}, {20000, 2100, 2}};
    for (const auto& shape : shapes) {
        SweepCase c(shape[0], shape[1], shape[2] == 2, rng);
        for (bool with_norm : {false, true}) {
            const float* nptr = with_norm ? c.dn.as<float>() : nullptr;
            Stats in(c.cols);
            row_stats(c.da.as<float>(), c.cols, nptr, in.view(), in.view().key, 1, stream);
            const GemvResult want = run_variant({0, 0, 0, 1, 8}, c, nptr, in, true, stream);
            for (int prefetch = 0; prefetch <= 2; ++prefetch) {
                for (int prologue = 0; prologue <= 1; ++prologue) {
                    const std::string what = std::to_string(c.rows) + "x" + std::to_string(c.cols) +
                                             (c.w1 ? " swiglu" : "") + (with_norm ? " norm" : "") +
                                             " prefetch " + std::to_string(prefetch) +
                                             " prologue " + std::to_string(prologue);
                    // A prefetching kernel may run another team size (more registers, fewer
                    // resident warps): its partials are then summed in another order.
                    ASSERT_NO_FATAL_FAILURE(expect_same_result(
                        run_variant({prefetch, prologue, 0, 1, 8}, c, nptr, in, true, stream), want,
                        1e-13, what));
                }
            }
        }
    }
    set_decode_variant(chosen);
    DecodeVariant bad = chosen;
    bad.gemv_prefetch = 3;
    EXPECT_THROW(set_decode_variant(bad), Error);
    bad = chosen;
    bad.prologue = 2;
    EXPECT_THROW(set_decode_variant(bad), Error);
}

// The small-GEMV kernel (DecodeVariant::small_split: column slices in a cluster, their integer
// sums added in the cluster's first block; small_early: inputs loaded early) writes the same bits
// as the kernel it replaces, partials included, for every split (also more slices than column
// blocks) and both early modes, with and without a norm, accumulating or not, under the team
// layouts of GEMV prefetch 0 and 2; shapes from one row to the TTT projections of a 70B model
// (2048 x 8192: 16-warp teams; 8192 x 2048: 4-warp teams) and one above the default 8 MiB
// bound (20000 x 4100: several unrolled steps per thread; the new kernel under a 64 MiB bound).
// Without a norm, also the CPU reference.
TEST_F(GemvFloatCuda, SmallGemvSplitsGiveTheOldBits) {
    Rng rng(18);
    Stream stream;
    const DecodeVariant chosen = decode_variant();
    const int64_t shapes[][2] = {{1, 1},       {3, 17},      {100, 33},   {17, 8193},
                                 {40, 16400},  {255, 4097},  {1000, 250}, {2048, 8192},
                                 {8192, 2048}, {20000, 4100}};
    for (const auto& shape : shapes) {
        SweepCase c(shape[0], shape[1], false, rng);
        for (bool with_norm : {false, true}) {
            const float* nptr = with_norm ? c.dn.as<float>() : nullptr;
            Stats in(c.cols);
            row_stats(c.da.as<float>(), c.cols, nptr, in.view(), in.view().key, 1, stream);
            for (bool accumulate : {false, true}) {
                for (int prefetch : {0, 2}) {
                    const std::string base = std::to_string(c.rows) + "x" + std::to_string(c.cols) +
                                             (with_norm ? " norm" : "") +
                                             (accumulate ? " accumulate" : "") + " prefetch " +
                                             std::to_string(prefetch);
                    const GemvResult want =
                        run_variant({prefetch, 0, 0, 1, 8}, c, nptr, in, accumulate, stream);
                    if (!with_norm) {
                        float scale = 0;
                        auto cpu = cpu_gemv(c.w0, c.a, &scale);
                        for (int64_t i = 0; i < c.rows; ++i) {
                            if (accumulate) cpu[i] = c.y0[i] + cpu[i];
                            ASSERT_EQ(bits(want.y[i]), bits(cpu[i])) << base << " row " << i;
                        }
                    }
                    for (int split : {1, 2, 3, 4, 8}) {
                        for (int early : {0, 1}) {
                            ASSERT_NO_FATAL_FAILURE(
                                expect_same_result(run_variant({prefetch, 0, split, early, 64}, c,
                                                               nptr, in, accumulate, stream),
                                                   want, 0.0,
                                                   base + " split " + std::to_string(split) +
                                                       " early " + std::to_string(early)));
                        }
                    }
                }
            }
        }
    }
    set_decode_variant(chosen);
    DecodeVariant bad = chosen;
    bad.small_split = 9;
    EXPECT_THROW(set_decode_variant(bad), Error);
    bad = chosen;
    bad.small_early = 2;
    EXPECT_THROW(set_decode_variant(bad), Error);
    bad = chosen;
    bad.small_max_mb = 0;
    EXPECT_THROW(set_decode_variant(bad), Error);
}

TEST_F(GemvFloatCuda, RowStatsZeroesKeysAndSummarizesTheRow) {
    Rng rng(14);
    Stream stream;
    for (int64_t d : {int64_t{1}, int64_t{16}, int64_t{1000}, int64_t{8193}}) {
        const auto x = random_row(d, rng);
        std::vector<float> norm(static_cast<size_t>(d));
        for (auto& v : norm) v = 0.5f + rng.uniform();
        DeviceBuffer dx = upload(x), dn = upload(norm);
        std::vector<unsigned long long> keys(37, ~0ull);
        DeviceBuffer dkeys = upload(keys);
        Stats stats(d);
        auto view = stats.view();
        view.key = dkeys.as<unsigned long long>() + 5;  // inside the range being zeroed
        row_stats(dx.as<float>(), d, dn.as<float>(), view, dkeys.as<unsigned long long>(), 37,
                  stream);
        stream.synchronize();
        const auto got = download<unsigned long long>(dkeys, keys.size());
        for (size_t i = 0; i < got.size(); ++i)
            EXPECT_EQ(got[i], i == 5 ? host_key(x, &norm) : 0ull) << "d " << d << " key " << i;
        const auto partials = stats.read_partials();
        const auto want = host_partials(x);
        for (size_t g = 0; g < want.size(); ++g)
            EXPECT_NEAR(partials[g], want[g], 1e-12 * want[g]) << "d " << d;
    }
}

TEST_F(GemvFloatCuda, TttStepPublishesTheLargestZ) {
    Rng rng(15);
    Stream stream;
    for (int64_t dt : {int64_t{5}, int64_t{64}, int64_t{2048}}) {
        std::vector<float> s(static_cast<size_t>(dt * dt));
        for (auto& v : s) v = 0.1f * rng.normal();
        const auto f = random_row(dt, rng);
        DeviceBuffer dw = upload(s), df = upload(f), dz(static_cast<size_t>(dt) * 4), key(16);
        key.fill_bytes(0);
        // The state's early load (before the PDL wait) must not change anything either.
        ttt_reconstruct_step(dw.as<float>(), dt, 0.1f, df.as<float>(), dz.as<float>(), stream,
                             key.as<unsigned long long>(), dt != 64);
        stream.synchronize();
        const auto z = download<float>(dz, static_cast<size_t>(dt));
        EXPECT_EQ(download<unsigned long long>(key, 1)[0], host_key(z, nullptr)) << "dt " << dt;
        // z itself is unchanged by the key: the CPU reference (S = Wᵀ) within float rounding.
        std::vector<float> st(s.size()), zc(static_cast<size_t>(dt));
        for (int64_t i = 0; i < dt; ++i)
            for (int64_t j = 0; j < dt; ++j) st[j * dt + i] = s[i * dt + j];
        kernels::ttt_scan_reconstruct_scalar(st.data(), dt, 0.1f, f.data(), dt, 1, zc.data(), dt);
        for (int64_t i = 0; i < dt; ++i) EXPECT_NEAR(z[i], zc[i], 1e-4f) << "dt " << dt;
    }
}

TEST_F(GemvFloatCuda, HostileArgumentsGiveClearErrors) {
    Rng rng(16);
    Stream stream;
    Weights w(32, 64, rng);
    DeviceBuffer a(64 * 4 + 16), y(32 * 4);
    Stats in(64);
    const FloatRow ok{a.as<float>(), 64, nullptr, 0.0f, in.view()};
    auto expect_error = [&](const FloatRow& row, const TernaryWeights& m, const char* needle) {
        try {
            ternary_gemv_float(m, row, y.as<float>(), false, {}, nullptr, stream);
            ADD_FAILURE() << "no error for " << needle;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    FloatRow misaligned = ok;
    misaligned.a = a.as<float>() + 1;
    expect_error(misaligned, w.device(), "16-byte aligned");
    FloatRow no_key = ok;
    no_key.stats.key = nullptr;
    expect_error(no_key, w.device(), "absmax key");
    FloatRow norm_without_partials = ok;
    norm_without_partials.norm = a.as<float>();
    norm_without_partials.stats.partials = nullptr;
    expect_error(norm_without_partials, w.device(), "partials");
    TernaryWeights wrong = w.device();
    wrong.cols = 63;
    expect_error(ok, wrong, "the row has 64 values");
}

}  // namespace
}  // namespace bitttt::cuda::test
