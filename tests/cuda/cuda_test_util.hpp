// Helpers shared by the GPU tests: skipping without a GPU, host <-> device copies of vectors.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cuda/device.hpp"

namespace bitttt::cuda::test {

// Every GPU test derives from this fixture: without a GPU the test is reported as skipped.
class CudaTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (device_count() == 0) GTEST_SKIP() << "no CUDA GPU on this machine";
    }
};

// A device copy of v (at least 16 bytes, so empty vectors still get a valid pointer).
template <typename T>
DeviceBuffer upload(const std::vector<T>& v) {
    DeviceBuffer buffer(std::max<size_t>(v.size() * sizeof(T), 16));
    buffer.copy_from_host(v.data(), v.size() * sizeof(T));
    return buffer;
}

template <typename T>
std::vector<T> download(const DeviceBuffer& buffer, size_t count) {
    std::vector<T> v(count);
    buffer.copy_to_host(v.data(), count * sizeof(T));
    return v;
}

// Float bit patterns, for bit-exact comparisons that also hold for NaN and signed zeros.
inline uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

}  // namespace bitttt::cuda::test
