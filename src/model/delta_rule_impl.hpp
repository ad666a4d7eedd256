// The row loop of the delta-rule scan (internal), shared by every ISA: Ops supplies the two
// vector primitives of a row step, compiled in each ISA's translation unit.
//     Ops::dot(a, b, n)             = Σ a[j] b[j]
//     Ops::axpy_dot(w, c, k, q, n)  : w += c·k, then returns Σ w[j] q[j] (one pass over w)
//     Ops::axpy(w, c, k, n)         : w += c·k
#pragma once

#include "core/team.hpp"
#include "model/delta_rule.hpp"

namespace bitttt::detail {

template <class Ops>
void delta_rule_scan_rows(const DeltaRuleScan& a) {
    const int64_t dh = a.head_dim;
    const int64_t first = a.row_begin, rows = (a.row_end < 0 ? a.heads * dh : a.row_end) - first;
    // Threads only pay off past a few tens of thousands of flops per call (OpenMP's fork/join
    // costs about a microsecond).
    const bool parallel = rows * dh * a.tokens >= (int64_t{1} << 16);
    parallel_for(rows, parallel, [&](int64_t row) {
        const int64_t r = first + row;
        const int64_t h = r / dh, i = r % dh, off = h * dh;
        float* wr = a.w + r * dh;  // head h's row i: (h * dh + i) * dh
        for (int64_t t = 0; t < a.tokens; ++t) {
            const float* k = a.k + t * a.k_stride + off;
            const float* q = a.q ? a.q + t * a.q_stride + off : k;
            const float z = Ops::dot(wr, k, dh);
            const float c = -a.eta[t * a.eta_stride + h] * (z - a.v[t * a.v_stride + off + i]);
            float* o = a.out + t * a.out_stride + off + i;
            if (a.read_after_update) {
                *o = Ops::axpy_dot(wr, c, k, q, dh);
            } else {
                *o = a.q ? Ops::dot(wr, q, dh) : z;
                Ops::axpy(wr, c, k, dh);
            }
        }
    });
}

}  // namespace bitttt::detail
