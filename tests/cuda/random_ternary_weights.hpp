// Random ternary weights for the GPU tests: packed on the host (the CPU kernels' view) with a
// device copy of the codes (the GPU kernels' view), the same matrix for both.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/aligned_buffer.hpp"
#include "core/rng.hpp"
#include "kernels/cpu/ternary.hpp"
#include "kernels/cuda/device.hpp"

namespace bitttt::cuda::test {

struct Weights {
    AlignedBuffer<uint8_t> codes;
    kernels::TernaryWeights host;
    DeviceBuffer device_codes;
    // Codes -1/0/+1 uniformly, scale in [0.25, 1.25).
    Weights(int64_t rows, int64_t cols, Rng& rng) {
        const int64_t bytes = kernels::packed_bytes(rows, cols);
        std::vector<int8_t> q(static_cast<size_t>(rows * cols));
        for (auto& v : q) v = static_cast<int8_t>(static_cast<int>(rng.below(3)) - 1);
        codes.resize(static_cast<size_t>(std::max<int64_t>(bytes, 1)));
        kernels::pack_ternary(q.data(), rows, cols, codes.data());
        host = {codes.data(), rows, cols, 0.25f + rng.uniform()};
        device_codes = DeviceBuffer(static_cast<size_t>(std::max<int64_t>(bytes, 16)));
        device_codes.copy_from_host(codes.data(), static_cast<size_t>(bytes));
    }
    kernels::TernaryWeights device() const {
        return {device_codes.as<uint8_t>(), host.rows, host.cols, host.scale};
    }
};

}  // namespace bitttt::cuda::test
