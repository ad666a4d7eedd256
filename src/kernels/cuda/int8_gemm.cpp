// Int8 tensor-core products through cuBLASLt (int8_gemm.hpp). One descriptor set and one
// heuristic pick per (shape, pointer alignments), made at the first call and reused: a training
// step asks for the same few shapes every layer.
#include "kernels/cuda/int8_gemm.hpp"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <deque>
#include <utility>

#include "core/error.hpp"
#include "kernels/cuda/cuda_check.hpp"

namespace bitttt::cuda {
namespace {

void check_lt(cublasStatus_t status, const char* what) {
    if (status == CUBLAS_STATUS_SUCCESS) return;
    fail(status == CUBLAS_STATUS_ALLOC_FAILED || status == CUBLAS_STATUS_NOT_SUPPORTED
             ? ErrorKind::kUnsupported
             : ErrorKind::kInternal,
         "CUDA: int8 product: {}: cuBLASLt {} ({})", what, cublasLtGetStatusName(status),
         cublasLtGetStatusString(status));
}

// The largest power of two (at most 256) that divides the address: what cuBLASLt may assume.
uint32_t alignment(const void* p) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    uint32_t bytes = 256;
    while (bytes > 1 && a % bytes != 0) bytes >>= 1;
    return bytes;
}

}  // namespace

struct Int8Gemm::Impl {
    struct Plan {
        int64_t N = 0, K = 0, OC = 0;
        uint32_t align_x = 0, align_w = 0, align_out = 0;
        cublasLtMatmulDesc_t desc = nullptr;
        cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
        cublasLtMatmulAlgo_t algo{};
    };
    cublasLtHandle_t handle = nullptr;
    void* workspace = nullptr;
    size_t workspace_bytes = 0;
    std::deque<Plan> plans;  // (stable references)

    ~Impl() {
        for (Plan& p : plans) destroy(p);
        if (handle) cublasLtDestroy(handle);
    }
    static void destroy(Plan& p) {
        if (p.c) cublasLtMatrixLayoutDestroy(p.c);
        if (p.b) cublasLtMatrixLayoutDestroy(p.b);
        if (p.a) cublasLtMatrixLayoutDestroy(p.a);
        if (p.desc) cublasLtMatmulDescDestroy(p.desc);
    }

    const Plan& plan(int64_t N, int64_t K, int64_t OC, uint32_t ax, uint32_t aw, uint32_t ao) {
        for (const Plan& p : plans)
            if (p.N == N && p.K == K && p.OC == OC && p.align_x == ax && p.align_w == aw &&
                p.align_out == ao)
                return p;
        Plan p;
        p.N = N, p.K = K, p.OC = OC, p.align_x = ax, p.align_w = aw, p.align_out = ao;
        try {
            // outᵀ[OC, N] = op(A) · B with A = W stored column-major as [K, OC] (op T) and
            // B = xᵀ stored as [K, N]: both K-major, the "TN" form int8 needs.
            check_lt(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32I, CUDA_R_32I),
                     "cublasLtMatmulDescCreate");
            const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
            check_lt(
                cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta),
                "set TRANSA");
            check_lt(
                cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb),
                "set TRANSB");
            const auto u = [](int64_t v) { return static_cast<uint64_t>(v); };
            check_lt(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_8I, u(K), u(OC), K),
                     "cublasLtMatrixLayoutCreate (weights)");
            check_lt(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_8I, u(K), u(N), K),
                     "cublasLtMatrixLayoutCreate (activations)");
            check_lt(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32I, u(OC), u(N), OC),
                     "cublasLtMatrixLayoutCreate (output)");
            cublasLtMatmulPreference_t pref = nullptr;
            check_lt(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
            const uint64_t ws = workspace_bytes;
            cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
                pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
            const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligns[] = {
                {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, aw},
                {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, ax},
                {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, ao},
                {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, ao}};
            for (const auto& [attr, value] : aligns)
                if (st == CUBLAS_STATUS_SUCCESS)
                    st = cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof value);
            cublasLtMatmulHeuristicResult_t result{};
            int found = 0;
            if (st == CUBLAS_STATUS_SUCCESS)
                st = cublasLtMatmulAlgoGetHeuristic(handle, p.desc, p.a, p.b, p.c, p.c, pref, 1,
                                                    &result, &found);
            cublasLtMatmulPreferenceDestroy(pref);
            check_lt(st, "cublasLtMatmulAlgoGetHeuristic");
            check(found > 0, ErrorKind::kUnsupported,
                  "CUDA: int8 product: cuBLASLt has no algorithm for {}x{}x{}", N, K, OC);
            p.algo = result.algo;
        } catch (...) {
            destroy(p);
            throw;
        }
        plans.push_back(p);
        return plans.back();
    }
};

Int8Gemm::Int8Gemm(void* workspace, size_t bytes) : impl_(std::make_unique<Impl>()) {
    check_lt(cublasLtCreate(&impl_->handle), "cublasLtCreate");
    impl_->workspace = workspace;
    impl_->workspace_bytes = workspace ? bytes : 0;
}

Int8Gemm::~Int8Gemm() = default;

bool Int8Gemm::supported(int64_t N, int64_t K, int64_t OC) {
    return N >= 1 && K >= 16 && OC >= 16 && K % 16 == 0 && OC % 16 == 0 && N <= INT_MAX &&
           K <= INT_MAX && OC <= INT_MAX;
}

void Int8Gemm::run(int32_t* out, const int8_t* x, const int8_t* w, int64_t N, int64_t K, int64_t OC,
                   const Stream& stream) {
    check(supported(N, K, OC), ErrorKind::kInvalidArgument,
          "CUDA: int8 product {}x{}x{}: needs K and OC multiples of 16 (use the bf16 product)", N,
          K, OC);
    check(out && x && w && detail::aligned(out, 16) && detail::aligned(x, 16) &&
              detail::aligned(w, 16),
          ErrorKind::kInvalidArgument, "CUDA: int8 product: null or not 16-byte aligned buffers");
    const Impl::Plan& p = impl_->plan(N, K, OC, alignment(x), alignment(w), alignment(out));
    const int32_t alpha = 1, beta = 0;
    check_lt(
        cublasLtMatmul(impl_->handle, p.desc, &alpha, w, p.a, x, p.b, &beta, out, p.c, out, p.c,
                       &p.algo, impl_->workspace, impl_->workspace_bytes, detail::raw(stream)),
        "cublasLtMatmul");
}

}  // namespace bitttt::cuda
