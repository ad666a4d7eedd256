// Atomic file replacement: the new contents go to a temporary file in the same directory, which
// is flushed to disk (fsync) and renamed over the target, and then the directory is flushed so the
// rename itself is durable. A reader (or a crash at any moment) sees either the old file or the
// complete new one, never a torn write; this is what keeps a checkpoint safe while a new one is
// being saved. If anything fails, or the writer is destroyed without commit(), the temporary file
// is removed and the old file is left as it was.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace bitttt::io {

class AtomicFileWriter {
  public:
    // Creates the temporary file `<path>.tmp.<pid>.<n>` (mode 0666 minus the umask, like any new
    // file). Throws Error (kIo) naming `path` when the directory is not writable.
    explicit AtomicFileWriter(std::string path);
    ~AtomicFileWriter();  // removes the temporary file unless committed
    AtomicFileWriter(const AtomicFileWriter&) = delete;
    AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

    void write(const void* data, std::size_t bytes);
    void write(std::span<const uint8_t> bytes) { write(bytes.data(), bytes.size()); }
    void write(std::string_view text) { write(text.data(), text.size()); }
    void write_zeros(std::size_t bytes);
    // Rewrites bytes already written at `offset` (e.g. a header whose checksum is known only
    // after the body has been streamed); offset + bytes must not pass bytes_written().
    void overwrite(std::uint64_t offset, const void* data, std::size_t bytes);
    // Flushes the data, renames the temporary file over the target and flushes the directory.
    void commit();

    std::uint64_t bytes_written() const { return written_; }
    const std::string& path() const { return path_; }
    const std::string& temp_path() const { return temp_path_; }

  private:
    void abandon() noexcept;

    std::string path_;
    std::string temp_path_;
    int fd_ = -1;
    std::uint64_t written_ = 0;
    bool committed_ = false;
};

// Writes `bytes` to `path` atomically (a small file such as config.json).
void write_file_atomic(const std::string& path, std::span<const uint8_t> bytes);
void write_file_atomic(const std::string& path, std::string_view text);

}  // namespace bitttt::io
