// Reading training text: plain or gzip-compressed files (zlib detects which).
#pragma once

#include <string>

namespace bitttt::tok {

// The whole (decompressed) content of `path`. Throws Error naming the file on failure or when
// the content exceeds max_bytes.
std::string read_text_file(const std::string& path, size_t max_bytes = size_t{16} << 30);

}  // namespace bitttt::tok
