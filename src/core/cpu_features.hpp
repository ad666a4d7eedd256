// Run-time CPU feature detection and the ISA level the kernels dispatch on.
#pragma once

#include <string>
#include <string_view>

namespace bitttt {

// Ordered: each level implies the ones below it.
enum class Isa {
    kScalar = 0,  // portable C++, the reference every other level is tested against
    kAvx2 = 1,    // AVX2 + FMA (maddubs for u8 x s8 dot products)
    kAvx512 = 2,  // AVX-512 F/BW/VL/DQ + VNNI (vpdpbusd)
};

std::string_view isa_name(Isa isa);
// Parses "scalar", "avx2", "avx512"; throws Error on anything else.
Isa parse_isa(std::string_view name);

// Best level this CPU (and OS, for the AVX-512 register state) supports.
Isa detected_isa();

// AVX512_BF16 (vdpbf16ps: Zen 4, Sapphire Rapids and later) on top of the kAvx512 level; the
// bf16 GEMV uses it when the active level is kAvx512 (bf16_matmul.hpp).
bool has_avx512_bf16();

// Level the kernels use: the detected one, lowered by the BITTTT_ISA environment variable or
// by set_active_isa(). Asking for a level above the detected one is an error.
Isa active_isa();
void set_active_isa(Isa isa);

// "AMD EPYC 9R14 ..." from CPUID's brand string, for benchmark reports.
std::string cpu_model_name();

}  // namespace bitttt
