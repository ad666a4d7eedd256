// Internal to the CUDA backend (includes the CUDA runtime header): turns runtime error codes into
// bitttt::Error and holds the checks shared by the kernel launchers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

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
