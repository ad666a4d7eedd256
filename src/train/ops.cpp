// The training ops of ops.hpp: plain loops, OpenMP over rows (or over columns where a gradient
// sums over rows, so every sum has one fixed order whatever the thread count).
#include "train/ops.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "train/gemm.hpp"

namespace bitttt::train {

// Below this many elements a loop runs on one thread: waking the team costs more than the work
// (and far more on a machine whose cores are busy).
constexpr int64_t kParallelMin = 1 << 15;

template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) if (N * C > kParallelMin)
    for (int64_t n = 0; n < N; ++n)
        std::memcpy(out + n * C, wte + static_cast<int64_t>(tokens[n]) * C, sizeof(T) * C);
}

template <typename T>
void embedding_backward(T* dwte, const T* dout, const int32_t* tokens, int64_t N, int64_t C) {
    // Rows of dwte repeat across tokens: run serially over n (cheap: N·C adds).
    for (int64_t n = 0; n < N; ++n) {
        T* row = dwte + static_cast<int64_t>(tokens[n]) * C;
        const T* d = dout + n * C;
        for (int64_t c = 0; c < C; ++c) row[c] += d[c];
    }
}

template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* weight, int64_t N, int64_t C, T eps) {
#pragma omp parallel for schedule(static) if (N * C > kParallelMin)
    for (int64_t n = 0; n < N; ++n) {
        const T* x = inp + n * C;
        T* y = out + n * C;
        double ss = 0.0;
        for (int64_t c = 0; c < C; ++c) ss += static_cast<double>(x[c]) * x[c];
        const T r = T(1) / std::sqrt(static_cast<T>(ss / static_cast<double>(C)) + eps);
        if (weight)
            for (int64_t c = 0; c < C; ++c) y[c] = x[c] * r * weight[c];
        else
            for (int64_t c = 0; c < C; ++c) y[c] = x[c] * r;
        rstd[n] = r;
    }
}

template <typename T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight,
                      const T* rstd, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) if (N * C > kParallelMin)
    for (int64_t n = 0; n < N; ++n) {
        const T* x = inp + n * C;
        const T* dy = dout + n * C;
        T* dx = dinp + n * C;
        const T r = rstd[n];
        double dot = 0.0;  // Σ_j w_j dy_j x_j
        for (int64_t c = 0; c < C; ++c)
            dot += static_cast<double>(weight ? weight[c] : T(1)) * dy[c] * x[c];
        const T k = static_cast<T>(dot / static_cast<double>(C)) * r * r;
        for (int64_t c = 0; c < C; ++c)
            dx[c] += r * ((weight ? weight[c] : T(1)) * dy[c] - x[c] * k);
    }
    if (!dweight) return;
#pragma omp parallel for schedule(static) if (N * C > kParallelMin)
    for (int64_t c = 0; c < C; ++c) {
        T sum = 0;
        for (int64_t n = 0; n < N; ++n) sum += dout[n * C + c] * inp[n * C + c] * rstd[n];
        dweight[c] += sum;
    }
}

template <typename T>
void l2norm_forward(T* out, T* norm, const T* inp, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) if (N * C > kParallelMin)
    for (int64_t n = 0; n < N; ++n) {
        const T* x = inp + n * C;
        double ss = 0.0;
        for (int64_t c = 0; c < C; ++c) ss += static_cast<double>(x[c]) * x[c];
        const T nrm = static_cast<T>(std::sqrt(ss));
        const T inv = T(1) / (nrm + T(1e-6));
        for (int64_t c = 0; c < C; ++c) out[n * C + c] = x[c] * inv;
        norm[n] = nrm;
    }
}

template <typename T>
void l2norm_backward(T* dinp, const T* dout, const T* inp, const T* norm, int64_t N, int64_t C) {
    // y = x/(n+ε), n = ‖x‖: dx = dy/(n+ε) − x · (xᵀdy) / (n (n+ε)²); the second term is 0 at x = 0.
#pragma omp parallel for schedule(static) if (N * C > kParallelMin)
    for (int64_t n = 0; n < N; ++n) {
        const T* x = inp + n * C;
        const T* dy = dout + n * C;
        const T nrm = norm[n], d = nrm + T(1e-6);
        double xdy = 0.0;
        for (int64_t c = 0; c < C; ++c) xdy += static_cast<double>(x[c]) * dy[c];
        const T k = nrm > T(0) ? static_cast<T>(xdy) / (nrm * d * d) : T(0);
        for (int64_t c = 0; c < C; ++c) dinp[n * C + c] += dy[c] / d - x[c] * k;
    }
}

template <typename T>
void act_quant_forward(T* out, const T* inp, int64_t N, int64_t C, int act_bits) {
    if (act_bits == 0) {
        if (out != inp) std::memcpy(out, inp, sizeof(T) * N * C);
        return;
    }
    // The same operations, in the same precision for fp32, as kernels::quantize_activations.
#pragma omp parallel for schedule(static) if (N * C > kParallelMin)
    for (int64_t n = 0; n < N; ++n) {
        const T* x = inp + n * C;
        T* y = out + n * C;
        T absmax = 0;
        for (int64_t c = 0; c < C; ++c) absmax = std::max(absmax, std::fabs(x[c]));
        const T gamma = std::max(absmax, T(1e-5));
        const T s = T(127) / gamma, back = gamma / T(127);
        for (int64_t c = 0; c < C; ++c)
            y[c] = std::clamp(std::nearbyint(x[c] * s), T(-127), T(127)) * back;
    }
}

template <typename T>
T weight_quant_forward(T* out, const T* w, int64_t n) {
    // As kernels::ternary_scale + quantize_ternary: β from a double sum, round half to even.
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += std::fabs(static_cast<double>(w[i]));
    const T beta = n > 0 ? static_cast<T>(sum / static_cast<double>(n)) : T(0);
    const T denom = beta + T(1e-8);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i)
        out[i] = std::clamp(std::nearbyint(w[i] / denom), T(-1), T(1)) * beta;
    return beta;
}

template <typename T>
void matmul_forward(T* out, const T* inp, const T* weight, const T* bias, int64_t N, int64_t C,
                    int64_t OC, T* scratch) {
    transpose(scratch, weight, C, OC);  // [C, OC]
    gemm(out, inp, C, int64_t{1}, scratch, N, OC, C, T(1), false);
    if (!bias) return;
#pragma omp parallel for schedule(static) if (N * OC > kParallelMin)
    for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < OC; ++o) out[n * OC + o] += bias[o];
}

template <typename T>
void matmul_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                     int64_t N, int64_t C, int64_t OC) {
    if (dinp) gemm(dinp, dout, OC, int64_t{1}, weight, N, C, OC, T(1), true);
    // dweight[OC, C] += doutᵀ · inp: A = dout read transposed.
    gemm(dweight, dout, int64_t{1}, OC, inp, OC, C, N, T(1), true);
    if (!dbias) return;
    for (int64_t o = 0; o < OC; ++o) {
        T sum = 0;
        for (int64_t n = 0; n < N; ++n) sum += dout[n * OC + o];
        dbias[o] += sum;
    }
}

template <typename T>
static inline T sigmoid(T x) {
    return T(1) / (T(1) + std::exp(-x));
}

template <typename T>
void swiglu_forward(T* out, const T* gate, const T* up, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) out[i] = gate[i] * sigmoid(gate[i]) * up[i];
}

template <typename T>
void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) {
        const T g = gate[i], s = sigmoid(g);
        dgate[i] += dout[i] * up[i] * s * (T(1) + g * (T(1) - s));
        dup[i] += dout[i] * g * s;
    }
}

template <typename T>
void sigmoid_scale_forward(T* out, const T* inp, int64_t n, T scale) {
    for (int64_t i = 0; i < n; ++i) out[i] = scale * sigmoid(inp[i]);
}

template <typename T>
void sigmoid_scale_backward(T* dinp, const T* dout, const T* inp, int64_t n, T scale) {
    for (int64_t i = 0; i < n; ++i) {
        const T s = sigmoid(inp[i]);
        dinp[i] += dout[i] * scale * s * (T(1) - s);
    }
}

template <typename T>
void residual_forward(T* out, const T* a, const T* b, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

template <typename T>
double crossentropy_forward(T* losses, T* logits, const int32_t* targets, int64_t N, int64_t V) {
#pragma omp parallel for schedule(static) if (N * V > kParallelMin)
    for (int64_t n = 0; n < N; ++n) {
        T* z = logits + n * V;
        T mx = z[0];
        for (int64_t v = 1; v < V; ++v) mx = std::max(mx, z[v]);
        // −log p_target = log Σ exp(z − mx) − (z_target − mx): no log of an underflowed p.
        const T target_shifted = z[targets[n]] - mx;
        double sum = 0.0;
        for (int64_t v = 0; v < V; ++v) {
            z[v] = std::exp(z[v] - mx);
            sum += z[v];
        }
        const T inv = static_cast<T>(1.0 / sum);
        for (int64_t v = 0; v < V; ++v) z[v] *= inv;
        losses[n] = static_cast<T>(std::log(sum)) - target_shifted;
    }
    double total = 0.0;
    for (int64_t n = 0; n < N; ++n) total += losses[n];
    return total / static_cast<double>(N);
}

template <typename T>
void crossentropy_backward(T* dlogits, const T* probs, const int32_t* targets, int64_t N, int64_t V,
                           T dloss) {
#pragma omp parallel for schedule(static) if (N * V > kParallelMin)
    for (int64_t n = 0; n < N; ++n) {
        for (int64_t v = 0; v < V; ++v) dlogits[n * V + v] = probs[n * V + v] * dloss;
        dlogits[n * V + targets[n]] -= dloss;
    }
}

#define BITTTT_INSTANTIATE(T)                                                                    \
    template void embedding_forward<T>(T*, const int32_t*, const T*, int64_t, int64_t);          \
    template void embedding_backward<T>(T*, const T*, const int32_t*, int64_t, int64_t);         \
    template void rmsnorm_forward<T>(T*, T*, const T*, const T*, int64_t, int64_t, T);           \
    template void rmsnorm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int64_t,   \
                                      int64_t);                                                  \
    template void l2norm_forward<T>(T*, T*, const T*, int64_t, int64_t);                         \
    template void l2norm_backward<T>(T*, const T*, const T*, const T*, int64_t, int64_t);        \
    template void act_quant_forward<T>(T*, const T*, int64_t, int64_t, int);                     \
    template T weight_quant_forward<T>(T*, const T*, int64_t);                                   \
    template void matmul_forward<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, \
                                    T*);                                                         \
    template void matmul_backward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, \
                                     int64_t);                                                   \
    template void swiglu_forward<T>(T*, const T*, const T*, int64_t);                            \
    template void swiglu_backward<T>(T*, T*, const T*, const T*, const T*, int64_t);             \
    template void sigmoid_scale_forward<T>(T*, const T*, int64_t, T);                            \
    template void sigmoid_scale_backward<T>(T*, const T*, const T*, int64_t, T);                 \
    template void residual_forward<T>(T*, const T*, const T*, int64_t);                          \
    template double crossentropy_forward<T>(T*, T*, const int32_t*, int64_t, int64_t);           \
    template void crossentropy_backward<T>(T*, const T*, const int32_t*, int64_t, int64_t, T);
BITTTT_INSTANTIATE(float)
BITTTT_INSTANTIATE(double)
#undef BITTTT_INSTANTIATE

}  // namespace bitttt::train
