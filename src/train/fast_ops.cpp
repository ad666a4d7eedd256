// Dispatch of fast_ops.hpp: the AVX-512 versions where the CPU has them, else the exact ops.
#include "train/fast_ops.hpp"

#include <cmath>

#include "core/cpu_features.hpp"
#include "train/ops.hpp"

namespace bitttt::train {

// fast_ops_avx512.cpp (compiled with AVX-512 flags).
double crossentropy_forward_avx512(float* losses, float* logits, const int32_t* targets, int64_t N,
                                   int64_t V);
void swiglu_forward_avx512(float* out, const float* gate, const float* up, int64_t n);
void swiglu_backward_avx512(float* dgate, float* dup, const float* dout, const float* gate,
                            const float* up, int64_t n);
void exp_avx512(float* out, const float* x, int64_t n);

namespace {
bool vector_ok() {
    return active_isa() >= Isa::kAvx512;
}
}  // namespace

double crossentropy_forward_fast(float* losses, float* logits, const int32_t* targets, int64_t N,
                                 int64_t V) {
    if (vector_ok()) return crossentropy_forward_avx512(losses, logits, targets, N, V);
    return crossentropy_forward(losses, logits, targets, N, V);
}

void swiglu_forward_fast(float* out, const float* gate, const float* up, int64_t n) {
    if (vector_ok()) return swiglu_forward_avx512(out, gate, up, n);
    swiglu_forward(out, gate, up, n);
}

void swiglu_backward_fast(float* dgate, float* dup, const float* dout, const float* gate,
                          const float* up, int64_t n) {
    if (vector_ok()) return swiglu_backward_avx512(dgate, dup, dout, gate, up, n);
    swiglu_backward(dgate, dup, dout, gate, up, n);
}

void exp_fast(float* out, const float* x, int64_t n) {
    if (vector_ok()) return exp_avx512(out, x, n);
    for (int64_t i = 0; i < n; ++i) out[i] = std::exp(x[i]);
}

}  // namespace bitttt::train
