// Shared pieces of the fuzz targets (tests/fuzz/fuzz_*.cpp). Each target defines
// LLVMFuzzerTestOneInput; it is linked either with libFuzzer (clang, -fsanitize=fuzzer: the
// fuzzing build of cmake/fuzz.cmake) or with replay_main.cpp (any compiler: replays a corpus and
// cheap mutations of it under ctest).
//
// The contract every reader of outside data must keep: any input either parses or throws
// bitttt::Error. Any other exception escaping is a finding, reported by aborting (so libFuzzer
// saves the input as a crash), as are the sanitizers' reports.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <typeinfo>

#include "core/error.hpp"

namespace bitttt::fuzz {

// Runs `body`; a bitttt::Error is the expected way to reject an input, anything else aborts.
template <typename Fn>
void expect_only_bitttt_errors(Fn&& body) {
    try {
        body();
    } catch (const bitttt::Error& e) {
        // Rejected with a proper error: fine. BITTTT_FUZZ_VERBOSE=1 shows why (to check that the
        // seeds of a corpus are accepted, i.e. reach past the first check).
        static const bool verbose = std::getenv("BITTTT_FUZZ_VERBOSE") != nullptr;
        if (verbose) std::fprintf(stderr, "fuzz: rejected: %s\n", e.what());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fuzz: a non-bitttt exception escaped (%s): %s\n", typeid(e).name(),
                     e.what());
        std::abort();
    }
}

// A scratch directory private to this process (readers that take paths get their input here),
// removed at a normal exit (a crash leaves it, next to the crash's input).
struct ScratchDir {
    std::filesystem::path path;
    ~ScratchDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

inline const std::filesystem::path& scratch_dir() {
    static const ScratchDir dir = [] {
        std::filesystem::path base = std::filesystem::exists("/dev/shm")
                                         ? std::filesystem::path("/dev/shm")
                                         : std::filesystem::temp_directory_path();
        auto d = base / ("bitttt_fuzz_" + std::to_string(::getpid()));
        std::filesystem::create_directories(d);
        return ScratchDir{d};
    }();
    return dir.path;
}

// Writes bytes to a fresh file `name` in the scratch directory and returns its path.
inline std::string write_scratch(const std::string& name, const uint8_t* data, size_t size) {
    const auto path = (scratch_dir() / name).string();
    std::filesystem::remove(path);  // a new inode: never truncate a file that may still be mapped
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    out.close();
    if (!out) {
        std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
        std::abort();
    }
    return path;
}

}  // namespace bitttt::fuzz
