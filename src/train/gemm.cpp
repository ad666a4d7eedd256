// Cache-blocked GEMM: tiles of kRows rows × kCols columns of C are summed in a small local block
// (stays in L1) while k runs over the whole depth; B's column strip is shared by the tile's rows.
#include "train/gemm.hpp"

#include <algorithm>
#include <type_traits>

#include "core/cpu_features.hpp"

namespace bitttt::train {
namespace {
constexpr int64_t kRows = 4;
constexpr int64_t kCols = 128;
}  // namespace

template <typename T>
void gemm_reference(T* c, const T* a, int64_t a_rs, int64_t a_cs, const T* b, int64_t m, int64_t nc,
                    int64_t k, T alpha, bool accumulate) {
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < nc; ++j) {
            T sum = 0;
            for (int64_t p = 0; p < k; ++p) sum += a[i * a_rs + p * a_cs] * b[p * nc + j];
            c[i * nc + j] = (accumulate ? c[i * nc + j] : T(0)) + alpha * sum;
        }
}

// gemm_avx512.cpp (compiled with AVX-512 flags, called only when the CPU has them).
void gemm_f32_avx512(float* c, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                     int64_t m, int64_t nc, int64_t k, float alpha, bool accumulate, bool packing);

namespace {
bool g_packing = true;
}  // namespace

void set_gemm_packing(bool on) {
    g_packing = on;
}

template <typename T>
void gemm(T* c, const T* a, int64_t a_rs, int64_t a_cs, const T* b, int64_t m, int64_t nc,
          int64_t k, T alpha, bool accumulate) {
    if constexpr (std::is_same_v<T, float>) {
        if (active_isa() >= Isa::kAvx512)
            return gemm_f32_avx512(c, a, a_rs, a_cs, b, m, nc, k, alpha, accumulate, g_packing);
    }
    const int64_t row_tiles = (m + kRows - 1) / kRows;
    const int64_t col_tiles = (nc + kCols - 1) / kCols;
#pragma omp parallel for schedule(static) if (m * nc * k > (1 << 17))
    for (int64_t tile = 0; tile < row_tiles * col_tiles; ++tile) {
        const int64_t i0 = (tile / col_tiles) * kRows, j0 = (tile % col_tiles) * kCols;
        const int64_t rows = std::min(kRows, m - i0), cols = std::min(kCols, nc - j0);
        alignas(64) T acc[kRows][kCols] = {};
        if (rows == kRows && cols == kCols) {
            // The hot path: fixed trip counts the compiler unrolls and vectorizes.
            for (int64_t p = 0; p < k; ++p) {
                const T* bp = b + p * nc + j0;
                const T a0 = a[(i0 + 0) * a_rs + p * a_cs], a1 = a[(i0 + 1) * a_rs + p * a_cs];
                const T a2 = a[(i0 + 2) * a_rs + p * a_cs], a3 = a[(i0 + 3) * a_rs + p * a_cs];
                for (int64_t j = 0; j < kCols; ++j) {
                    const T bj = bp[j];
                    acc[0][j] += a0 * bj;
                    acc[1][j] += a1 * bj;
                    acc[2][j] += a2 * bj;
                    acc[3][j] += a3 * bj;
                }
            }
        } else {
            for (int64_t p = 0; p < k; ++p) {
                const T* bp = b + p * nc + j0;
                for (int64_t r = 0; r < rows; ++r) {
                    const T ar = a[(i0 + r) * a_rs + p * a_cs];
                    for (int64_t j = 0; j < cols; ++j) acc[r][j] += ar * bp[j];
                }
            }
        }
        for (int64_t r = 0; r < rows; ++r) {
            T* cr = c + (i0 + r) * nc + j0;
            if (accumulate)
                for (int64_t j = 0; j < cols; ++j) cr[j] += alpha * acc[r][j];
            else
                for (int64_t j = 0; j < cols; ++j) cr[j] = alpha * acc[r][j];
        }
    }
}

template <typename T>
void transpose(T* out, const T* inp, int64_t rows, int64_t cols) {
    // out[r, c] = inp[c, r]; blocks of 32×32 keep both sides in cache.
    constexpr int64_t kB = 32;
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 15))
    for (int64_t r0 = 0; r0 < rows; r0 += kB)
        for (int64_t c0 = 0; c0 < cols; c0 += kB)
            for (int64_t r = r0; r < std::min(rows, r0 + kB); ++r)
                for (int64_t c = c0; c < std::min(cols, c0 + kB); ++c)
                    out[r * cols + c] = inp[c * rows + r];
}

#define BITTTT_INSTANTIATE(T)                                                                     \
    template void gemm<T>(T*, const T*, int64_t, int64_t, const T*, int64_t, int64_t, int64_t, T, \
                          bool);                                                                  \
    template void gemm_reference<T>(T*, const T*, int64_t, int64_t, const T*, int64_t, int64_t,   \
                                    int64_t, T, bool);                                            \
    template void transpose<T>(T*, const T*, int64_t, int64_t);
BITTTT_INSTANTIATE(float)
BITTTT_INSTANTIATE(double)
#undef BITTTT_INSTANTIATE

}  // namespace bitttt::train
