// The OpenMP wait policy of the `bitttt` command (see wait_policy.hpp).
#include "cli/wait_policy.hpp"

#include <unistd.h>

#include <cstdlib>

namespace bitttt::cli {

void choose_wait_policy(char** argv) {
    // Set by the user (or by our own first run): leave it.
    if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
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
