// One test problem for the GPU scans of training (kernels/cuda/ttt_scan_train.hpp and the chunked
// form, ttt_chunk_train.hpp): random inputs shaped as the models feed them, the CPU reference
// (train/ttt_bptt.hpp run in double precision on the same float inputs) and the GPU run that
// compares with it (run_and_compare), so each test only picks its GPU version and tolerance.
// Tolerance, per element: |gpu − ref| ≤ tol·(|ref| + max|ref|).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/rng.hpp"
#include "cuda_test_util.hpp"
#include "kernels/cuda/device.hpp"
#include "train/ttt_bptt.hpp"

namespace bitttt::cuda::test {

inline std::vector<float> normal_vector(size_t n, Rng& rng) {
    std::vector<float> v(n);
    for (auto& x : v) x = rng.normal();
    return v;
}

// Keys (and queries) with unit norm per head, as the models feed them: η‖k‖² < 2 keeps the
// recurrence stable, so long scans stay well conditioned.
inline std::vector<float> unit_rows(int64_t rows, int64_t heads, int64_t dh, Rng& rng) {
    auto v = normal_vector(static_cast<size_t>(rows * heads * dh), rng);
    for (int64_t r = 0; r < rows * heads; ++r) {
        double sum = 0;
        for (int64_t j = 0; j < dh; ++j) sum += double(v[r * dh + j]) * v[r * dh + j];
        const float inv = static_cast<float>(1.0 / std::sqrt(sum));
        for (int64_t j = 0; j < dh; ++j) v[r * dh + j] *= inv;
    }
    return v;
}

inline std::vector<double> to_double(const std::vector<float>& v) {
    return {v.begin(), v.end()};
}

// Every element within tol·(|ref| + max|ref|); prints the worst error relative to max|ref| so the
// margin can be read from the log. An indexing or ordering mistake moves elements by O(max|ref|).
inline void expect_close(const std::vector<float>& got, const std::vector<double>& ref, double tol,
                         const char* what) {
    ASSERT_EQ(got.size(), ref.size());
    double max_ref = 0;
    for (double r : ref) max_ref = std::max(max_ref, std::fabs(r));
    int misses = 0;
    double worst = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        const double err = std::fabs(double(got[i]) - ref[i]);
        worst = std::max(worst, err / std::max(max_ref, 1e-30));
        if (!(err <= tol * (std::fabs(ref[i]) + max_ref)) && misses++ < 5)
            ADD_FAILURE() << what << " element " << i << ": " << got[i] << " vs " << ref[i]
                          << " (max|ref| " << max_ref << ")";
    }
    EXPECT_EQ(misses, 0) << what << ": worst error / max|ref| = " << worst;
    std::printf("    %-12s worst error / max|ref| = %.2e\n", what, worst);
}

struct ScanCase {
    int64_t B, T, H, Dh, chunk;
    bool read_before, eta_per_token, aliased;  // aliased: q = k = v and dq = dk = dv (reconstruct)
};

// "B 3 T 101 H 1 Dh 128 chunk 32 read_before 1 eta_per_token 0 aliased 0", for traces and logs.
inline std::string describe(const ScanCase& c) {
    char text[256];
    std::snprintf(text, sizeof text,
                  "B %lld T %lld H %lld Dh %lld chunk %lld read_before %d eta_per_token %d "
                  "aliased %d",
                  static_cast<long long>(c.B), static_cast<long long>(c.T),
                  static_cast<long long>(c.H), static_cast<long long>(c.Dh),
                  static_cast<long long>(c.chunk), c.read_before, c.eta_per_token, c.aliased);
    return text;
}

// The inputs of one case and the CPU's outputs and gradients for them. Gradients accumulate, so
// they start from non-zero values (dq0, ...); with `aliased` the one gradient buffer is dq.
struct ScanProblem {
    train::TttScanShape shape;
    std::vector<float> q, k, v, eta, dy, dq0, dk0, dv0, deta0;
    float eta_const = 0.37f;
    std::vector<double> y_ref, ck_ref, dq_ref, dk_ref, dv_ref, deta_ref;

    explicit ScanProblem(const ScanCase& c) : shape{c.B, c.T, c.H, c.Dh, c.read_before, c.chunk} {
        Rng rng(static_cast<uint64_t>(c.Dh * 1000 + c.H * 100 + c.T + c.read_before * 7 +
                                      c.eta_per_token * 3 + c.aliased));
        const int64_t N = c.B * c.T;
        const auto un = static_cast<size_t>(N * c.H * c.Dh);
        k = unit_rows(N, c.H, c.Dh, rng);
        q = c.aliased ? k : unit_rows(N, c.H, c.Dh, rng);
        v = c.aliased ? k : normal_vector(un, rng);
        eta.resize(static_cast<size_t>(N * c.H));
        for (auto& e : eta) e = 0.1f + 0.8f * rng.uniform();
        dy = normal_vector(un, rng);
        dq0 = normal_vector(un, rng), dk0 = normal_vector(un, rng), dv0 = normal_vector(un, rng);
        deta0 = normal_vector(eta.size(), rng);

        y_ref.resize(un);
        ck_ref.resize(static_cast<size_t>(shape.checkpoint_floats()));
        const auto qd = to_double(q), kd = to_double(k), vd = to_double(v), etad = to_double(eta);
        const double* eta_ptr = c.eta_per_token ? etad.data() : nullptr;
        train::ttt_scan_forward<double>(y_ref.data(), ck_ref.data(), qd.data(), kd.data(),
                                        vd.data(), eta_ptr, double(eta_const), shape);
        dq_ref = to_double(dq0), dk_ref = to_double(dk0), dv_ref = to_double(dv0);
        deta_ref = to_double(deta0);
        const auto dyd = to_double(dy);
        if (c.aliased) {
            train::ttt_scan_backward<double>(
                dq_ref.data(), dq_ref.data(), dq_ref.data(), deta_ref.data(), dyd.data(),
                ck_ref.data(), kd.data(), kd.data(), kd.data(), eta_ptr, double(eta_const), shape);
        } else {
            train::ttt_scan_backward<double>(
                dq_ref.data(), dk_ref.data(), dv_ref.data(), deta_ref.data(), dyd.data(),
                ck_ref.data(), qd.data(), kd.data(), vd.data(), eta_ptr, double(eta_const), shape);
        }
    }
};

// A GPU scan of training under test: ttt_scan_* (kernels/cuda/ttt_scan_train.hpp) and ttt_chunk_*
// (ttt_chunk_train.hpp) share these signatures.
struct ScanKernels {
    size_t (*workspace_bytes)(const train::TttScanShape&);
    void (*forward)(float*, float*, const float*, const float*, const float*, const float*, float,
                    const train::TttScanShape&, void*, const Stream&);
    void (*backward)(float*, float*, float*, float*, const float*, const float*, const float*,
                     const float*, const float*, const float*, float, const train::TttScanShape&,
                     void*, const Stream&);
};

// The GPU half of a case: uploads p's inputs, runs `kernels` forward then backward (with
// c.aliased, q = k = v is one buffer and so is dq = dk = dv, as `reconstruct` calls them; with a
// constant η, eta is null and deta must stay untouched), and compares y, the checkpoints and the
// accumulated gradients with the CPU reference within tol.
inline void run_and_compare(const ScanProblem& p, const ScanCase& c, const ScanKernels& kernels,
                            double tol) {
    const train::TttScanShape& s = p.shape;
    const auto un = p.y_ref.size();
    Stream stream;
    DeviceBuffer d_q = upload(p.q), d_k = upload(p.k), d_v = upload(p.v), d_eta = upload(p.eta);
    DeviceBuffer d_dy = upload(p.dy), d_dq = upload(p.dq0), d_dk = upload(p.dk0);
    DeviceBuffer d_dv = upload(p.dv0), d_deta = upload(p.deta0);
    DeviceBuffer d_y(un * sizeof(float));
    DeviceBuffer d_ck(static_cast<size_t>(s.checkpoint_floats()) * sizeof(float));
    DeviceBuffer d_ws(std::max<size_t>(kernels.workspace_bytes(s), 16));
    const float* k = d_k.as<float>();
    const float* q = c.aliased ? k : d_q.as<float>();
    const float* v = c.aliased ? k : d_v.as<float>();
    const float* eta = c.eta_per_token ? d_eta.as<float>() : nullptr;
    float* dq = d_dq.as<float>();
    float* dk = c.aliased ? dq : d_dk.as<float>();
    float* dv = c.aliased ? dq : d_dv.as<float>();
    kernels.forward(d_y.as<float>(), d_ck.as<float>(), q, k, v, eta, p.eta_const, s, d_ws.data(),
                    stream);
    kernels.backward(dq, dk, dv, d_deta.as<float>(), d_dy.as<float>(), d_ck.as<float>(), q, k, v,
                     eta, p.eta_const, s, d_ws.data(), stream);
    stream.synchronize();

    expect_close(download<float>(d_y, un), p.y_ref, tol, "y");
    expect_close(download<float>(d_ck, p.ck_ref.size()), p.ck_ref, tol, "checkpoints");
    expect_close(download<float>(d_dq, un), p.dq_ref, tol, "dq");
    if (!c.aliased) {
        expect_close(download<float>(d_dk, un), p.dk_ref, tol, "dk");
        expect_close(download<float>(d_dv, un), p.dv_ref, tol, "dv");
    }
    expect_close(download<float>(d_deta, p.eta.size()), p.deta_ref, tol, "deta");
}

}  // namespace bitttt::cuda::test
