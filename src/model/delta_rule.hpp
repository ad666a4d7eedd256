// The TTT recurrence of both rules (DESIGN.md §2.2, §2.3) as one delta-rule scan over a sequence.
//
// Per head, with state W (Dh x Dh), unit-norm keys k̂_t, values v_t, queries q̂_t and a step η_t:
//     W_t = W_{t-1} − η_t (W_{t-1} k̂_t − v_t) k̂_tᵀ
//     o_t = W_t q̂_t        (read after the update: the `delta` rule)
//     o_t = W_{t-1} q̂_t    (read before the update: the `reconstruct` rule, q = k = v = f̂, η fixed)
//
// Row i of W only ever needs row i: z_i = W_i · k̂, W_i ← W_i − η (z_i − v_i) k̂, o_i = W_i · q̂.
// So the rows are independent recurrences. The scan keeps W row-major and runs row after row,
// each row over all tokens while it sits in L1, with the rows split over OpenMP threads: one
// pass over W per call, parallel even for a single decode token (a 7B-class Dt = 1024 state
// is 4 MiB per layer). The model's state file stores W in the same row-major order.
//
// (kernels/cpu/ttt_scan.hpp implements the `reconstruct` rule alone, token after token on
// S = Wᵀ; the model uses this scan for both rules, one layout and one threading scheme, and the
// tests check the two agree.)
#pragma once

#include <cstdint>

namespace bitttt {

struct DeltaRuleScan {
    float* w = nullptr;  // [heads, dh, dh]: W of each head, row-major, updated in place
    int64_t heads = 1;
    int64_t head_dim = 0;  // Dh
    int64_t tokens = 0;
    // Token t's vectors start at ptr + t * stride, heads concatenated (head h at offset h * Dh).
    const float* k = nullptr;  // keys, unit norm per head
    int64_t k_stride = 0;
    const float* v = nullptr;  // values (the targets W k̂ is pulled toward)
    int64_t v_stride = 0;
    const float* q = nullptr;  // queries, unit norm per head; null: q = k
    int64_t q_stride = 0;
    const float* eta = nullptr;  // step of token t, head h at eta[t * eta_stride + h]
    int64_t eta_stride = 0;      // 0 with one head: one step for every token
    bool read_after_update = true;
    float* out = nullptr;  // o_t; must not alias k, v or q (other rows still read them)
    int64_t out_stride = 0;
    // Only rows [row_begin, row_end) of the heads x Dh rows (all when row_end < 0): a thread of a
    // team runs its share of the independent row recurrences (core/team.hpp).
    int64_t row_begin = 0;
    int64_t row_end = -1;
};

// Runs the scan; dispatches on active_isa(). Allocates nothing.
void delta_rule_scan(const DeltaRuleScan& scan);
// The scalar reference every ISA version is tested against.
void delta_rule_scan_scalar(const DeltaRuleScan& scan);
// Per-ISA versions (internal; call delta_rule_scan).
void delta_rule_scan_avx2(const DeltaRuleScan& scan);
void delta_rule_scan_avx512(const DeltaRuleScan& scan);

}  // namespace bitttt
