#include "tokenizer/utf8.hpp"

#include <cstring>

namespace bitttt::tok {

Utf8Step utf8_next(const unsigned char* p, size_t n) {
    const unsigned char b = p[0];
    if (b < 0x80) return {Utf8Status::kValid, 1};
    // Lead byte -> sequence length and the allowed range of the second byte (Unicode Table 3-7);
    // later bytes are always 80..BF. The narrowed second-byte ranges exclude overlong forms,
    // surrogates (ED A0..BF) and code points above U+10FFFF (F4 90..).
    size_t length = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    // One branch per row of the UTF-8 table (RFC 3629 §4), equal bodies included.
    // NOLINTBEGIN(bugprone-branch-clone)
    if (b >= 0xC2 && b <= 0xDF) {
        length = 2;
    } else if (b == 0xE0) {
        length = 3, lo = 0xA0;
    } else if (b >= 0xE1 && b <= 0xEC) {
        length = 3;
    } else if (b == 0xED) {
        length = 3, hi = 0x9F;
    } else if (b >= 0xEE && b <= 0xEF) {
        length = 3;
    } else if (b == 0xF0) {
        length = 4, lo = 0x90;
    } else if (b >= 0xF1 && b <= 0xF3) {
        length = 4;
    } else if (b == 0xF4) {
        length = 4, hi = 0x8F;
    } else {
        return {Utf8Status::kInvalid, 1};  // 80..C1, F5..FF never start a sequence
    }
    // NOLINTEND(bugprone-branch-clone)
    for (size_t i = 1; i < length; ++i) {
        if (i >= n) return {Utf8Status::kTruncated, n};
        const unsigned char c = p[i];
        const unsigned char l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (c < l || c > h) return {Utf8Status::kInvalid, i};
    }
    return {Utf8Status::kValid, length};
}

bool utf8_is_valid(std::string_view text) {
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const size_t n = text.size();
    size_t i = 0;
    while (i < n) {
        // ASCII fast path: eight bytes at a time.
        if (i + 8 <= n) {
            uint64_t word;
            std::memcpy(&word, p + i, 8);
            if ((word & 0x8080808080808080ull) == 0) {
                i += 8;
                continue;
            }
        }
        if (p[i] < 0x80) {
            ++i;
            continue;
        }
        Utf8Step step = utf8_next(p + i, n - i);
        if (step.status != Utf8Status::kValid) return false;
        i += step.length;
    }
    return true;
}

void utf8_append_lossy(std::string& out, std::string_view bytes) {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    const size_t n = bytes.size();
    size_t i = 0, run_start = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            ++i;
            continue;
        }
        Utf8Step step = utf8_next(p + i, n - i);
        if (step.status == Utf8Status::kValid) {
            i += step.length;
            continue;
        }
        out.append(bytes.substr(run_start, i - run_start));
        out.append(kReplacementCharacter);
        i += step.length;
        run_start = i;
    }
    out.append(bytes.substr(run_start));
}

size_t utf8_settled_prefix(std::string_view bytes) {
    // A truncated sequence is at most 3 bytes long, so only the tail needs a look.
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    const size_t n = bytes.size();
    const size_t start = n > 3 ? n - 3 : 0;
    for (size_t i = start; i < n; ++i) {
        if (p[i] >= 0xC0) {  // a possible lead byte: does it begin a truncated sequence?
            Utf8Step step = utf8_next(p + i, n - i);
            if (step.status == Utf8Status::kTruncated) return i;
        }
    }
    return n;
}

void utf8_append_codepoint(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

}  // namespace bitttt::tok
