// Helpers shared by the CUDA benchmarks (bench_cuda*.cpp): skipping without a GPU, and device-event
// timing. Only built with the CUDA backend.
#pragma once

#if BITTTT_HAS_CUDA
#include <functional>

#include "kernels/cuda/device.hpp"

namespace bitttt::cli {

// `bench all` on a machine without a GPU skips the CUDA benchmarks with a note instead of failing:
// true when a GPU is there, else prints "bench NAME: skipped: ..." on stderr.
bool have_gpu(const char* bench);

// Median milliseconds of one call of fn, timed with device events over `reps` runs of `inner`
// calls each, after `warmups` untimed calls (slow reference kernels take 1).
double median_device_ms(const cuda::Stream& stream, const std::function<void()>& fn, int reps,
                        int inner = 1, int warmups = 2);

}  // namespace bitttt::cli
#endif
