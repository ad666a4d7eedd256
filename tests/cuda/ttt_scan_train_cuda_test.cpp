// The CUDA TTT scan of training (forward outputs and checkpoints, every backward gradient) against
// the CPU functions of train/ttt_bptt.hpp run in double precision on the same float inputs, for
// both rules, a per-token η and a constant one, 1/2/4 heads, Dh in {16, 64, 100, 128, 256}, T not
// a multiple of the chunk, B = 3; also q = k = v and dq = dk = dv aliased (as `reconstruct` calls
// it) and gradients accumulated into non-zero buffers. Both GPU versions (the fast one and the
// simple one, ttt_scan_force_simple) are checked. Skipped without a GPU.
//
// Tolerance: the GPU computes in fp32 with other summation orders (and undoes the update steps in
// the backward instead of recomputing every state), so every element must satisfy
// |gpu − ref| ≤ 2e-4·|ref| + 2e-4·max|ref| (max over the tensor): fp32 round-off grows like
// √(steps)·2^-24 relative to the tensor's magnitude, far below this bound, while any indexing or
// ordering mistake moves elements by O(max|ref|).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "cuda_test_util.hpp"
#include "kernels/cuda/ttt_scan_train.hpp"
#include "train/ttt_bptt.hpp"

namespace bitttt::cuda::test {
namespace {

using train::TttScanShape;

std::vector<float> normal_vector(size_t n, Rng& rng, float scale = 1.0f) {
    std::vector<float> v(n);
    for (auto& x : v) x = rng.normal() * scale;
    return v;
}

// Keys (and queries) with unit norm per head, as the models feed them: η‖k‖² < 2 keeps the
// recurrence stable, so long scans stay well conditioned.
std::vector<float> unit_rows(int64_t rows, int64_t heads, int64_t dh, Rng& rng) {
    auto v = normal_vector(static_cast<size_t>(rows * heads * dh), rng);
    for (int64_t r = 0; r < rows * heads; ++r) {
        double sum = 0;
        for (int64_t j = 0; j < dh; ++j) sum += double(v[r * dh + j]) * v[r * dh + j];
        const float inv = static_cast<float>(1.0 / std::sqrt(sum));
        for (int64_t j = 0; j < dh; ++j) v[r * dh + j] *= inv;
    }
    return v;
}

std::vector<double> to_double(const std::vector<float>& v) {
    return {v.begin(), v.end()};
}

void expect_close(const std::vector<float>& got, const std::vector<double>& ref, const char* what) {
    ASSERT_EQ(got.size(), ref.size());
    double max_ref = 0;
    for (double r : ref) max_ref = std::max(max_ref, std::fabs(r));
    int misses = 0;
    double worst = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        const double err = std::fabs(double(got[i]) - ref[i]);
        worst = std::max(worst, err / std::max(max_ref, 1e-30));
        if (!(err <= 2e-4 * std::fabs(ref[i]) + 2e-4 * max_ref) && misses++ < 5)
            ADD_FAILURE() << what << " element " << i << ": " << got[i] << " vs " << ref[i]
                          << " (max|ref| " << max_ref << ")";
    }
    EXPECT_EQ(misses, 0) << what << ": worst error / max|ref| = " << worst;
}

struct Case {
    int64_t B, T, H, Dh, chunk;
    bool read_before, eta_per_token, aliased;
};

void run_case(const Case& c) {
    SCOPED_TRACE(::testing::Message()
                 << "B " << c.B << " T " << c.T << " H " << c.H << " Dh " << c.Dh << " chunk "
                 << c.chunk << " read_before " << c.read_before << " eta_per_token "
                 << c.eta_per_token << " aliased " << c.aliased);
    Rng rng(static_cast<uint64_t>(c.Dh * 1000 + c.H * 100 + c.T + c.read_before * 7 +
                                  c.eta_per_token * 3 + c.aliased));
    const TttScanShape s{c.B, c.T, c.H, c.Dh, c.read_before, c.chunk};
    const int64_t N = c.B * c.T, n = N * c.H * c.Dh;
    const auto un = static_cast<size_t>(n);
    auto k = unit_rows(N, c.H, c.Dh, rng);
    auto q = c.aliased ? k : unit_rows(N, c.H, c.Dh, rng);
    auto v = c.aliased ? k : normal_vector(un, rng);
    std::vector<float> eta(static_cast<size_t>(N * c.H));
    for (auto& e : eta) e = 0.1f + 0.8f * rng.uniform();
    const float eta_const = 0.37f;
    auto dy = normal_vector(un, rng);
    // Gradients accumulate: start from non-zero values.
    auto dq0 = normal_vector(un, rng), dk0 = normal_vector(un, rng), dv0 = normal_vector(un, rng);
    auto deta0 = normal_vector(eta.size(), rng);

    // CPU reference in double.
    std::vector<double> y_ref(un), ck_ref(static_cast<size_t>(s.checkpoint_floats()));
    const auto qd = to_double(q), kd = to_double(k), vd = to_double(v), etad = to_double(eta);
    const double* eta_ptr = c.eta_per_token ? etad.data() : nullptr;
    train::ttt_scan_forward<double>(y_ref.data(), ck_ref.data(), qd.data(), kd.data(), vd.data(),
                                    eta_ptr, double(eta_const), s);
    std::vector<double> dq_ref = to_double(dq0), dk_ref = to_double(dk0), dv_ref = to_double(dv0);
    std::vector<double> deta_ref = to_double(deta0);
    const auto dyd = to_double(dy);
    if (c.aliased) {  // one gradient buffer for q, k and v
        for (size_t i = 0; i < un; ++i) dq_ref[i] = dq0[i];
        train::ttt_scan_backward<double>(dq_ref.data(), dq_ref.data(), dq_ref.data(),
                                         deta_ref.data(), dyd.data(), ck_ref.data(), kd.data(),
                                         kd.data(), kd.data(), eta_ptr, double(eta_const), s);
    } else {
        train::ttt_scan_backward<double>(dq_ref.data(), dk_ref.data(), dv_ref.data(),
                                         deta_ref.data(), dyd.data(), ck_ref.data(), qd.data(),
                                         kd.data(), vd.data(), eta_ptr, double(eta_const), s);
    }

    // GPU, the fast version and the simple one.
    for (bool simple : {false, true}) {
        SCOPED_TRACE(simple ? "simple version" : "fast version");
        ttt_scan_force_simple(simple);
        Stream stream;
        DeviceBuffer d_q = upload(q), d_k = upload(k), d_v = upload(v), d_eta = upload(eta);
        DeviceBuffer d_dy = upload(dy), d_dq = upload(dq0), d_dk = upload(dk0), d_dv = upload(dv0);
        DeviceBuffer d_deta = upload(deta0);
        DeviceBuffer d_y(un * sizeof(float));
        DeviceBuffer d_ck(static_cast<size_t>(s.checkpoint_floats()) * sizeof(float));
        DeviceBuffer d_ws(std::max<size_t>(ttt_scan_workspace_bytes(s), 16));
        const float* gq = c.aliased ? d_k.as<float>() : d_q.as<float>();
        const float* gv = c.aliased ? d_k.as<float>() : d_v.as<float>();
        const float* geta = c.eta_per_token ? d_eta.as<float>() : nullptr;
        ttt_scan_forward(d_y.as<float>(), d_ck.as<float>(), gq, d_k.as<float>(), gv, geta,
                         eta_const, s, d_ws.data(), stream);
        float* gdk = c.aliased ? d_dq.as<float>() : d_dk.as<float>();
        float* gdv = c.aliased ? d_dq.as<float>() : d_dv.as<float>();
        ttt_scan_backward(d_dq.as<float>(), gdk, gdv, d_deta.as<float>(), d_dy.as<float>(),
                          d_ck.as<float>(), gq, d_k.as<float>(), gv, geta, eta_const, s,
                          d_ws.data(), stream);
        stream.synchronize();

        expect_close(download<float>(d_y, un), y_ref, "y");
        expect_close(download<float>(d_ck, ck_ref.size()), ck_ref, "checkpoints");
        expect_close(download<float>(d_dq, un), dq_ref, "dq");
        if (!c.aliased) {
            expect_close(download<float>(d_dk, un), dk_ref, "dk");
            expect_close(download<float>(d_dv, un), dv_ref, "dv");
        }
        // deta is untouched with a constant η.
        expect_close(download<float>(d_deta, eta.size()), deta_ref, "deta");
        ttt_scan_force_simple(false);
    }
}

class TttScanTrainCuda : public CudaTest {};

TEST_F(TttScanTrainCuda, MatchesCpuAcrossShapesAndRules) {
    struct Dims {
        int64_t H, Dh;
    };
    for (Dims dims :
         {Dims{4, 16}, Dims{1, 64}, Dims{2, 64}, Dims{1, 100}, Dims{2, 128}, Dims{1, 256}}) {
        for (bool read_before : {true, false}) {
            for (bool eta_per_token : {true, false}) {
                run_case({3, 37, dims.H, dims.Dh, 16, read_before, eta_per_token, false});
                if (HasFailure()) return;
            }
        }
    }
}

TEST_F(TttScanTrainCuda, ReconstructWithAliasedInputsAndGradients) {
    for (int64_t dh : {16, 100, 128}) {
        run_case({3, 21, 1, dh, 8, true, false, true});
        run_case({3, 21, 2, dh, 5, true, true, true});
    }
}

TEST_F(TttScanTrainCuda, LongSequenceAndOddChunks) {
    run_case({2, 300, 1, 64, 16, false, true, false});
    run_case({2, 300, 4, 32, 7, true, true, false});
    run_case({1, 5, 1, 64, 16, true, true, false});   // a single partial chunk
    run_case({3, 19, 1, 64, 1, false, true, false});  // a checkpoint every token
}

// Many sequences: the fast version then gives each block up to 16 warps (small batches split the
// rows of a state over many small blocks instead).
TEST_F(TttScanTrainCuda, WideGrid) {
    for (int64_t dh : {64, 128, 256}) {
        run_case({130, 20, 1, dh, 16, true, true, false});
        run_case({130, 20, 1, dh, 16, false, true, false});
    }
}

TEST_F(TttScanTrainCuda, RejectsBadShapes) {
    Stream stream;
    TttScanShape s{1, 4, 1, 0, true, 16};
    EXPECT_THROW(ttt_scan_workspace_bytes(s), Error);
    s.Dh = 8;
    DeviceBuffer buf(1024);
    EXPECT_THROW(ttt_scan_forward(nullptr, buf.as<float>(), buf.as<float>(), buf.as<float>(),
                                  buf.as<float>(), nullptr, 0.1f, s, buf.data(), stream),
                 Error);
}

}  // namespace
}  // namespace bitttt::cuda::test
