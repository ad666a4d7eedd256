// Library-level C ABI functions (version, last error, status names) and the boundary helpers.
#include "capi/capi_boundary.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace bitttt::capi {
namespace {

constexpr size_t kLastErrorBytes = 1024;
thread_local char g_last_error[kLastErrorBytes] = "";

}  // namespace

void clear_last_error() noexcept {
    g_last_error[0] = '\0';
}

void set_last_error(const char* function, std::string_view message,
                    std::string_view prefix) noexcept {
    size_t used = 0;
    auto append = [&](std::string_view part) {
        size_t n = std::min(part.size(), kLastErrorBytes - 1 - used);
        if (n == 0) return;  // an empty view may hold a null data(): memcpy must not see it
        std::memcpy(g_last_error + used, part.data(), n);
        used += n;
    };
    append(function ? function : "bitttt");
    append(": ");
    append(prefix);
    append(message);
    g_last_error[used] = '\0';
}

const char* last_error() noexcept {
    return g_last_error;
}

int status_for(ErrorKind kind) noexcept {
    switch (kind) {
        case ErrorKind::kInvalidArgument:
            return BITTTT_INVALID_ARGUMENT;
        case ErrorKind::kDimensionMismatch:
            return BITTTT_DIMENSION_MISMATCH;
        case ErrorKind::kIo:
            return BITTTT_IO_ERROR;
        case ErrorKind::kFormat:
            return BITTTT_FORMAT_ERROR;
        case ErrorKind::kUnsupported:
            return BITTTT_UNSUPPORTED;
        case ErrorKind::kInternal:
            return BITTTT_PANIC;
    }
    return BITTTT_PANIC;
}

}  // namespace bitttt::capi

extern "C" {

const char* bitttt_version(void) {
    return BITTTT_VERSION;
}

const char* bitttt_last_error(void) {
    return bitttt::capi::last_error();
}

const char* bitttt_status_name(int status) {
    switch (status) {
        case BITTTT_OK:
            return "BITTTT_OK";
        case BITTTT_NULL_POINTER:
            return "BITTTT_NULL_POINTER";
        case BITTTT_DIMENSION_MISMATCH:
            return "BITTTT_DIMENSION_MISMATCH";
        case BITTTT_INVALID_ARGUMENT:
            return "BITTTT_INVALID_ARGUMENT";
        case BITTTT_INVALID_HANDLE:
            return "BITTTT_INVALID_HANDLE";
        case BITTTT_OUT_OF_MEMORY:
            return "BITTTT_OUT_OF_MEMORY";
        case BITTTT_IO_ERROR:
            return "BITTTT_IO_ERROR";
        case BITTTT_FORMAT_ERROR:
            return "BITTTT_FORMAT_ERROR";
        case BITTTT_UNSUPPORTED:
            return "BITTTT_UNSUPPORTED";
        case BITTTT_PANIC:
            return "BITTTT_PANIC";
        default:
            return "BITTTT_UNKNOWN_STATUS";
    }
}

namespace {
struct NonStandardException {};  // thrown by the self-test: not derived from std::exception
}  // namespace

int bitttt_selftest_exception(int kind) {
    return bitttt::capi::capi_call("bitttt_selftest_exception", [kind]() -> int {
        switch (kind) {
            case 0:
                return BITTTT_OK;
            case 1:
                throw std::runtime_error("self-test exception");
            case 2:
                throw std::bad_alloc();
            case 3:
                throw NonStandardException{};
            default:
                bitttt::fail(bitttt::ErrorKind::kInvalidArgument,
                             "unknown self-test kind {} (0..3)", kind);
        }
    });
}

}  // extern "C"
