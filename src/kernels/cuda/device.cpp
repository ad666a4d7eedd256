// Host side of the CUDA runtime wrapper (device.hpp): compiled by the C++ compiler against the
// CUDA runtime library, no device code here.
#include "kernels/cuda/device.hpp"

#include <cuda_runtime.h>

#include <utility>

#include "core/error.hpp"
#include "kernels/cuda/cuda_check.hpp"

namespace bitttt::cuda {

using detail::check_cuda;

int device_count() {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no device / no driver" status
        return 0;
    }
    return count;
}

void require_device(const char* what) {
    int count = 0;
    cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess || count == 0) {
        cudaGetLastError();
        fail(ErrorKind::kUnsupported, "CUDA: {}: no CUDA GPU is available ({})", what,
             status != cudaSuccess ? cudaGetErrorString(status) : "no device found");
    }
    check_cuda(cudaSetDevice(0), "cudaSetDevice");
}

DeviceInfo device_info() {
    require_device("device_info");
    cudaDeviceProp prop{};
    check_cuda(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    size_t free_bytes = 0, total_bytes = 0;
    check_cuda(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
    DeviceInfo info;
    info.name = prop.name;
    info.compute_major = prop.major;
    info.compute_minor = prop.minor;
    info.multiprocessors = prop.multiProcessorCount;
    info.memory_bytes = static_cast<int64_t>(prop.totalGlobalMem);
    info.l2_bytes = prop.l2CacheSize;
    info.free_bytes = static_cast<int64_t>(free_bytes);
    return info;
}

// ---- DeviceBuffer ----

DeviceBuffer::DeviceBuffer(size_t bytes) {
    require_device("DeviceBuffer");
    if (bytes == 0) return;
    cudaError_t status = cudaMalloc(&ptr_, bytes);
    if (status != cudaSuccess) {
        cudaGetLastError();
        ptr_ = nullptr;
        fail(ErrorKind::kUnsupported, "CUDA: cannot allocate {} bytes of device memory: {}", bytes,
             cudaGetErrorString(status));
    }
    bytes_ = bytes;
}

DeviceBuffer::~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
    std::swap(ptr_, other.ptr_);
    std::swap(bytes_, other.bytes_);
    return *this;
}

namespace {
void check_range(const char* what, size_t offset, size_t bytes, size_t size) {
    check(offset <= size && bytes <= size - offset, ErrorKind::kInvalidArgument,
          "CUDA: {}: {} bytes at offset {} do not fit a buffer of {} bytes", what, bytes, offset,
          size);
}
}  // namespace

void DeviceBuffer::copy_from_host(const void* src, size_t bytes, size_t offset) {
    check_range("copy_from_host", offset, bytes, bytes_);
    if (bytes == 0) return;
    check(src != nullptr, ErrorKind::kInvalidArgument, "CUDA: copy_from_host: null source");
    check_cuda(cudaMemcpy(static_cast<char*>(ptr_) + offset, src, bytes, cudaMemcpyHostToDevice),
               "cudaMemcpy to device");
}

void DeviceBuffer::copy_to_host(void* dst, size_t bytes, size_t offset) const {
    check_range("copy_to_host", offset, bytes, bytes_);
    if (bytes == 0) return;
    check(dst != nullptr, ErrorKind::kInvalidArgument, "CUDA: copy_to_host: null destination");
    check_cuda(
        cudaMemcpy(dst, static_cast<const char*>(ptr_) + offset, bytes, cudaMemcpyDeviceToHost),
        "cudaMemcpy to host");
}

void DeviceBuffer::fill_bytes(int value) {
    if (bytes_ == 0) return;
    check_cuda(cudaMemset(ptr_, value, bytes_), "cudaMemset");
}

// ---- Stream ----

Stream::Stream() {
    require_device("Stream");
    cudaStream_t s = nullptr;
    // A blocking stream: ordered after the synchronous copies and memsets that DeviceBuffer makes
    // on the legacy default stream (a non-blocking stream could overtake them).
    check_cuda(cudaStreamCreate(&s), "cudaStreamCreate");
    handle_ = s;
}

Stream::Stream(int priority) {
    require_device("Stream");
    cudaStream_t s = nullptr;
    // Blocking, as above.
    check_cuda(cudaStreamCreateWithPriority(&s, cudaStreamDefault, priority),
               "cudaStreamCreateWithPriority");
    handle_ = s;
}

std::pair<int, int> stream_priority_range() {
    int least = 0, greatest = 0;
    check_cuda(cudaDeviceGetStreamPriorityRange(&least, &greatest),
               "cudaDeviceGetStreamPriorityRange");
    return {least, greatest};
}

Stream::~Stream() {
    if (handle_) cudaStreamDestroy(static_cast<cudaStream_t>(handle_));
}

void Stream::synchronize() const {
    check_cuda(cudaStreamSynchronize(detail::raw(*this)), "cudaStreamSynchronize");
}

void copy_device_to_device(void* dst, const void* src, size_t bytes, const Stream& stream) {
    if (bytes == 0) return;
    check(dst != nullptr && src != nullptr, ErrorKind::kInvalidArgument,
          "CUDA: copy_device_to_device: null pointer");
    check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, detail::raw(stream)),
               "cudaMemcpyAsync device to device");
}

void copy_host_to_device(void* dst, const void* src, size_t bytes, const Stream& stream) {
    if (bytes == 0) return;
    check(dst != nullptr && src != nullptr, ErrorKind::kInvalidArgument,
          "CUDA: copy_host_to_device: null pointer");
    check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, detail::raw(stream)),
               "cudaMemcpyAsync host to device");
}

void copy_device_to_host(void* dst, const void* src, size_t bytes, const Stream& stream) {
    if (bytes == 0) return;
    check(dst != nullptr && src != nullptr, ErrorKind::kInvalidArgument,
          "CUDA: copy_device_to_host: null pointer");
    check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, detail::raw(stream)),
               "cudaMemcpyAsync device to host");
}

void memset_device(void* dst, int value, size_t bytes, const Stream& stream) {
    if (bytes == 0) return;
    check(dst != nullptr, ErrorKind::kInvalidArgument, "CUDA: memset_device: null pointer");
    check_cuda(cudaMemsetAsync(dst, value, bytes, detail::raw(stream)), "cudaMemsetAsync");
}

// ---- Graph ----

Graph::~Graph() {
    if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
    if (graph_) cudaGraphDestroy(static_cast<cudaGraph_t>(graph_));
}

void Graph::begin_capture(const Stream& stream) {
    check(graph_ == nullptr, ErrorKind::kInvalidArgument, "CUDA: Graph: captured twice");
    check_cuda(cudaStreamBeginCapture(detail::raw(stream), cudaStreamCaptureModeThreadLocal),
               "cudaStreamBeginCapture");
}

void Graph::end_capture(const Stream& stream) {
    cudaGraph_t graph = nullptr;
    check_cuda(cudaStreamEndCapture(detail::raw(stream), &graph), "cudaStreamEndCapture");
    graph_ = graph;
    cudaGraphExec_t exec = nullptr;
    check_cuda(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
    exec_ = exec;
}

void Graph::abort_capture(const Stream& stream) noexcept {
    cudaGraph_t graph = nullptr;
    if (cudaStreamEndCapture(detail::raw(stream), &graph) == cudaSuccess && graph)
        cudaGraphDestroy(graph);
    cudaGetLastError();  // clear the capture's error status
}

void Graph::launch(const Stream& stream) const {
    check(exec_ != nullptr, ErrorKind::kInvalidArgument, "CUDA: Graph: launched before capture");
    check_cuda(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), detail::raw(stream)),
               "cudaGraphLaunch");
}

// ---- EventTimer ----

EventTimer::EventTimer() {
    require_device("EventTimer");
    cudaEvent_t a = nullptr, b = nullptr;
    check_cuda(cudaEventCreate(&a), "cudaEventCreate");
    start_ = a;
    check_cuda(cudaEventCreate(&b), "cudaEventCreate");
    stop_ = b;
}

EventTimer::~EventTimer() {
    if (start_) cudaEventDestroy(static_cast<cudaEvent_t>(start_));
    if (stop_) cudaEventDestroy(static_cast<cudaEvent_t>(stop_));
}

void EventTimer::start(const Stream& stream) {
    check_cuda(cudaEventRecord(static_cast<cudaEvent_t>(start_), detail::raw(stream)),
               "cudaEventRecord");
}

void EventTimer::stop(const Stream& stream) {
    check_cuda(cudaEventRecord(static_cast<cudaEvent_t>(stop_), detail::raw(stream)),
               "cudaEventRecord");
}

double EventTimer::elapsed_ms() const {
    check_cuda(cudaEventSynchronize(static_cast<cudaEvent_t>(stop_)), "cudaEventSynchronize");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start_),
                                    static_cast<cudaEvent_t>(stop_)),
               "cudaEventElapsedTime");
    return ms;
}

}  // namespace bitttt::cuda
