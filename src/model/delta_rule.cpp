// The delta-rule scan: argument checks, scalar reference, ISA dispatch.
#include "model/delta_rule.hpp"

#include "core/cpu_features.hpp"
#include "core/error.hpp"
#include "model/delta_rule_impl.hpp"

namespace bitttt {
namespace {

struct ScalarOps {
    static float dot(const float* a, const float* b, int64_t n) {
        float s = 0.0f;
        for (int64_t j = 0; j < n; ++j) s += a[j] * b[j];
        return s;
    }
    static void axpy(float* w, float c, const float* k, int64_t n) {
        for (int64_t j = 0; j < n; ++j) w[j] += c * k[j];
    }
    static float axpy_dot(float* w, float c, const float* k, const float* q, int64_t n) {
        axpy(w, c, k, n);
        return dot(w, q, n);
    }
};

void check_scan(const DeltaRuleScan& a) {
    check(a.heads >= 1 && a.head_dim >= 1 && a.tokens >= 0, ErrorKind::kInvalidArgument,
          "delta_rule_scan: bad shape (heads {}, head_dim {}, tokens {})", a.heads, a.head_dim,
          a.tokens);
    if (a.tokens == 0) return;
    check(a.w && a.k && a.v && a.eta && a.out, ErrorKind::kInvalidArgument,
          "delta_rule_scan: null state, input or output");
    check(a.row_begin >= 0 && a.row_begin <= a.heads * a.head_dim &&
              (a.row_end < 0 || (a.row_end >= a.row_begin && a.row_end <= a.heads * a.head_dim)),
          ErrorKind::kInvalidArgument, "delta_rule_scan: rows [{}, {}) out of range", a.row_begin,
          a.row_end);
    check(a.heads == 1 || a.eta_stride >= a.heads, ErrorKind::kDimensionMismatch,
          "delta_rule_scan: eta stride {} for {} heads", a.eta_stride, a.heads);
}

}  // namespace

void delta_rule_scan_scalar(const DeltaRuleScan& scan) {
    check_scan(scan);
    detail::delta_rule_scan_rows<ScalarOps>(scan);
}

void delta_rule_scan(const DeltaRuleScan& scan) {
    check_scan(scan);
    switch (active_isa()) {
        case Isa::kAvx512:
            return delta_rule_scan_avx512(scan);
        case Isa::kAvx2:
            return delta_rule_scan_avx2(scan);
        case Isa::kScalar:
            break;
    }
    detail::delta_rule_scan_rows<ScalarOps>(scan);
}

}  // namespace bitttt
