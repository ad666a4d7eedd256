// Device side of Programmatic Dependent Launch (see detail::launch_pdl in cuda_check.hpp for the
// protocol every kernel launched with it follows). Both are no-ops for a normal launch.
#pragma once

namespace bitttt::cuda::detail {

// Returns once the previous kernel on the stream has completed and its memory is visible.
__device__ __forceinline__ void wait_for_previous_kernel() {
    asm volatile("griddepcontrol.wait;" ::: "memory");
}

// Lets the next kernel on the stream start its blocks (once every block of this one has called it).
__device__ __forceinline__ void allow_next_kernel() {
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}

}  // namespace bitttt::cuda::detail
