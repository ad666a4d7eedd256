#include "tokenizer/text_file.hpp"

#include <zlib.h>

#include <filesystem>

#include "core/error.hpp"

namespace bitttt::tok {

std::string read_text_file(const std::string& path, size_t max_bytes) {
    // gzread passes plain files through unchanged, so one code path reads both.
    gzFile file = gzopen(path.c_str(), "rb");
    check(file != nullptr, ErrorKind::kIo, "{}: cannot open file", path);
    // Large buffers for large files; a file under 1 MiB gets 64 KiB ones, since zeroing a 1 MiB
    // chunk and zlib's 3 MiB of buffers cost more than reading a file of a few bytes.
    std::error_code ec;
    const uintmax_t file_bytes = std::filesystem::file_size(path, ec);
    const size_t chunk =
        !ec && file_bytes < (uintmax_t{1} << 20) ? size_t{64} << 10 : size_t{1} << 20;
    gzbuffer(file, static_cast<unsigned>(chunk));
    std::string text;
    for (;;) {
        const size_t old_size = text.size();
        text.resize(old_size + chunk);
        const int n = gzread(file, text.data() + old_size, static_cast<unsigned>(chunk));
        if (n < 0) {
            int code = 0;
            std::string message = gzerror(file, &code);
            gzclose(file);
            fail(ErrorKind::kIo, "{}: read error: {}", path, message);
        }
        text.resize(old_size + static_cast<size_t>(n));
        if (text.size() > max_bytes) {
            gzclose(file);
            fail(ErrorKind::kInvalidArgument, "{}: more than {} bytes of text", path, max_bytes);
        }
        if (n == 0) break;
    }
    gzclose(file);
    return text;
}

}  // namespace bitttt::tok
