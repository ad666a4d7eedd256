// gemm_bf16 with vdpbf16ps (AVX512_BF16: Zen 4, Sapphire Rapids and later); called only when
// has_avx512_bf16().
#include "train/gemm_bf16_tile.hpp"

namespace bitttt::train {
namespace {
struct NativeDot {
    static __m512 step(__m512 acc, __m512i a, __m512i b) {
        return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
    }
};
}  // namespace

void gemm_bf16_native(float* c, const Bf16Panels& a, const Bf16Panels& b, float alpha,
                      bool accumulate) {
    bf16_detail::gemm_bf16_tiles<NativeDot>(c, a, b, alpha, accumulate);
}

}  // namespace bitttt::train
