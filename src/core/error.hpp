// Errors: every failure the engine reports is a bitttt::Error carrying a one-line message that
// names the thing at fault (file, argument, tensor) and the problem.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace bitttt {

// Broad class of an error; the C ABI maps it to its status codes.
enum class ErrorKind {
    kInvalidArgument,    // bad value from the caller (sizes, flags, options)
    kDimensionMismatch,  // shapes that do not fit together
    kIo,                 // file system failures
    kFormat,             // malformed file contents (safetensors, .bitt, JSON, ...)
    kUnsupported,        // valid request that this build or machine cannot serve
    kInternal,           // a bug: an invariant of the engine itself broke
};

class Error : public std::runtime_error {
  public:
    Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
    ErrorKind kind() const noexcept { return kind_; }

  private:
    ErrorKind kind_;
};

// fail(kind, "format {}", args...) throws an Error with a formatted message.
template <typename... Args>
[[noreturn]] void fail(ErrorKind kind, fmt::format_string<Args...> format, Args&&... args) {
    throw Error(kind, fmt::format(format, std::forward<Args>(args)...));
}

// check(condition, kind, "format", args...) throws when the condition does not hold.
template <typename... Args>
void check(bool condition, ErrorKind kind, fmt::format_string<Args...> format, Args&&... args) {
    if (!condition) fail(kind, format, std::forward<Args>(args)...);
}

}  // namespace bitttt
