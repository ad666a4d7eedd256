// Helpers shared by the file-format tests: a scratch directory per test and raw file building.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace bitttt::testing {

// A fresh directory under the system temp dir, removed when the test ends.
class ScratchDir {
  public:
    ScratchDir() {
        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        path_ = std::filesystem::temp_directory_path() /
                (std::string("bitttt_") + info->test_suite_name() + "_" + info->name() + "_" +
                 std::to_string(::getpid()));
        std::filesystem::remove_all(path_);
        std::filesystem::create_directories(path_);
    }
    ~ScratchDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    std::string file(const std::string& name) const { return (path_ / name).string(); }
    const std::filesystem::path& path() const { return path_; }

  private:
    std::filesystem::path path_;
};

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
    // A new file each time: truncating a file that was just mapped can take milliseconds on
    // some file systems, which adds up in the loops over thousands of damaged files.
    std::filesystem::remove(path);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(out.good()) << path;
}

inline std::vector<uint8_t> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The message of the bitttt::Error that `fn` throws ("" if it throws nothing; any other
// exception type fails the test).
inline std::string error_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return e.what();
    } catch (const std::exception& e) {
        ADD_FAILURE() << "non-bitttt exception: " << e.what();
        return e.what();
    }
    return "";
}

// A raw safetensors file: 8-byte little-endian header length, the header text, `data`.
inline std::vector<uint8_t> raw_safetensors(const std::string& header,
                                            const std::vector<uint8_t>& data) {
    std::vector<uint8_t> out(8 + header.size() + data.size());
    const uint64_t n = header.size();
    std::memcpy(out.data(), &n, 8);
    if (!header.empty()) std::memcpy(out.data() + 8, header.data(), header.size());
    if (!data.empty()) std::memcpy(out.data() + 8 + header.size(), data.data(), data.size());
    return out;
}

}  // namespace bitttt::testing
