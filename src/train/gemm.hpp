// The dense matrix products of training (fp32, and fp64 for the gradient checks).
//
// Every product is written as C += alpha · A · B with B row-major, so the innermost loop is an
// axpy over a contiguous row of B and C: it vectorizes without reassociating any sum, and each
// element of C is summed by one thread in a fixed order, so results do not depend on the thread
// count (training resumes bit for bit).
#pragma once

#include <cstdint>

namespace bitttt::train {

// C[m, n] (+)= alpha · Σ_k A(i, k) · B[k, n] for i < m, n < nc, with A(i, k) = a[i*a_rs + k*a_cs]
// (row-major A: a_rs = K, a_cs = 1; transposed A: a_rs = 1, a_cs = M). B is row-major [K, nc],
// C row-major [m, nc]. accumulate = false overwrites C.
template <typename T>
void gemm(T* c, const T* a, int64_t a_rs, int64_t a_cs, const T* b, int64_t m, int64_t nc,
          int64_t k, T alpha, bool accumulate);

// Dispatches on active_isa(): fp32 uses an AVX-512 register-tiled kernel where available
// (FMA: its roundings differ from the portable loop's, so results agree to float tolerance).

// The AVX-512 kernel copies a long-rowed B strip and a transposed A block into small contiguous
// buffers (on by default); off reads them in place. Both give the same bits (tests, benchmarks).
void set_gemm_packing(bool on);

// The obvious triple loop (the reference gemm is tested against).
template <typename T>
void gemm_reference(T* c, const T* a, int64_t a_rs, int64_t a_cs, const T* b, int64_t m, int64_t nc,
                    int64_t k, T alpha, bool accumulate);

// out[rows, cols] = inp[cols, rows]ᵀ (row-major), multi-threaded.
template <typename T>
void transpose(T* out, const T* inp, int64_t rows, int64_t cols);

}  // namespace bitttt::train
