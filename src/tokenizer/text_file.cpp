#include "tokenizer/text_file.hpp"

#include <zlib.h>

#include <algorithm>
#include <filesystem>

#include "core/error.hpp"

namespace bitttt::tok {

std::string read_text_file(const std::string& path, size_t max_bytes) {
    // gzread passes plain files through unchanged, so one code path reads both.
    gzFile file = gzopen(path.c_str(), "rb");
    check(file != nullptr, ErrorKind::kIo, "{}: cannot open file", path);
    // The read chunk (and zlib's buffers, 3x gzbuffer's size) follow the file's size, from 4 KiB
    // up to 1 MiB: each chunk is zeroed before it is read into, and the trainer's token cache
    // (and its fuzz target, thousands of times a second) reads files of a few bytes. A gzip file
    // is read in chunks of its compressed size; the text grows geometrically all the same.
    std::error_code ec;
    const uintmax_t file_bytes = std::filesystem::file_size(path, ec);
    constexpr uintmax_t kMinChunk = uintmax_t{4} << 10, kMaxChunk = uintmax_t{1} << 20;
    const size_t chunk =
        ec ? kMaxChunk : static_cast<size_t>(std::clamp(file_bytes + 1, kMinChunk, kMaxChunk));
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
        // A short read means the end of the file (gzread reads until it has `chunk` bytes, the
        // end or an error): no further call needed.
        if (n == 0 || gzeof(file)) break;
    }
    // A gzip stream cut short ends the reads without a negative count: zlib only notes it.
    int code = Z_OK;
    const std::string message = gzerror(file, &code);
    gzclose(file);
    check(code == Z_OK, ErrorKind::kIo, "{}: read error: {}", path, message);
    return text;
}

}  // namespace bitttt::tok
