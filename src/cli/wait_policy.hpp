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
// So the command picks by the machine's load when it starts: if the 1-minute load average is at
// least half the online CPUs, other work is competing for the cores and it uses the passive
// policy; otherwise libgomp's default. libgomp reads OMP_WAIT_POLICY once, when it is loaded
// (before main), so the command sets it by executing itself again, once. A policy the user sets
// (OMP_WAIT_POLICY or GOMP_SPINCOUNT) is always kept. `bitttt bench` prints the policy it ran
// with. The forward's thread team (core/team.hpp) made passive decode of large layers much
// faster (one wake-up per call), but small models keep a few regions per token: on the 2-core
// build machine at load ~1 the shipped default model decoded 2,400-2,560 tokens/s passive
// against 3,200-4,450 spinning (4 alternating runs, 2026-11-27 01:09 UTC), so the pick by load
// stays.
#pragma once

#include <string>

namespace bitttt::cli {

// Call first thing in main, before any OpenMP call; returns only when nothing had to change (or
// the re-execution failed).
void choose_wait_policy(char** argv);

// "passive", "active" or "default (spin)" (from OMP_WAIT_POLICY / GOMP_SPINCOUNT), for reports.
std::string wait_policy_name();

}  // namespace bitttt::cli
