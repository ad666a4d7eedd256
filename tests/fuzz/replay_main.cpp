// A stand-in for libFuzzer's driver, so the fuzz targets also run in the ordinary build (any
// compiler, no sanitizer runtime needed): replays every file of the given corpus directories, then
// `--mutations N` cheap random mutations of each (bit flips, interesting bytes, truncation,
// duplicated and deleted ranges), seeded for repeatability. It is a smoke test of the corpus and
// of the targets' invariants, not a coverage-guided fuzzer: `make fuzz` is that.
//
//   replay_<target> [--mutations N] [--seed S] PATH...   (PATH: a file or a directory of files)
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/rng.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::vector<uint8_t> read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void mutate(std::vector<uint8_t>& b, bitttt::Rng& rng) {
    static constexpr uint8_t kInteresting[] = {0,   1,   0x7f, 0x80, 0xff, '"', '{', '}',
                                               '[', ']', ',',  ':',  '-',  '9', 'e', '\\'};
    const int edits = 1 + static_cast<int>(rng.next_u64() % 4);
    for (int e = 0; e < edits; ++e) {
        const size_t n = b.size();
        const size_t at = n ? rng.next_u64() % n : 0;
        switch (rng.next_u64() % 6) {
            case 0:
                if (n) b[at] ^= static_cast<uint8_t>(1u << (rng.next_u64() % 8));
                break;
            case 1:
                if (n) b[at] = kInteresting[rng.next_u64() % sizeof(kInteresting)];
                break;
            case 2:
                b.resize(at);
                break;
            case 3: {  // duplicate a short range
                const size_t len = n ? std::min<size_t>(n - at, 1 + rng.next_u64() % 16) : 0;
                std::vector<uint8_t> piece(b.begin() + at, b.begin() + at + len);
                b.insert(b.begin() + at, piece.begin(), piece.end());
                break;
            }
            case 4: {  // delete a short range
                const size_t len = n ? std::min<size_t>(n - at, 1 + rng.next_u64() % 16) : 0;
                b.erase(b.begin() + at, b.begin() + at + len);
                break;
            }
            default:
                if (n) b[at] = static_cast<uint8_t>(rng.next_u64());
                break;
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    long mutations = 0;
    uint64_t seed = 1;
    std::vector<std::filesystem::path> files;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--mutations" && i + 1 < argc) {
            mutations = std::strtol(argv[++i], nullptr, 10);
        } else if (arg == "--seed" && i + 1 < argc) {
            seed = std::strtoull(argv[++i], nullptr, 10);
        } else if (std::filesystem::is_directory(arg)) {
            for (const auto& e : std::filesystem::directory_iterator(arg))
                if (e.is_regular_file()) files.push_back(e.path());
        } else if (std::filesystem::is_regular_file(arg)) {
            files.emplace_back(arg);
        } else {
            std::fprintf(stderr, "replay: no such file or directory: %s\n", arg.c_str());
            return 2;
        }
    }
    if (files.empty()) {
        std::fprintf(stderr, "replay: no inputs\n");
        return 2;
    }
    std::sort(files.begin(), files.end());
    bitttt::Rng rng(seed);
    long runs = 0;
    for (const auto& f : files) {
        const auto original = read_file(f);
        LLVMFuzzerTestOneInput(original.data(), original.size());
        ++runs;
        for (long m = 0; m < mutations; ++m) {
            auto b = original;
            mutate(b, rng);
            LLVMFuzzerTestOneInput(b.data(), b.size());
            ++runs;
        }
    }
    std::printf("replay: %zu files, %ld runs, no findings\n", files.size(), runs);
    return 0;
}
