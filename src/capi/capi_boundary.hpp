// The extern "C" boundary (internal): every C ABI function runs its body through capi_call(),
// which clears the thread-local last error, catches every exception and turns it into a
// bitttt_status code plus a message. Shared by all src/capi/*.cpp files.
#pragma once

#include <new>
#include <string_view>
#include <utility>

#include "bitttt.h"
#include "core/error.hpp"

namespace bitttt::capi {

// Last-error storage: a fixed thread-local buffer, so recording an error never allocates or throws.
void clear_last_error() noexcept;
const char* last_error() noexcept;
// Stores "<function>: <prefix><message>" (truncated to the buffer) without allocating.
void set_last_error(const char* function, std::string_view message,
                    std::string_view prefix = {}) noexcept;

// The status code for an Error of this kind.
int status_for(ErrorKind kind) noexcept;

// A failure that maps to a status code with no ErrorKind (null pointers, dead handles).
struct StatusError {
    int status;
    const char* message;  // static string
};

// Runs body() (which returns a status code) with every exception caught and reported.
// `function` names the C function in the message ("ttt_forward: ...").
template <typename Body>
int capi_call(const char* function, Body&& body) noexcept {
    clear_last_error();
    try {
        return std::forward<Body>(body)();
    } catch (const StatusError& e) {
        set_last_error(function, e.message);
        return e.status;
    } catch (const Error& e) {
        set_last_error(function, e.what());
        return status_for(e.kind());
    } catch (const std::bad_alloc&) {
        set_last_error(function, "out of memory");
        return BITTTT_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        set_last_error(function, e.what(), "internal error: ");
        return BITTTT_PANIC;
    } catch (...) {
        set_last_error(function, "unknown exception", "internal error: ");
        return BITTTT_PANIC;
    }
}

}  // namespace bitttt::capi
