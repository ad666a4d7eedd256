// UTF-8 validation and repair by the Unicode "maximal subpart" rule: each maximal prefix of a
// well-formed sequence that cannot be completed becomes one U+FFFD (what Python's
// bytes.decode("utf-8", "replace") and Rust's String::from_utf8_lossy do, so our results match
// the `tokenizers` package byte for byte).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace bitttt::tok {

enum class Utf8Status { kValid, kInvalid, kTruncated };

struct Utf8Step {
    Utf8Status status;
    size_t length;  // kValid: the character; kInvalid: the maximal subpart (>= 1); kTruncated: n
};

// Classifies the sequence starting at p (n >= 1 bytes available).
Utf8Step utf8_next(const unsigned char* p, size_t n);

bool utf8_is_valid(std::string_view text);

// Appends `bytes` to `out` with every invalid or truncated sequence replaced by U+FFFD.
void utf8_append_lossy(std::string& out, std::string_view bytes);

// Length of the longest prefix of `bytes` whose decoding cannot change when more bytes follow:
// everything except a trailing truncated (but so far well-formed) sequence.
size_t utf8_settled_prefix(std::string_view bytes);

// Appends the UTF-8 encoding of code point cp (< 0x110000).
void utf8_append_codepoint(std::string& out, uint32_t cp);

inline constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";

}  // namespace bitttt::tok
