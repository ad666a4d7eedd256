#include "io/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <vector>

#include "core/error.hpp"

namespace bitttt::io {
namespace {

std::string parent_dir(const std::string& path) {
    std::size_t slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

// Distinguishes temporary names of writers in one process; the pid separates processes.
std::atomic<std::uint64_t> g_temp_counter{0};

// Deletes the temporary files "<path>.tmp.<pid>.<n>" that writers killed mid-write (SIGKILL, power
// loss) left next to `path`: without this, every crash during a checkpoint save leaks a file as
// large as the checkpoint. Only files of processes that no longer exist are touched (kill(pid, 0)
// fails with ESRCH), so a live writer's file is never removed. Best effort: errors are ignored.
void remove_stale_temps(const std::string& path) {
    namespace fs = std::filesystem;
    const fs::path target(path);
    const std::string prefix = target.filename().string() + ".tmp.";
    const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
        const char* first = name.data() + prefix.size();
        const char* last = name.data() + name.size();
        long pid = 0;
        const auto [end_of_pid, err] = std::from_chars(first, last, pid);
        if (err != std::errc() || end_of_pid == last || *end_of_pid != '.' || pid <= 0) continue;
        if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive
        std::error_code ignored;
        fs::remove(it->path(), ignored);
    }
}

}  // namespace

AtomicFileWriter::AtomicFileWriter(std::string path) : path_(std::move(path)) {
    check(!path_.empty(), ErrorKind::kInvalidArgument, "empty output file name");
    struct stat st {};
    if (::stat(path_.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
        fail(ErrorKind::kIo, "{}: is a directory, cannot write a file there", path_);
    remove_stale_temps(path_);
    // O_EXCL never reuses somebody else's file; retry with the next number if the name is taken.
    for (int attempt = 0; attempt < 100; ++attempt) {
        temp_path_ = path_ + ".tmp." + std::to_string(::getpid()) + "." +
                     std::to_string(g_temp_counter.fetch_add(1));
        fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd_ >= 0 || errno != EEXIST) break;
    }
    check(fd_ >= 0, ErrorKind::kIo, "{}: cannot create temporary file {}: {}", path_, temp_path_,
          std::strerror(errno));
}

AtomicFileWriter::~AtomicFileWriter() {
    if (!committed_) abandon();
}

void AtomicFileWriter::abandon() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
    temp_path_.clear();
}

void AtomicFileWriter::write(const void* data, std::size_t bytes) {
    check(fd_ >= 0, ErrorKind::kInternal, "{}: write after commit", path_);
    const char* p = static_cast<const char*>(data);
    while (bytes > 0) {
        ssize_t n = ::write(fd_, p, bytes);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int err = n < 0 ? errno : ENOSPC;
            abandon();
            fail(ErrorKind::kIo, "{}: write failed after {} bytes: {}", path_, written_,
                 std::strerror(err));
        }
        p += n;
        bytes -= static_cast<std::size_t>(n);
        written_ += static_cast<std::uint64_t>(n);
    }
}

void AtomicFileWriter::write_zeros(std::size_t bytes) {
    static const std::vector<char> zeros(4096, 0);
    while (bytes > 0) {
        std::size_t n = std::min(bytes, zeros.size());
        write(zeros.data(), n);
        bytes -= n;
    }
}

void AtomicFileWriter::overwrite(std::uint64_t offset, const void* data, std::size_t bytes) {
    check(fd_ >= 0, ErrorKind::kInternal, "{}: write after commit", path_);
    check(offset <= written_ && bytes <= written_ - offset, ErrorKind::kInternal,
          "{}: overwrite of {} bytes at {} past the {} bytes written", path_, bytes, offset,
          written_);
    const char* p = static_cast<const char*>(data);
    while (bytes > 0) {
        ssize_t n = ::pwrite(fd_, p, bytes, static_cast<off_t>(offset));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int err = n < 0 ? errno : ENOSPC;
            abandon();
            fail(ErrorKind::kIo, "{}: write failed: {}", path_, std::strerror(err));
        }
        p += n;
        offset += static_cast<std::uint64_t>(n);
        bytes -= static_cast<std::size_t>(n);
    }
}

void AtomicFileWriter::commit() {
    check(fd_ >= 0, ErrorKind::kInternal, "{}: commit twice", path_);
    if (::fsync(fd_) != 0) {
        int err = errno;
        abandon();
        fail(ErrorKind::kIo, "{}: fsync failed: {}", path_, std::strerror(err));
    }
    int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) {
        int err = errno;
        abandon();
        fail(ErrorKind::kIo, "{}: close failed: {}", path_, std::strerror(err));
    }
    if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
        int err = errno;
        abandon();
        fail(ErrorKind::kIo, "{}: cannot rename {} over it: {}", path_, temp_path_,
             std::strerror(err));
    }
    committed_ = true;
    // The rename is a change to the directory: flush it too, or a crash can forget it. Some file
    // systems refuse fsync on a directory; the data itself is already safe by then.
    int dir = ::open(parent_dir(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        ::fsync(dir);
        ::close(dir);
    }
}

void write_file_atomic(const std::string& path, std::span<const uint8_t> bytes) {
    AtomicFileWriter out(path);
    out.write(bytes);
    out.commit();
}

void write_file_atomic(const std::string& path, std::string_view text) {
    AtomicFileWriter out(path);
    out.write(text);
    out.commit();
}

}  // namespace bitttt::io
