// Core utilities: ISA selection, deterministic RNG, aligned buffers.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>

#include "core/aligned_buffer.hpp"
#include "core/cpu_features.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"

namespace bitttt {

TEST(CpuFeatures, ParseIsaRoundTripsAndRejectsUnknown) {
    for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512})
        EXPECT_EQ(parse_isa(isa_name(isa)), isa);
    EXPECT_THROW(parse_isa("sse9"), Error);
}

TEST(CpuFeatures, CannotActivateMoreThanDetected) {
    Isa saved = active_isa();
    set_active_isa(Isa::kScalar);
    EXPECT_EQ(active_isa(), Isa::kScalar);
    if (detected_isa() < Isa::kAvx512) {
        EXPECT_THROW(set_active_isa(Isa::kAvx512), Error);
    }
    set_active_isa(saved);
}

TEST(Rng, SameSeedSameStreamDifferentSeedDifferentStream) {
    Rng a(42), b(42), c(43);
    for (int i = 0; i < 100; ++i) {
        uint64_t va = a.next_u64();
        EXPECT_EQ(va, b.next_u64());
        EXPECT_NE(va, c.next_u64());
    }
}

TEST(Rng, UniformAndNormalHaveTheRightMoments) {
    Rng rng(7);
    const int n = 200000;
    double sum_u = 0, sum_n = 0, sum_n2 = 0;
    for (int i = 0; i < n; ++i) {
        float u = rng.uniform();
        ASSERT_GE(u, 0.0f);
        ASSERT_LT(u, 1.0f);
        sum_u += u;
        double z = rng.normal();
        sum_n += z;
        sum_n2 += z * z;
    }
    EXPECT_NEAR(sum_u / n, 0.5, 0.01);
    EXPECT_NEAR(sum_n / n, 0.0, 0.01);
    EXPECT_NEAR(sum_n2 / n, 1.0, 0.02);
    for (int i = 0; i < 1000; ++i) EXPECT_LT(rng.below(17), 17u);
}

TEST(AlignedBuffer, IsAlignedZeroedAndCopies) {
    AlignedBuffer<float> buf(1000);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(buf.data()) % kAlignment, 0u);
    for (float v : buf) EXPECT_EQ(v, 0.0f);
    buf[3] = 2.5f;
    AlignedBuffer<float> copy = buf;
    EXPECT_EQ(copy[3], 2.5f);
    EXPECT_NE(copy.data(), buf.data());
    AlignedBuffer<float> moved = std::move(copy);
    EXPECT_EQ(moved[3], 2.5f);
}

}  // namespace bitttt
