// BPTT through the TTT recurrence (see ttt_bptt.hpp for the math). One (sequence, head) pair per
// OpenMP iteration: the pairs are independent, and each writes its own rows and columns.
#include "train/ttt_bptt.hpp"

#include <algorithm>
#include <vector>

namespace bitttt::train {
namespace {

// out = W x (W: d×d row-major).
template <typename T>
void matvec(T* out, const T* w, const T* x, int64_t d) {
    for (int64_t i = 0; i < d; ++i) {
        T sum = 0;
        for (int64_t j = 0; j < d; ++j) sum += w[i * d + j] * x[j];
        out[i] = sum;
    }
}

// out += Wᵀ x, as axpys over rows of W.
template <typename T>
void matvec_t_acc(T* out, const T* w, const T* x, int64_t d) {
    for (int64_t i = 0; i < d; ++i) {
        const T xi = x[i];
        for (int64_t j = 0; j < d; ++j) out[j] += xi * w[i * d + j];
    }
}

// W += alpha · a bᵀ.
template <typename T>
void rank1(T* w, T alpha, const T* a, const T* b, int64_t d) {
    for (int64_t i = 0; i < d; ++i) {
        const T ai = alpha * a[i];
        for (int64_t j = 0; j < d; ++j) w[i * d + j] += ai * b[j];
    }
}

// One forward step in place: W ← W − η (W k − v) kᵀ; e receives W k − v.
template <typename T>
void update(T* w, T* e, const T* k, const T* v, T eta, int64_t d) {
    matvec(e, w, k, d);
    for (int64_t i = 0; i < d; ++i) e[i] -= v[i];
    rank1(w, -eta, e, k, d);
}

}  // namespace

template <typename T>
void ttt_scan_forward(T* y, T* checkpoints, const T* q, const T* k, const T* v, const T* eta,
                      T eta_const, const TttScanShape& s) {
    const int64_t Dh = s.Dh, Dt = s.H * s.Dh, dd = Dh * Dh;
#pragma omp parallel for schedule(static) if (s.B * s.H > 1 && s.T * dd > (1 << 14))
    for (int64_t bh = 0; bh < s.B * s.H; ++bh) {
        const int64_t b = bh / s.H, h = bh % s.H;
        std::vector<T> w(dd, T(0)), e(Dh);
        T* ckpt = checkpoints + bh * s.chunks() * dd;
        for (int64_t t = 0; t < s.T; ++t) {
            if (t % s.chunk == 0) std::copy(w.begin(), w.end(), ckpt + (t / s.chunk) * dd);
            const int64_t row = b * s.T + t, off = row * Dt + h * Dh;
            const T et = eta ? eta[row * s.H + h] : eta_const;
            if (s.read_before) matvec(y + off, w.data(), q + off, Dh);
            update(w.data(), e.data(), k + off, v + off, et, Dh);
            if (!s.read_before) matvec(y + off, w.data(), q + off, Dh);
        }
    }
}

template <typename T>
void ttt_scan_backward(T* dq, T* dk, T* dv, T* deta, const T* dy, const T* checkpoints, const T* q,
                       const T* k, const T* v, const T* eta, T eta_const, const TttScanShape& s) {
    const int64_t Dh = s.Dh, Dt = s.H * s.Dh, dd = Dh * Dh;
#pragma omp parallel for schedule(static) if (s.B * s.H > 1 && s.T * dd > (1 << 14))
    for (int64_t bh = 0; bh < s.B * s.H; ++bh) {
        const int64_t b = bh / s.H, h = bh % s.H;
        std::vector<T> states((s.chunk + 1) * dd), g(dd, T(0)), e(Dh), u(Dh), tmp(Dh);
        const T* ckpt = checkpoints + bh * s.chunks() * dd;
        for (int64_t c = s.chunks() - 1; c >= 0; --c) {
            const int64_t t0 = c * s.chunk, t1 = std::min(s.T, t0 + s.chunk);
            // Recompute W_{t0} .. W_{t1} (states[i] = W before token t0 + i).
            std::copy(ckpt + c * dd, ckpt + (c + 1) * dd, states.begin());
            for (int64_t t = t0; t < t1; ++t) {
                const int64_t i = t - t0, off = (b * s.T + t) * Dt + h * Dh;
                const T et = eta ? eta[(b * s.T + t) * s.H + h] : eta_const;
                T* next = states.data() + (i + 1) * dd;
                std::copy(states.data() + i * dd, states.data() + (i + 1) * dd, next);
                update(next, e.data(), k + off, v + off, et, Dh);
            }
            for (int64_t t = t1 - 1; t >= t0; --t) {
                const int64_t i = t - t0, row = b * s.T + t, off = row * Dt + h * Dh;
                const T et = eta ? eta[row * s.H + h] : eta_const;
                const T* w_prev = states.data() + i * dd;
                const T* w_next = states.data() + (i + 1) * dd;
                const T *qt = q + off, *kt = k + off, *vt = v + off, *dyt = dy + off;
                if (!s.read_before) {
                    rank1(g.data(), T(1), dyt, qt, Dh);
                    matvec_t_acc(dq + off, w_next, dyt, Dh);
                }
                matvec(e.data(), w_prev, kt, Dh);
                for (int64_t j = 0; j < Dh; ++j) e[j] -= vt[j];
                matvec(u.data(), g.data(), kt, Dh);
                if (deta && eta) {
                    T eu = 0;
                    for (int64_t j = 0; j < Dh; ++j) eu += e[j] * u[j];
                    deta[row * s.H + h] -= eu;
                }
                for (int64_t j = 0; j < Dh; ++j) dv[off + j] += et * u[j];
                std::fill(tmp.begin(), tmp.end(), T(0));
                matvec_t_acc(tmp.data(), g.data(), e.data(), Dh);
                matvec_t_acc(tmp.data(), w_prev, u.data(), Dh);
                for (int64_t j = 0; j < Dh; ++j) dk[off + j] -= et * tmp[j];
                rank1(g.data(), -et, u.data(), kt, Dh);
                if (s.read_before) {
                    rank1(g.data(), T(1), dyt, qt, Dh);
                    matvec_t_acc(dq + off, w_prev, dyt, Dh);
                }
            }
        }
    }
}

#define BITTTT_INSTANTIATE(T)                                                                  \
    template void ttt_scan_forward<T>(T*, T*, const T*, const T*, const T*, const T*, T,       \
                                      const TttScanShape&);                                    \
    template void ttt_scan_backward<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*, \
                                       const T*, const T*, T, const TttScanShape&);
BITTTT_INSTANTIATE(float)
BITTTT_INSTANTIATE(double)
#undef BITTTT_INSTANTIATE

}  // namespace bitttt::train
