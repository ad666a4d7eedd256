// The original Bit-TTT C API: a standalone TTT layer behind an opaque handle (include/bitttt.h).
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>

#include "bitttt.h"
#include "capi/capi_boundary.hpp"
#include "capi/handle_registry.hpp"
#include "model/ttt_layer.hpp"

namespace bitttt::capi {
namespace {

// A layer and the lock that serializes calls on it.
struct TttHandle {
    TttHandle(int64_t hidden_dim, float inner_lr) : layer(hidden_dim, inner_lr) {}
    std::mutex mutex;
    TttLayer layer;
};

constexpr uint64_t kTttHandleTag = 1;

HandleRegistry<TttHandle>& ttt_handles() {
    static HandleRegistry<TttHandle> registry(kTttHandleTag);
    return registry;
}

// The live layer behind `model`, or a StatusError for NULL / dead handles.
std::shared_ptr<TttHandle> live_layer(const void* model) {
    if (!model) throw StatusError{BITTTT_NULL_POINTER, "model is NULL"};
    auto handle = ttt_handles().find(model);
    if (!handle)
        throw StatusError{BITTTT_INVALID_HANDLE,
                          "model is not a live TTT layer handle (destroyed, or never created)"};
    return handle;
}

void require(const void* pointer, const char* what_is_null) {
    if (!pointer) throw StatusError{BITTTT_NULL_POINTER, what_is_null};
}

void require_state_count(const TttLayer& layer, size_t count) {
    check(count == static_cast<size_t>(layer.state_size()), ErrorKind::kDimensionMismatch,
          "state has {} floats, the layer's state has {} (ttt_state_size)", count,
          layer.state_size());
}

}  // namespace
}  // namespace bitttt::capi

using bitttt::capi::capi_call;
using bitttt::capi::live_layer;
using bitttt::capi::require;

extern "C" {

void* ttt_create(size_t hidden_dim, float inner_lr) {
    void* result = nullptr;
    capi_call("ttt_create", [&] {
        bitttt::check(hidden_dim <= static_cast<size_t>(bitttt::TttLayer::kMaxHiddenDim),
                      bitttt::ErrorKind::kInvalidArgument,
                      "TTT layer hidden_dim {} must be a positive multiple of 4 and at most {}",
                      hidden_dim, bitttt::TttLayer::kMaxHiddenDim);
        auto handle =
            std::make_shared<bitttt::capi::TttHandle>(static_cast<int64_t>(hidden_dim), inner_lr);
        result = bitttt::capi::ttt_handles().add(std::move(handle));
        return BITTTT_OK;
    });
    return result;
}

int ttt_forward(void* model, const float* input, size_t seq_len, float* output) {
    return capi_call("ttt_forward", [&] {
        auto handle = live_layer(model);
        require(input, "input is NULL");
        require(output, "output is NULL");
        const auto dim = static_cast<size_t>(handle->layer.hidden_dim());
        bitttt::check(seq_len > 0, bitttt::ErrorKind::kDimensionMismatch, "seq_len is 0");
        // seq_len x hidden_dim floats must be addressable (the buffers' byte size fits size_t and
        // the element count fits int64_t).
        const size_t max_tokens =
            std::min<size_t>(std::numeric_limits<size_t>::max() / sizeof(float) / dim,
                             static_cast<size_t>(std::numeric_limits<int64_t>::max()) / dim);
        bitttt::check(seq_len <= max_tokens, bitttt::ErrorKind::kDimensionMismatch,
                      "seq_len {} x hidden_dim {} floats overflows the address space", seq_len,
                      dim);
        std::lock_guard lock(handle->mutex);
        handle->layer.forward(input, static_cast<int64_t>(seq_len), output);
        return BITTTT_OK;
    });
}

void ttt_destroy(void* model) {
    capi_call("ttt_destroy", [&] {
        if (!model) return BITTTT_OK;
        if (!bitttt::capi::ttt_handles().remove(model))
            throw bitttt::capi::StatusError{
                BITTTT_INVALID_HANDLE, "model is not a live TTT layer handle (already destroyed?)"};
        return BITTTT_OK;
    });
}

int ttt_reset(void* model) {
    return capi_call("ttt_reset", [&] {
        auto handle = live_layer(model);
        std::lock_guard lock(handle->mutex);
        handle->layer.reset();
        return BITTTT_OK;
    });
}

size_t ttt_state_size(const void* model) {
    size_t size = 0;
    capi_call("ttt_state_size", [&] {
        size = static_cast<size_t>(live_layer(model)->layer.state_size());
        return BITTTT_OK;
    });
    return size;
}

int ttt_get_state(const void* model, float* state, size_t count) {
    return capi_call("ttt_get_state", [&] {
        auto handle = live_layer(model);
        require(state, "state is NULL");
        bitttt::capi::require_state_count(handle->layer, count);
        std::lock_guard lock(handle->mutex);
        handle->layer.get_state(state);
        return BITTTT_OK;
    });
}

int ttt_set_state(void* model, const float* state, size_t count) {
    return capi_call("ttt_set_state", [&] {
        auto handle = live_layer(model);
        require(state, "state is NULL");
        bitttt::capi::require_state_count(handle->layer, count);
        std::lock_guard lock(handle->mutex);
        handle->layer.set_state(state);
        return BITTTT_OK;
    });
}

}  // extern "C"
