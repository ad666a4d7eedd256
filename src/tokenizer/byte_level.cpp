#include "tokenizer/byte_level.hpp"

#include "tokenizer/utf8.hpp"

namespace bitttt::tok {

namespace {

bool maps_to_itself(int b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
}

}  // namespace

const ByteLevelTable& byte_level_table() {
    static const ByteLevelTable table = [] {
        ByteLevelTable t{};
        uint32_t next = 256;
        for (int b = 0; b < 256; ++b) {
            t.byte_to_codepoint[b] = maps_to_itself(b) ? static_cast<uint32_t>(b) : next++;
            utf8_append_codepoint(t.byte_to_utf8[b], t.byte_to_codepoint[b]);
        }
        return t;
    }();
    return table;
}

int byte_level_byte_of(uint32_t codepoint) {
    static const std::array<int16_t, 512> inverse = [] {
        std::array<int16_t, 512> inv{};
        inv.fill(-1);
        const ByteLevelTable& t = byte_level_table();
        for (int b = 0; b < 256; ++b) inv[t.byte_to_codepoint[b]] = static_cast<int16_t>(b);
        return inv;
    }();
    return codepoint < inverse.size() ? inverse[codepoint] : -1;
}

void byte_level_encode(std::string& out, std::string_view bytes) {
    const ByteLevelTable& t = byte_level_table();
    for (unsigned char b : bytes) out.append(t.byte_to_utf8[b]);
}

bool byte_level_decode(std::string& out, std::string_view token) {
    const size_t start = out.size();
    const auto* p = reinterpret_cast<const unsigned char*>(token.data());
    size_t i = 0;
    while (i < token.size()) {
        // Alphabet code points are below U+0200: one or two UTF-8 bytes.
        uint32_t cp;
        if (p[i] < 0x80) {
            cp = p[i];
            i += 1;
        } else if ((p[i] & 0xE0) == 0xC0 && i + 1 < token.size()) {
            cp = ((p[i] & 0x1Fu) << 6) | (p[i + 1] & 0x3Fu);
            i += 2;
        } else {
            out.resize(start);
            return false;
        }
        int b = byte_level_byte_of(cp);
        if (b < 0) {
            out.resize(start);
            return false;
        }
        out.push_back(static_cast<char>(b));
    }
    return true;
}

}  // namespace bitttt::tok
