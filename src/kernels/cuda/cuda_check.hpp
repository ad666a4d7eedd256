// Internal to the CUDA backend (includes the CUDA runtime header): turns runtime error codes into
// bitttt::Error and holds the checks shared by the kernel launchers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>

#include "core/error.hpp"
#include "kernels/cuda/device.hpp"

namespace bitttt::cuda::detail {

// Throws Error(kInternal or kUnsupported) "CUDA: <what>: <runtime message>" unless status is OK.
inline void check_cuda(cudaError_t status, const char* what) {
    if (status == cudaSuccess) return;
    const ErrorKind kind = (status == cudaErrorMemoryAllocation || status == cudaErrorNoDevice ||
                            status == cudaErrorInsufficientDriver)
                               ? ErrorKind::kUnsupported
                               : ErrorKind::kInternal;
    fail(kind, "CUDA: {}: {} ({})", what, cudaGetErrorString(status), cudaGetErrorName(status));
}

// After a kernel launch: reports a bad launch configuration at once (the kernel's own faults
// surface at the next synchronizing call).
inline void check_launch(const char* what) {
    check_cuda(cudaGetLastError(), what);
}

inline cudaStream_t raw(const Stream& stream) {
    return static_cast<cudaStream_t>(stream.handle());
}

// Largest dimension any launcher accepts: keeps every byte offset inside int64 and every grid
// dimension inside its limits.
inline constexpr int64_t kMaxDim = int64_t{1} << 31;

inline bool aligned(const void* p, uintptr_t bytes) {
    return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

}  // namespace bitttt::cuda::detail

namespace bitttt::cuda::detail {

// Launches `kernel` allowing Programmatic Dependent Launch (Hopper and newer): the kernel may start
// while the previous kernel on the stream is still finishing, so launch latency and the kernel's
// prologue overlap the previous kernel's tail (this matters for the decode step's ~700 dependent
// kernels). Every kernel launched this way follows one protocol (pdl.cuh):
//   1. before wait_for_previous_kernel() it only READS data that the previous kernel does not
//      write (weights, or state last written two or more kernels earlier);
//   2. it calls wait_for_previous_kernel(), which returns once the previous kernel has completed
//      and its writes are visible, and then allow_next_kernel().
// Because (2) comes before the trigger, a kernel can start only after every block of its
// predecessor has passed its own wait, i.e. after the kernel two back has completed.
// BITTTT_CUDA_NO_PDL=1 in the environment launches every kernel normally (for measuring PDL).
inline bool pdl_enabled() {
    static const bool enabled = [] {
        const char* v = std::getenv("BITTTT_CUDA_NO_PDL");
        return v == nullptr || v[0] == '\0' || v[0] == '0';
    }();
    return enabled;
}

template <typename... Params, typename... Args>
void launch_pdl(const char* what, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                cudaStream_t stream, Args... args) {
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = smem;
    config.stream = stream;
    cudaLaunchAttribute attribute{};
    attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute.val.programmaticStreamSerializationAllowed = 1;
    config.attrs = &attribute;
    config.numAttrs = pdl_enabled() ? 1 : 0;
    check_cuda(cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...), what);
}

}  // namespace bitttt::cuda::detail
