// The team barrier (core/team.hpp).
#include "core/team.hpp"

#include <algorithm>
#include <chrono>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace bitttt {
namespace {

using Clock = std::chrono::steady_clock;

// The spin budget adapts between these bounds (see arrive_and_wait).
constexpr int64_t kMinSpinNs = 5'000, kMaxSpinNs = 500'000;

}  // namespace

void SpinBarrier::arrive_and_wait() {
    const uint32_t gen = generation_.load(std::memory_order_acquire);
    // The generation cannot move before this thread arrives, so `gen` is this round's.
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 ==
        count_.load(std::memory_order_relaxed)) {
        arrived_.store(0, std::memory_order_relaxed);
        generation_.store(gen + 1, std::memory_order_seq_cst);
        // Pairs with the sleeper's increment then re-check (both seq_cst): either it sees the new
        // generation or we see it and wake it.
        if (sleepers_.load(std::memory_order_seq_cst) != 0) generation_.notify_all();
        return;
    }
    auto released = [&] { return generation_.load(std::memory_order_acquire) != gen; };
    const int64_t spin_ns = spin_ns_.load(std::memory_order_relaxed);
    const auto start = Clock::now();
    while (spin_ns > 0) {
        for (int i = 0; i < 32; ++i) {
            if (released()) return;
#if defined(__x86_64__) || defined(__i386__)
            _mm_pause();
#endif
        }
        if (Clock::now() - start >= std::chrono::nanoseconds(spin_ns)) break;
    }
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    while (generation_.load(std::memory_order_seq_cst) == gen) generation_.wait(gen);
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
    // Released within 4x the budget: a little more spinning would have saved the wake-up.
    const int64_t waited =
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count();
    const int64_t next = waited < 4 * spin_ns ? std::min(2 * spin_ns, kMaxSpinNs)
                                              : std::max(spin_ns * 3 / 4, kMinSpinNs);
    spin_ns_.store(next, std::memory_order_relaxed);
}

}  // namespace bitttt
