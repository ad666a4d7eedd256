// Parsing JSON that comes from files (safetensors and .bitt headers, tokenizer.json): the text is
// checked to be UTF-8, nesting is bounded (so hostile input cannot exhaust the stack in later
// recursive walks), and duplicate keys in an object are errors (nlohmann would silently keep the
// last one, which would let two tensor entries with one name pass unnoticed).
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

namespace bitttt::io {

// Byte offset of the first byte that is not part of well-formed UTF-8 (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF), or nullopt when all of `text` is valid.
std::optional<std::size_t> find_invalid_utf8(std::string_view text);

inline constexpr int kMaxJsonDepth = 64;

// Parses `text`; on any problem throws Error (kFormat) "`context`: <problem>", where context
// names the file and the part of it, e.g. "model.safetensors: header".
nlohmann::json parse_json_checked(std::string_view text, std::string_view context,
                                  int max_depth = kMaxJsonDepth);

}  // namespace bitttt::io
