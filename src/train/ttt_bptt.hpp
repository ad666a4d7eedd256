// The TTT recurrence of training, forward and backward through every state W_t (BPTT).
//
// Both rules of DESIGN.md §2.2/§2.3 are one delta rule per head (§2.3a), with the state
// W ∈ R^{Dh×Dh} (row-major, W[i][j]), W_0 = 0 for every sequence, and per token t:
//     e_t = W_{t-1} k_t − v_t
//     W_t = W_{t-1} − η_t e_t k_tᵀ           (a gradient step on ½‖W k − v‖²)
//     y_t = W_{t-1} q_t   (read_before: `reconstruct`, with q = k = v = f̂ and η = inner_lr)
//     y_t = W_t q_t       (otherwise: `delta`, with q̂, k̂, v and a learned η_t per head)
// Backward, with G = ∂L/∂W_t carried from the future (G = 0 after the last token):
//     read after:  G += dy qᵀ,  dq += W_tᵀ dy
//     u = G k;  dη −= eᵀu;  dv += η u;  dk −= η (Gᵀe + W_{t-1}ᵀ u);  G ← G − η u kᵀ
//     read before: G += dy qᵀ,  dq += W_{t-1}ᵀ dy        (now G = ∂L/∂W_{t-1})
// The forward stores W at the start of every chunk of `chunk` tokens; the backward recomputes the
// chunk's states from there (memory B·H·T/chunk·Dh² instead of B·H·T·Dh²).
//
// Layout: q, k, v, y, dq, dk, dv are [B·T, H·Dh] (head h in columns h·Dh ..); eta, deta [B·T, H].
// eta = nullptr means the constant eta_const (and deta is ignored). q, k, v may alias each other
// (reconstruct), and so may dq, dk, dv: gradients are accumulated (+=).
#pragma once

#include <cstdint>

namespace bitttt::train {

struct TttScanShape {
    int64_t B = 1, T = 1, H = 1, Dh = 1;
    bool read_before = true;  // reconstruct: the output is read before the update
    int64_t chunk = 16;       // tokens between stored states
    int64_t chunks() const { return (T + chunk - 1) / chunk; }
    int64_t checkpoint_floats() const { return B * H * chunks() * Dh * Dh; }
};

template <typename T>
void ttt_scan_forward(T* y, T* checkpoints, const T* q, const T* k, const T* v, const T* eta,
                      T eta_const, const TttScanShape& s);

template <typename T>
void ttt_scan_backward(T* dq, T* dk, T* dv, T* deta, const T* dy, const T* checkpoints, const T* q,
                       const T* k, const T* v, const T* eta, T eta_const, const TttScanShape& s);

}  // namespace bitttt::train
