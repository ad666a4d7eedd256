// The OpenMP wait policy of the `bitttt` command (see wait_policy.hpp).
#include "cli/wait_policy.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace bitttt::cli {
namespace {

// The 1-minute load average, or -1 when /proc/loadavg cannot be read.
double load_average() {
    FILE* f = std::fopen("/proc/loadavg", "r");
    if (!f) return -1.0;
    double load = -1.0;
    if (std::fscanf(f, "%lf", &load) != 1) load = -1.0;
    std::fclose(f);
    return load;
}

}  // namespace

void choose_wait_policy(char** argv) {
    // Set by the user (or by our own first run): leave it.
    if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
    const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1 || load_average() < 0.5 * static_cast<double>(cpus)) return;
    if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
    execv("/proc/self/exe", argv);
    // No /proc (or exec refused): run on with libgomp's default policy.
    unsetenv("OMP_WAIT_POLICY");
}

std::string wait_policy_name() {
    if (const char* p = std::getenv("OMP_WAIT_POLICY")) return p;
    if (const char* s = std::getenv("GOMP_SPINCOUNT")) return std::string("GOMP_SPINCOUNT=") + s;
    return "default (spin)";
}

}  // namespace bitttt::cli
