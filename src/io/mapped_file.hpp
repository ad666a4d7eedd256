// A read-only memory mapping of a whole file. Model files are mapped, never read into buffers:
// the weights the forward reads point straight into the mapping, so loading costs no copy and the
// page cache is shared between processes. Hold it through a shared_ptr for as long as anything
// points into it (ModelWeights::storage does).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace bitttt::io {

class MappedFile {
  public:
    // Maps `path`. Throws Error (kIo) naming the path for a missing file, a directory or other
    // non-regular file, an empty file, or a file that cannot be opened or mapped.
    static std::shared_ptr<const MappedFile> open(const std::string& path);

    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    std::span<const uint8_t> bytes() const { return {data_, size_}; }
    const uint8_t* data() const { return data_; }
    std::size_t size() const { return size_; }
    const std::string& path() const { return path_; }

  private:
    MappedFile(std::string path, const uint8_t* data, std::size_t size)
        : path_(std::move(path)), data_(data), size_(size) {}

    std::string path_;
    const uint8_t* data_ = nullptr;
    std::size_t size_ = 0;
};

// Reads a whole (small) file into a string, e.g. config.json or tokenizer.json; the same errors
// as MappedFile::open, except that an empty file gives an empty string.
std::string read_text_file(const std::string& path);

}  // namespace bitttt::io
