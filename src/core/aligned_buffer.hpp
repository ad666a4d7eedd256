// A heap array aligned to 64 bytes (one cache line, one AVX-512 register), zero-initialized.
// Kernels read whole SIMD registers, so every buffer the engine allocates for them is aligned.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <span>
#include <type_traits>

#include "core/error.hpp"

namespace bitttt {

inline constexpr std::size_t kAlignment = 64;

template <typename T>
class AlignedBuffer {
    static_assert(std::is_trivially_copyable_v<T>, "AlignedBuffer holds plain data only");

  public:
    AlignedBuffer() = default;
    explicit AlignedBuffer(std::size_t count) { resize(count); }
    AlignedBuffer(const AlignedBuffer& other) : AlignedBuffer(other.size_) {
        if (size_) std::memcpy(data_, other.data_, size_ * sizeof(T));
    }
    AlignedBuffer& operator=(const AlignedBuffer& other) {
        if (this != &other) {
            AlignedBuffer copy(other);
            swap(copy);
        }
        return *this;
    }
    AlignedBuffer(AlignedBuffer&& other) noexcept { swap(other); }
    AlignedBuffer& operator=(AlignedBuffer&& other) noexcept {
        swap(other);
        return *this;
    }
    ~AlignedBuffer() { std::free(data_); }

    // Reallocates (contents are lost) and zero-fills; a no-op when the size is unchanged.
    void resize(std::size_t count) {
        if (count == size_) return;
        std::free(data_);
        data_ = nullptr;
        size_ = 0;
        if (count == 0) return;
        check(count <= std::numeric_limits<std::size_t>::max() / sizeof(T) - kAlignment,
              ErrorKind::kInvalidArgument, "buffer of {} elements is too large", count);
        std::size_t bytes = (count * sizeof(T) + kAlignment - 1) / kAlignment * kAlignment;
        data_ = static_cast<T*>(std::aligned_alloc(kAlignment, bytes));
        if (!data_) throw std::bad_alloc();
        std::memset(static_cast<void*>(data_), 0, bytes);
        size_ = count;
    }
    void fill_zero() {
        if (size_) std::memset(static_cast<void*>(data_), 0, size_ * sizeof(T));
    }

    T* data() noexcept { return data_; }
    const T* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    T& operator[](std::size_t i) noexcept { return data_[i]; }
    const T& operator[](std::size_t i) const noexcept { return data_[i]; }
    T* begin() noexcept { return data_; }
    T* end() noexcept { return data_ + size_; }
    const T* begin() const noexcept { return data_; }
    const T* end() const noexcept { return data_ + size_; }
    std::span<T> span() noexcept { return {data_, size_}; }
    std::span<const T> span() const noexcept { return {data_, size_}; }

    void swap(AlignedBuffer& other) noexcept {
        std::swap(data_, other.data_);
        std::swap(size_, other.size_);
    }

  private:
    T* data_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace bitttt
