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
#include "ttt_scan_problem.hpp"

namespace bitttt::cuda::test {
namespace {

using train::TttScanShape;
using Case = ScanCase;

constexpr double kTolerance = 2e-4;

void run_case(const Case& c) {
    SCOPED_TRACE(describe(c));
    const ScanProblem p(c);
    // The fast version and the simple one.
    for (bool simple : {false, true}) {
        SCOPED_TRACE(simple ? "simple version" : "fast version");
        ttt_scan_force_simple(simple);
        run_and_compare(p, c, {ttt_scan_workspace_bytes, ttt_scan_forward, ttt_scan_backward},
                        kTolerance);
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
