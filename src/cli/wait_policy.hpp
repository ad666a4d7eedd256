// The OpenMP wait policy of the `bitttt` command.
//
// libgomp's default policy spins idle threads for a long while (~300,000 spins) before they
// sleep. On an idle machine that is harmless, but on a machine whose cores are busy with other
// work a spinning thread is preempted like any other, and each fork/join then waits a whole time
// slice for it: on this project's 2-core build machine under load, `eval --memory-effect` took
// 29.8 s with 2 threads and the default policy against 1.3 s with OMP_WAIT_POLICY=passive
// (decode: 3-7x slower). A passive thread sleeps on a futex between parallel regions; waking it
// costs a few microseconds once per region (decode has one: lm_head, bf16_matmul, whose dynamic
// schedule lets the calling thread start without it). bench/RESULTS.md has both figures on a
// quiet machine.
//
// libgomp reads OMP_WAIT_POLICY once, when it is loaded (before main), so the command sets it
// by executing itself again, once, when the user has set neither OMP_WAIT_POLICY nor
// GOMP_SPINCOUNT. Users who want spinning threads set OMP_WAIT_POLICY=active.
#pragma once

namespace bitttt::cli {

// Call first thing in main, before any OpenMP call; returns only when nothing had to change (or
// the re-execution failed).
void use_passive_wait_policy(char** argv);

}  // namespace bitttt::cli
