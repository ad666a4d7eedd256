// The chunked CUDA TTT scan of training (kernels/cuda/ttt_chunk_train.hpp): forward outputs, the
// checkpoints (the states at every chunk start) and every backward gradient against the CPU
// functions of train/ttt_bptt.hpp run in double precision on the same float inputs; both rules, a
// per-token η and a constant one, 1-4 heads, Dh in {64, 128, 160, 256, 512}, chunks of 7 to 64
// tokens, T not a multiple of the chunk (and T < chunk), B up to 3, one head with T a multiple of
// the chunk (the in-place layout: no padded copies); q = k = v with dq = dk = dv
// aliased (as `reconstruct` calls it); gradients accumulated into non-zero buffers; and the same
// through ttt_scan_forward/backward, which dispatch to the chunked form at chunk 64. Skipped
// without a GPU.
//
// Tolerance, per element: |gpu − ref| ≤ tol·(|ref| + max|ref|) (max over the tensor).
//   - fp32 products (ttt_chunk_set_tf32(false)): tol = 1e-3. The chunked form sums in other
//     orders than the token loop and inverts R = I + tril(diag(η)KKᵀ, −1), but stays within a few
//     1e-5 of max|ref| here; any indexing or masking mistake moves elements by O(max|ref|).
//   - TF32 products (the default, 10-bit mantissas, fp32 accumulation): tol = 2e-2; the worst
//     error / max|ref| of every tensor is printed so the margin can be read from the log.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "cuda_test_util.hpp"
#include "kernels/cuda/ttt_chunk_train.hpp"
#include "kernels/cuda/ttt_scan_train.hpp"
#include "train/ttt_bptt.hpp"
#include "ttt_scan_problem.hpp"

namespace bitttt::cuda::test {
namespace {

using train::TttScanShape;
using Case = ScanCase;

// via_scan: through ttt_scan_forward/backward (which must pick the chunked form).
void run_case(const Case& c, bool via_scan = false) {
    SCOPED_TRACE(describe(c) + (via_scan ? " via_scan" : ""));
    std::printf("  %s\n", describe(c).c_str());
    const ScanProblem p(c);
    const ScanKernels chunked{ttt_chunk_workspace_bytes, ttt_chunk_forward, ttt_chunk_backward};
    const ScanKernels scan{ttt_scan_workspace_bytes, ttt_scan_forward, ttt_scan_backward};
    for (bool tf32 : {false, true}) {
        if (via_scan && !tf32) continue;
        SCOPED_TRACE(tf32 ? "TF32 products" : "fp32 products");
        std::printf("   %s\n", tf32 ? "TF32" : "fp32");
        ttt_chunk_set_tf32(tf32);
        run_and_compare(p, c, via_scan ? scan : chunked, tf32 ? 2e-2 : 1e-3);
    }
    ttt_chunk_set_tf32(true);
}

class TttChunkTrainCuda : public CudaTest {};

TEST_F(TttChunkTrainCuda, MatchesCpuAcrossShapesAndRules) {
    struct Dims {
        int64_t H, Dh, chunk;
    };
    for (Dims dims :
         {Dims{1, 128, 32}, Dims{2, 128, 64}, Dims{1, 256, 64}, Dims{3, 160, 48}, Dims{2, 64, 7}}) {
        for (bool read_before : {true, false}) {
            for (bool eta_per_token : {true, false}) {
                run_case({3, 101, dims.H, dims.Dh, dims.chunk, read_before, eta_per_token, false});
                if (HasFailure()) return;
            }
        }
    }
}

TEST_F(TttChunkTrainCuda, ReconstructWithAliasedInputsAndGradients) {
    run_case({3, 150, 1, 256, 64, true, false, true});
    run_case({2, 70, 1, 128, 32, true, true, true});
}

TEST_F(TttChunkTrainCuda, OddLengthsAndWideHeads) {
    run_case({1, 5, 1, 256, 64, true, true, false});     // one partial chunk
    run_case({2, 64, 1, 256, 64, false, true, false});   // exactly one chunk
    run_case({2, 300, 1, 256, 64, false, true, false});  // several chunks, the last partial
    run_case({1, 65, 1, 512, 64, true, true, false});    // the widest heads
}

// One head with T a multiple of the chunk: the products read the inputs and write y / accumulate
// dq, dk in place (no padded copies); the whole-chunk sequential kernel at Dh 64, 128, 256 with
// chunks of 8 to 64 tokens (partial 16-row tiles: 8, 24, 40), both rules, aliased or not.
TEST_F(TttChunkTrainCuda, InPlaceLayoutOneHead) {
    run_case({2, 128, 1, 256, 64, true, false, true});
    run_case({2, 192, 1, 256, 64, false, true, false});
    run_case({3, 96, 1, 128, 32, false, true, false});
    run_case({2, 120, 1, 128, 40, true, true, false});
    run_case({2, 72, 1, 64, 24, false, true, false});
    run_case({1, 64, 1, 64, 8, true, false, true});
}

// Several heads and T not a multiple of the chunk through the whole-chunk kernel (padded copies).
TEST_F(TttChunkTrainCuda, WholeChunkKernelWithHeadsAndPartialChunks) {
    run_case({2, 77, 4, 64, 16, false, true, false});
    run_case({1, 130, 2, 256, 64, true, true, false});
    run_case({2, 45, 3, 128, 24, false, false, false});
}

// ttt_scan_forward/backward pick the chunked form at Dh >= 128 with chunk 64, and the model's
// preferred chunk follows.
TEST_F(TttChunkTrainCuda, ScanDispatchesToChunkedForm) {
    EXPECT_EQ(ttt_scan_preferred_chunk(256), 64);
    EXPECT_EQ(ttt_scan_preferred_chunk(64), 16);
    EXPECT_TRUE(ttt_scan_uses_chunked_form({2, 100, 1, 256, true, 64}));
    EXPECT_FALSE(ttt_scan_uses_chunked_form({2, 100, 1, 256, true, 16}));
    EXPECT_FALSE(ttt_scan_uses_chunked_form({2, 100, 1, 100, true, 64}));
    run_case({2, 130, 1, 256, 64, true, false, true}, true);
    run_case({2, 130, 2, 128, 64, false, true, false}, true);
}

// Opt-in (BITTTT_CUDA_TTT_TIMING=1): milliseconds of one forward + backward at the D=1024 model's
// shape (B=16, T=1024, one head of 256, chunk 64), chunked form against the token recurrence.
TEST_F(TttChunkTrainCuda, TimingAtTheLargeModelShape) {
    const char* env = std::getenv("BITTTT_CUDA_TTT_TIMING");
    if (!env || env[0] != '1') GTEST_SKIP() << "set BITTTT_CUDA_TTT_TIMING=1 to time";
    for (bool read_before : {true, false}) {
        const TttScanShape s{16, 1024, 1, 256, read_before, 64};
        const int64_t n = s.B * s.T * s.H * s.Dh;
        Rng rng(5);
        auto k = unit_rows(s.B * s.T, 1, s.Dh, rng), q = unit_rows(s.B * s.T, 1, s.Dh, rng);
        auto v = normal_vector(static_cast<size_t>(n), rng);
        std::vector<float> eta(static_cast<size_t>(s.B * s.T), 0.1f);
        Stream stream;
        DeviceBuffer d_q = upload(q), d_k = upload(k), d_v = upload(v), d_eta = upload(eta);
        DeviceBuffer d_y(n * 4), d_g(n * 4), d_g2(n * 4), d_g3(n * 4), d_de(eta.size() * 4);
        DeviceBuffer d_ck(static_cast<size_t>(s.checkpoint_floats()) * 4);
        for (bool chunked : {true, false}) {
            ttt_scan_set_chunked(chunked);
            DeviceBuffer ws(std::max<size_t>(ttt_scan_workspace_bytes(s), 16));
            const float* qq = read_before ? d_k.as<float>() : d_q.as<float>();
            const float* vv = read_before ? d_k.as<float>() : d_v.as<float>();
            const float* ee = read_before ? nullptr : d_eta.as<float>();
            auto run = [&](bool backward) {
                if (!backward)
                    ttt_scan_forward(d_y.as<float>(), d_ck.as<float>(), qq, d_k.as<float>(), vv, ee,
                                     0.1f, s, ws.data(), stream);
                else
                    ttt_scan_backward(d_g.as<float>(), d_g2.as<float>(), d_g3.as<float>(),
                                      d_de.as<float>(), d_y.as<float>(), d_ck.as<float>(), qq,
                                      d_k.as<float>(), vv, ee, 0.1f, s, ws.data(), stream);
            };
            run(false), run(true);
            double ms[2] = {0, 0};
            for (int backward = 0; backward < 2; ++backward) {
                EventTimer timer;
                timer.start(stream);
                for (int i = 0; i < 3; ++i) run(backward == 1);
                timer.stop(stream);
                ms[backward] = timer.elapsed_ms() / 3;
            }
            std::printf("[timing] %s %s: forward %.3f ms, backward %.3f ms\n",
                        read_before ? "reconstruct" : "delta",
                        chunked ? "chunked" : "token recurrence", ms[0], ms[1]);
        }
        ttt_scan_set_chunked(true);
    }
}

TEST_F(TttChunkTrainCuda, RejectsBadShapes) {
    Stream stream;
    DeviceBuffer buf(1024);
    TttScanShape s{1, 4, 1, 100, true, 64};  // Dh not a multiple of 32
    EXPECT_THROW(ttt_chunk_workspace_bytes(s), Error);
    s.Dh = 128, s.chunk = 65;  // chunk too long
    EXPECT_THROW(ttt_chunk_workspace_bytes(s), Error);
    s.chunk = 64;
    EXPECT_THROW(ttt_chunk_forward(nullptr, buf.as<float>(), buf.as<float>(), buf.as<float>(),
                                   buf.as<float>(), nullptr, 0.1f, s, buf.data(), stream),
                 Error);
}

}  // namespace
}  // namespace bitttt::cuda::test
