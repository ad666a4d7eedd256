// Per-call scratch of the TTT scan kernels (internal): up to kMaxRows rows of dt floats, on the
// stack for the usual sizes (dt <= kTttScanMaxStackDim) so the token loop never allocates.
#pragma once

#include <cstdint>

#include "core/aligned_buffer.hpp"
#include "kernels/cpu/ttt_scan.hpp"

namespace bitttt::kernels {

class TttScanScratch {
  public:
    static constexpr int kMaxRows = 6;
    // Rows are padded to 16 floats so SIMD code may read whole vectors past dt (zeros there).
    explicit TttScanScratch(int64_t dt) : stride_((dt + 15) / 16 * 16) {
        if (dt > kTttScanMaxStackDim) {
            heap_.resize(static_cast<size_t>(kMaxRows * stride_));
            data_ = heap_.data();
        } else {
            for (auto& x : stack_) x = 0.0f;
        }
    }
    TttScanScratch(const TttScanScratch&) = delete;
    TttScanScratch& operator=(const TttScanScratch&) = delete;

    float* row(int i) { return data_ + i * stride_; }

  private:
    int64_t stride_;
    alignas(64) float stack_[kMaxRows * kTttScanMaxStackDim];
    AlignedBuffer<float> heap_;
    float* data_ = stack_;
};

}  // namespace bitttt::kernels
