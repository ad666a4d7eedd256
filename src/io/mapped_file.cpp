#include "io/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.hpp"

namespace bitttt::io {
namespace {

// Closes a descriptor on every path out of a function.
struct FdGuard {
    int fd;
    ~FdGuard() {
        if (fd >= 0) ::close(fd);
    }
};

// Opens `path` read-only and checks that it is a regular file; returns its size.
int open_regular(const std::string& path, std::size_t* size) {
    int fd;
    do {
        // O_NONBLOCK: opening a FIFO must not wait for a writer (it is then rejected below as
        // not a regular file); it changes nothing for regular files.
        fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        if (errno == ENOENT) fail(ErrorKind::kIo, "{}: no such file", path);
        fail(ErrorKind::kIo, "{}: cannot open: {}", path, std::strerror(errno));
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        int err = errno;
        ::close(fd);
        fail(ErrorKind::kIo, "{}: cannot stat: {}", path, std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        if (S_ISDIR(st.st_mode)) fail(ErrorKind::kIo, "{}: is a directory, not a file", path);
        fail(ErrorKind::kIo, "{}: not a regular file", path);
    }
    *size = static_cast<std::size_t>(st.st_size);
    return fd;
}

}  // namespace

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
    std::size_t size = 0;
    FdGuard fd{open_regular(path, &size)};
    check(size > 0, ErrorKind::kIo, "{}: file is empty", path);
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.fd, 0);
    check(p != MAP_FAILED, ErrorKind::kIo, "{}: cannot map {} bytes: {}", path, size,
          std::strerror(errno));
    // The mapping stays valid after the descriptor is closed.
    return std::shared_ptr<const MappedFile>(
        new MappedFile(path, static_cast<const uint8_t*>(p), size));
}

MappedFile::~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

std::string read_text_file(const std::string& path) {
    std::size_t size = 0;
    FdGuard fd{open_regular(path, &size)};
    std::string text(size, '\0');
    std::size_t done = 0;
    while (done < size) {
        ssize_t n = ::read(fd.fd, text.data() + done, size - done);
        if (n < 0 && errno == EINTR) continue;
        check(n >= 0, ErrorKind::kIo, "{}: read error: {}", path, std::strerror(errno));
        if (n == 0) break;  // the file shrank while we read it
        done += static_cast<std::size_t>(n);
    }
    text.resize(done);
    return text;
}

}  // namespace bitttt::io
