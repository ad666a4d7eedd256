// The team barrier (core/team.hpp).
#include "core/team.hpp"

#include <sched.h>

#include <chrono>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace bitttt {
namespace {

using Clock = std::chrono::steady_clock;

// A waiting thread spins this long (pause), then sleeps. After the first few microseconds it
// yields the core at every check: on a busy machine the thread it waits for may be queued behind
// it on the same core (spinning there would only delay it; measured at load 4 on the 2-core
// machine: 22 tokens/s decoding the D=2048 model spinning 30 us, 27-30 yielding), and on an idle
// machine sched_yield returns at once. 200 us covers a decode step's GEMV shares and the other
// thread's wake-up at the start of a forward.
constexpr auto kSpin = std::chrono::microseconds(200);
constexpr auto kPauseOnly = std::chrono::microseconds(3);

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
    const auto start = Clock::now();
    for (;;) {
        for (int i = 0; i < 32; ++i) {
            if (released()) return;
#if defined(__x86_64__) || defined(__i386__)
            _mm_pause();
#endif
        }
        const auto waited = Clock::now() - start;
        if (waited >= kSpin) break;
        if (waited >= kPauseOnly) sched_yield();
    }
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    while (generation_.load(std::memory_order_seq_cst) == gen) generation_.wait(gen);
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace bitttt
