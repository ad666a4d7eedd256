// GPT-2's byte <-> character table (the "ByteLevel" alphabet of the `tokenizers` package): every
// byte gets a printable code point so that any byte string becomes a string of visible
// characters. Bytes that are printable Latin-1 (! .. ~, ¡ .. ¬, ® .. ÿ) map to themselves; the
// other 68 bytes map, in increasing order, to U+0100, U+0101, ... (so space 0x20 becomes "Ġ").
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace bitttt::tok {

struct ByteLevelTable {
    std::array<uint32_t, 256> byte_to_codepoint;
    std::array<std::string, 256> byte_to_utf8;  // the code point above as UTF-8
};
const ByteLevelTable& byte_level_table();

// Byte of a mapped code point, or -1 when the code point is not in the alphabet.
int byte_level_byte_of(uint32_t codepoint);

// Appends the byte-level form (the mapped characters) of raw bytes.
void byte_level_encode(std::string& out, std::string_view bytes);

// Decodes a token string: when every character is in the alphabet, appends the bytes they stand
// for and returns true; otherwise appends nothing and returns false (the `tokenizers` ByteLevel
// decoder then uses the token's own UTF-8 bytes).
bool byte_level_decode(std::string& out, std::string_view token);

}  // namespace bitttt::tok
