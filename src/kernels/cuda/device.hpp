// The CUDA runtime as the rest of the engine sees it: device discovery, device memory, streams,
// graphs and event timers, with no CUDA type in sight, so this header compiles without nvcc.
//
// The CUDA backend is optional (cmake/cuda.cmake): when it is built, BITTTT_HAS_CUDA is defined to
// 1 for every target that links libbitttt, and these declarations have definitions
// (src/kernels/cuda/device.cpp). Code that must also build without it guards its calls with
// `#if BITTTT_HAS_CUDA`.
//
// Every failure (no GPU, out of device memory, a failed launch) is a bitttt::Error whose message
// starts with "CUDA:" and names the call and the runtime's own explanation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

namespace bitttt::cuda {

// Number of usable CUDA devices: 0 when there is no GPU or no driver (never throws).
int device_count();

// Throws Error(kUnsupported) "CUDA: <what>: no CUDA GPU is available (...)" when device_count()
// is 0; otherwise selects device 0 for the calling thread.
void require_device(const char* what);

struct DeviceInfo {
    std::string name;       // e.g. "NVIDIA H100 80GB HBM3"
    int compute_major = 0;  // compute capability, e.g. 9.0
    int compute_minor = 0;
    int multiprocessors = 0;   // SMs
    int64_t memory_bytes = 0;  // total device memory
    int64_t l2_bytes = 0;      // L2 cache size
    int64_t free_bytes = 0;    // free device memory when asked
};
// Properties of device 0 (require_device first).
DeviceInfo device_info();

// Device memory, freed on destruction; move-only. Contents start undefined.
class DeviceBuffer {
  public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(size_t bytes);
    ~DeviceBuffer();
    DeviceBuffer(DeviceBuffer&& other) noexcept;
    DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;

    void* data() const { return ptr_; }
    template <typename T>
    T* as() const {
        return static_cast<T*>(ptr_);
    }
    size_t bytes() const { return bytes_; }

    // Synchronous copies of `bytes` bytes at byte `offset` of this buffer (range checked).
    void copy_from_host(const void* src, size_t bytes, size_t offset = 0);
    void copy_to_host(void* dst, size_t bytes, size_t offset = 0) const;
    // Sets every byte to `value` (synchronous).
    void fill_bytes(int value);

  private:
    void* ptr_ = nullptr;
    size_t bytes_ = 0;
};

// A CUDA stream; every kernel launcher in kernels.hpp takes one and runs asynchronously on it.
class Stream {
  public:
    Stream();
    // With a scheduling priority (cudaStreamCreateWithPriority: lower numbers first; 0 is the
    // default and the lowest; stream_priority_range gives the device's range).
    explicit Stream(int priority);
    ~Stream();
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    void synchronize() const;
    void* handle() const { return handle_; }  // cudaStream_t

  private:
    void* handle_ = nullptr;
};

// The device's stream priorities: {lowest (the default, 0), highest (negative)}.
std::pair<int, int> stream_priority_range();

// Device-to-device copy on a stream (asynchronous).
void copy_device_to_device(void* dst, const void* src, size_t bytes, const Stream& stream);
// Host <-> device copies and a memset ordered on a stream (host memory may be pageable: such a
// copy returns once the host buffer may be reused or, for downloads, once the data is there).
void copy_host_to_device(void* dst, const void* src, size_t bytes, const Stream& stream);
void copy_device_to_host(void* dst, const void* src, size_t bytes, const Stream& stream);
void memset_device(void* dst, int value, size_t bytes, const Stream& stream);

// A CUDA graph recorded from the launches made on a stream between begin_capture and
// end_capture; launch() replays them with one call (removes per-kernel launch overhead).
class Graph {
  public:
    Graph() = default;
    ~Graph();
    Graph(const Graph&) = delete;
    Graph& operator=(const Graph&) = delete;
    void begin_capture(const Stream& stream);
    void end_capture(const Stream& stream);
    // Ends a capture that failed half-way (an exception between begin and end), dropping what was
    // recorded so the stream works normally again; never throws.
    void abort_capture(const Stream& stream) noexcept;
    bool ready() const { return exec_ != nullptr; }
    void launch(const Stream& stream) const;

  private:
    void* graph_ = nullptr;  // cudaGraph_t
    void* exec_ = nullptr;   // cudaGraphExec_t
};

// Measures device time between start() and stop() recorded on a stream.
class EventTimer {
  public:
    EventTimer();
    ~EventTimer();
    EventTimer(const EventTimer&) = delete;
    EventTimer& operator=(const EventTimer&) = delete;
    void start(const Stream& stream);
    void stop(const Stream& stream);
    // Waits for the stop event and returns the milliseconds between the two events.
    double elapsed_ms() const;

  private:
    void* start_ = nullptr;
    void* stop_ = nullptr;
};

}  // namespace bitttt::cuda
