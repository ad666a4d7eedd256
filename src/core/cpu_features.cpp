#include "core/cpu_features.hpp"

#include <cpuid.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "core/error.hpp"

namespace bitttt {
namespace {

struct CpuidRegs {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
};

CpuidRegs cpuid(unsigned leaf, unsigned subleaf = 0) {
    CpuidRegs r;
    __cpuid_count(leaf, subleaf, r.eax, r.ebx, r.ecx, r.edx);
    return r;
}

// XCR0 tells which register states the OS saves; AVX needs bits 1-2, AVX-512 bits 5-7 too.
unsigned long long xgetbv0() {
    unsigned eax = 0, edx = 0;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (static_cast<unsigned long long>(edx) << 32) | eax;
}

Isa detect() {
    if (__get_cpuid_max(0, nullptr) < 7) return Isa::kScalar;
    CpuidRegs l1 = cpuid(1);
    bool osxsave = l1.ecx & (1u << 27);
    if (!osxsave) return Isa::kScalar;
    unsigned long long xcr0 = xgetbv0();
    bool ymm_state = (xcr0 & 0x6) == 0x6;
    bool zmm_state = (xcr0 & 0xe6) == 0xe6;
    bool fma = l1.ecx & (1u << 12);
    bool f16c = l1.ecx & (1u << 29);
    CpuidRegs l7 = cpuid(7, 0);
    bool avx2 = l7.ebx & (1u << 5);
    bool bmi2 = l7.ebx & (1u << 8);
    bool avx512f = l7.ebx & (1u << 16);
    bool avx512dq = l7.ebx & (1u << 17);
    bool avx512bw = l7.ebx & (1u << 30);
    bool avx512vl = l7.ebx & (1u << 31);
    bool avx512vnni = l7.ecx & (1u << 11);
    if (!(ymm_state && avx2 && fma && f16c && bmi2)) return Isa::kScalar;
    if (zmm_state && avx512f && avx512dq && avx512bw && avx512vl && avx512vnni) return Isa::kAvx512;
    return Isa::kAvx2;
}

bool detect_avx512_bf16() {
    if (detected_isa() != Isa::kAvx512) return false;
    if (cpuid(7, 0).eax < 1) return false;  // no subleaf 1
    return cpuid(7, 1).eax & (1u << 5);
}

Isa initial_active_isa() {
    Isa best = detected_isa();
    const char* forced = std::getenv("BITTTT_ISA");
    if (!forced || !*forced) return best;
    Isa want = parse_isa(forced);
    check(want <= best, ErrorKind::kUnsupported,
          "BITTTT_ISA={} asks for more than this CPU has ({})", forced, isa_name(best));
    return want;
}

std::atomic<int>& active_isa_slot() {
    static std::atomic<int> slot{static_cast<int>(initial_active_isa())};
    return slot;
}

}  // namespace

std::string_view isa_name(Isa isa) {
    switch (isa) {
        case Isa::kScalar:
            return "scalar";
        case Isa::kAvx2:
            return "avx2";
        case Isa::kAvx512:
            return "avx512";
    }
    return "unknown";
}

Isa parse_isa(std::string_view name) {
    if (name == "scalar") return Isa::kScalar;
    if (name == "avx2") return Isa::kAvx2;
    if (name == "avx512") return Isa::kAvx512;
    fail(ErrorKind::kInvalidArgument, "unknown ISA '{}' (expected scalar, avx2 or avx512)", name);
}

Isa detected_isa() {
    static const Isa isa = detect();
    return isa;
}

Isa active_isa() {
    return static_cast<Isa>(active_isa_slot().load(std::memory_order_relaxed));
}

void set_active_isa(Isa isa) {
    check(isa <= detected_isa(), ErrorKind::kUnsupported,
          "ISA {} is not available on this CPU ({})", isa_name(isa), isa_name(detected_isa()));
    active_isa_slot().store(static_cast<int>(isa), std::memory_order_relaxed);
}

std::string cpu_model_name() {
    if (__get_cpuid_max(0x80000000, nullptr) < 0x80000004) return "unknown x86-64";
    char brand[49] = {};
    for (unsigned i = 0; i < 3; ++i) {
        CpuidRegs r = cpuid(0x80000002 + i);
        std::memcpy(brand + 16 * i, &r, 16);
    }
    std::string s(brand);
    auto first = s.find_first_not_of(' ');
    auto last = s.find_last_not_of(' ');
    return first == std::string::npos ? "unknown x86-64" : s.substr(first, last - first + 1);
}

bool has_avx512_bf16() {
    static const bool has = detect_avx512_bf16();
    return has;
}

}  // namespace bitttt
