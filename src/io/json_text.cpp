#include "io/json_text.hpp"

#include <set>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace bitttt::io {

std::optional<std::size_t> find_invalid_utf8(std::string_view text) {
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    const std::size_t n = text.size();
    std::size_t i = 0;
    while (i < n) {
        const unsigned char c = s[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        // Lead byte: number of continuation bytes and the range the second byte may take
        // (the narrowed ranges exclude overlong forms, surrogates and code points > U+10FFFF).
        int extra;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            extra = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            extra = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            extra = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return i;
        }
        if (n - i <= static_cast<std::size_t>(extra)) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (int k = 2; k <= extra; ++k)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return i;
        i += static_cast<std::size_t>(extra) + 1;
    }
    return std::nullopt;
}

nlohmann::json parse_json_checked(std::string_view text, std::string_view context, int max_depth) {
    if (auto bad = find_invalid_utf8(text))
        fail(ErrorKind::kFormat, "{}: not valid UTF-8 (byte {})", context, *bad);
    // One set of keys per open object; arrays push an empty marker so depth stays in step.
    std::vector<std::set<std::string>> keys;
    using Event = nlohmann::json::parse_event_t;
    auto callback = [&](int depth, Event event, nlohmann::json& parsed) -> bool {
        switch (event) {
            case Event::object_start:
            case Event::array_start:
                check(depth < max_depth, ErrorKind::kFormat, "{}: JSON nested deeper than {}",
                      context, max_depth);
                keys.emplace_back();
                break;
            case Event::object_end:
            case Event::array_end:
                if (!keys.empty()) keys.pop_back();
                break;
            case Event::key:
                if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second)
                    fail(ErrorKind::kFormat, "{}: duplicate key '{}'", context,
                         parsed.get<std::string>());
                break;
            case Event::value:
                break;
        }
        return true;
    };
    try {
        return nlohmann::json::parse(text, callback);
    } catch (const nlohmann::json::exception& e) {
        fail(ErrorKind::kFormat, "{}: not valid JSON ({})", context, e.what());
    }
}

}  // namespace bitttt::io
