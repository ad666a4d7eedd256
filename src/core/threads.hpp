// Thread count for the OpenMP kernels.
#pragma once

namespace bitttt {

// Number of threads the kernels use (default: OpenMP's default, i.e. all cores or OMP_NUM_THREADS).
int num_threads();
// Sets it; n <= 0 restores the default. Throws Error for absurd values (> 4096).
void set_num_threads(int n);

}  // namespace bitttt
