#include "tokenizer/text_file.hpp"

#include <zlib.h>

#include "core/error.hpp"

namespace bitttt::tok {

std::string read_text_file(const std::string& path, size_t max_bytes) {
    // gzread passes plain files through unchanged, so one code path reads both.
    gzFile file = gzopen(path.c_str(), "rb");
    check(file != nullptr, ErrorKind::kIo, "{}: cannot open file", path);
    gzbuffer(file, 1 << 20);
    std::string text;
    constexpr size_t kChunk = 1 << 20;
    for (;;) {
        const size_t old_size = text.size();
        text.resize(old_size + kChunk);
        const int n = gzread(file, text.data() + old_size, static_cast<unsigned>(kChunk));
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
