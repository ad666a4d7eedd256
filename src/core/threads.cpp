#include "core/threads.hpp"

#include <omp.h>

#include "core/error.hpp"

namespace bitttt {
namespace {
const int kDefaultThreads = omp_get_max_threads();
}

int num_threads() {
    return omp_get_max_threads();
}

void set_num_threads(int n) {
    check(n <= 4096, ErrorKind::kInvalidArgument, "thread count {} is out of range (1..4096)", n);
    omp_set_num_threads(n <= 0 ? kDefaultThreads : n);
}

}  // namespace bitttt
