// Opaque C ABI handles (internal). A handle is an id, not a pointer: the registry maps live ids to
// shared objects. Ids come from a counter and are never reused, so a destroyed, forged or foreign
// handle is always detected instead of dereferenced, and an object destroyed while another
// thread is inside a call on it lives until that call drops its reference.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace bitttt::capi {

template <typename T>
class HandleRegistry {
  public:
    // `tag` (0..15) goes into the low bits so handles of different registries never collide.
    explicit HandleRegistry(uint64_t tag) : tag_(tag & 15) {}

    void* add(std::shared_ptr<T> object) {
        std::lock_guard lock(mutex_);
        const uint64_t id = kBase + (next_++ << 4) + tag_;
        objects_.emplace(id, std::move(object));
        // The handle is an opaque id the caller passes back, never dereferenced.
        // NOLINTNEXTLINE(performance-no-int-to-ptr)
        return reinterpret_cast<void*>(static_cast<uintptr_t>(id));
    }
    // The object behind a live handle, or null.
    std::shared_ptr<T> find(const void* handle) const {
        std::lock_guard lock(mutex_);
        auto it = objects_.find(key(handle));
        return it == objects_.end() ? nullptr : it->second;
    }
    // Removes a live handle and returns its object (null when the handle was not live).
    std::shared_ptr<T> remove(const void* handle) {
        std::lock_guard lock(mutex_);
        auto it = objects_.find(key(handle));
        if (it == objects_.end()) return nullptr;
        auto object = std::move(it->second);
        objects_.erase(it);
        return object;
    }

  private:
    // Far from small integers and from typical heap addresses, so stray values rarely look valid
    // even before the lookup (which is what actually decides).
    static constexpr uint64_t kBase = 0xB177'0000'0000'0000ull;
    static uint64_t key(const void* handle) {
        return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(handle));
    }

    const uint64_t tag_;
    mutable std::mutex mutex_;
    uint64_t next_ = 1;
    std::unordered_map<uint64_t, std::shared_ptr<T>> objects_;
};

}  // namespace bitttt::capi
