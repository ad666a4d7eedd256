// The OpenMP wait policy of the `bitttt` command.
//
// libgomp's default policy spins idle threads for a long while (~300,000 spins) before they
// sleep. On an idle machine that is what decode wants: the default config forks one team per
// token (lm_head) and the 7B shape ~160 (each GEMV), and a spinning thread joins at once. On a
// machine whose cores are busy with other work it is a disaster: a spinning thread is preempted
// like any other, and each fork/join then waits a time slice for it. A passive thread sleeps on
// a futex and is woken for each region: robust under load, but each wake-up costs 20-100 us on
// this project's VM (an idle vCPU is halted). Measured on the 2-core build machine
// (bench/RESULTS.md): under load `eval --memory-effect` took 29.8 s spinning vs 1.3 s passive,
// and decode ran at 100-830 tokens/s spinning vs ~1,600-3,700 passive; with free cores, decode
// (default config) ran at 4,177-5,498 tokens/s spinning vs 3,819-4,876 passive, and the 7B shape
// at 17.4-21.9 vs 14.2-17.3 tokens/s.
//
// So the command used to pick by the machine's load. Since the CPU forward runs in one thread
// team per call (core/team.hpp), whose threads meet at a barrier that spins, decode no longer
// forks a region per GEMV and the choice is simple: spin during a forward (the team's barrier),
// never burn CPU between calls (libgomp passive: its idle threads sleep). The command sets
// OMP_WAIT_POLICY=passive unless the user set a policy (OMP_WAIT_POLICY or GOMP_SPINCOUNT, always
// kept). libgomp reads it once, when it is loaded (before main), so the command sets it by
// executing itself again, once. `bitttt bench` prints the policy it ran with.
#pragma once

#include <string>

namespace bitttt::cli {

// Call first thing in main, before any OpenMP call; returns only when nothing had to change (or
// the re-execution failed).
void choose_wait_policy(char** argv);

// "passive", "active" or "default (spin)" (from OMP_WAIT_POLICY / GOMP_SPINCOUNT), for reports.
std::string wait_policy_name();

}  // namespace bitttt::cli
