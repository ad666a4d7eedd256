#include "cli/bench_cuda_util.hpp"

#if BITTTT_HAS_CUDA
#include <fmt/format.h>

#include <algorithm>
#include <vector>

namespace bitttt::cli {

bool have_gpu(const char* bench) {
    if (cuda::device_count() > 0) return true;
    fmt::print(stderr, "bench {}: skipped: no CUDA GPU on this machine\n", bench);
    return false;
}

double median_device_ms(const cuda::Stream& stream, const std::function<void()>& fn, int reps,
                        int inner, int warmups) {
    for (int i = 0; i < warmups; ++i) fn();
    stream.synchronize();
    cuda::EventTimer timer;
    std::vector<double> times;
    for (int r = 0; r < reps; ++r) {
        timer.start(stream);
        for (int i = 0; i < inner; ++i) fn();
        timer.stop(stream);
        times.push_back(timer.elapsed_ms() / inner);
    }
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}

}  // namespace bitttt::cli
#endif
