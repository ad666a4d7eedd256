// One test problem for the GPU scans of training (kernels/cuda/ttt_scan_train.hpp and the chunked
// form, ttt_chunk_train.hpp): random inputs shaped as the models feed them and the CPU reference
// (train/ttt_bptt.hpp run in double precision on the same float inputs), so each test only runs
// its GPU version and compares. Tolerance, per element: |gpu − ref| ≤ tol·(|ref| + max|ref|).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "core/rng.hpp"
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

}  // namespace bitttt::cuda::test
