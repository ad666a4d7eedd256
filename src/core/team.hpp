// One OpenMP thread team for a whole forward pass (internal).
//
// A decoded token runs ~10 dependent steps per layer (norms, GEMVs, the TTT scan, ...). With one
// OpenMP region per kernel, a token of the 24-layer D=2048 model forks and joins ~170 times; with
// the passive wait policy every fork wakes the sleeping threads (tens of microseconds on a VM,
// where an idle vCPU halts), and decode loses a third of its speed (bench/RESULTS.md, llama.cpp
// side by side). So the forward opens one region (run_team) and splits every step inside it:
// each thread calls the kernels on its share of the rows (Team::share) and the threads meet at a
// SpinBarrier between dependent steps. The barrier spins (a forward's steps take microseconds),
// so the OpenMP runtime itself can stay passive: its threads sleep between forward calls and are
// woken once per call.
//
// Inside an active parallel region the kernels run on the calling thread alone
// (kernels_fork_threads below): they never open a nested region of their own.
#pragma once

#include <omp.h>

#include <atomic>
#include <cstdint>
#include <utility>

namespace bitttt {

// Whether a kernel should open its own OpenMP region: it has enough work (`wanted`), there is
// more than one thread, and the caller is not already a thread of an active team (a team splits
// the work itself and calls the kernel on its share; a nested region would add a fork of one).
inline bool kernels_fork_threads(bool wanted = true) {
    return wanted && omp_get_max_threads() > 1 && !omp_in_parallel();
}

// for (i = 0; i < n; ++i) body(i), split over OpenMP threads (static or dynamic schedule) when
// kernels_fork_threads(wanted), else on the calling thread. The kernels' row loops use it.
template <class Body>
void parallel_for(int64_t n, bool wanted, Body&& body) {
    if (kernels_fork_threads(wanted)) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; ++i) body(i);
    } else {
        for (int64_t i = 0; i < n; ++i) body(i);
    }
}
template <class Body>
void parallel_for_dynamic(int64_t n, int64_t chunk, bool wanted, Body&& body) {
    if (kernels_fork_threads(wanted)) {
#pragma omp parallel for schedule(dynamic, chunk)
        for (int64_t i = 0; i < n; ++i) body(i);
    } else {
        for (int64_t i = 0; i < n; ++i) body(i);
    }
}

// A reusable barrier for a team of `count` threads. A waiting thread spins (and yields) for up to
// 200 us, then sleeps (C++20 atomic wait: a futex on Linux; team.cpp says why).
class SpinBarrier {
  public:
    void set_count(int count) { count_.store(count, std::memory_order_relaxed); }
    void arrive_and_wait();

  private:
    alignas(64) std::atomic<int> arrived_{0};
    alignas(64) std::atomic<uint32_t> generation_{0};
    std::atomic<int> sleepers_{0};
    std::atomic<int> count_{1};
};

// A thread's view of its team: its index, the team size, and the barrier they share.
struct Team {
    int id = 0;
    int size = 1;
    SpinBarrier* barrier = nullptr;

    // A team of one: the calling thread does every share (and the kernels may fork themselves).
    static Team solo() { return {}; }

    // This thread's contiguous share [begin, end) of n items: equal shares in units of `align`
    // (only the last one may end off a unit), so shares of row groups never split a group.
    std::pair<int64_t, int64_t> share(int64_t n, int64_t align = 1) const {
        if (size == 1) return {0, n};
        const int64_t units = (n + align - 1) / align;
        const int64_t b = units * id / size * align, e = units * (id + 1) / size * align;
        return {b < n ? b : n, e < n ? e : n};
    }
    // Waits until every thread of the team has arrived (no-op for a team of one).
    void sync() const {
        if (size > 1) barrier->arrive_and_wait();
    }
};

// Runs body(team) on `threads` threads of one OpenMP region (on the calling thread alone, as a
// team of one, when threads <= 1). `barrier` belongs to the caller (one per concurrent forward).
// The body calls kernels on shapes checked before the region (a Session's own buffers): an
// exception escaping a thread of an OpenMP region ends the program (std::terminate) rather than
// leaving the other threads waiting at a barrier forever.
template <class Body>
void run_team(int threads, SpinBarrier& barrier, Body&& body) {
    if (threads <= 1) {
        body(Team::solo());
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        const Team team{omp_get_thread_num(), omp_get_num_threads(), &barrier};
        // Every thread stores the same team size before it can reach the barrier.
        barrier.set_count(team.size);
        body(team);
    }
}

}  // namespace bitttt
