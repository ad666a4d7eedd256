// Fuzz target: the .bitt reader (io/bitt.hpp) on arbitrary files. The checksum is checked too,
// so mutated bodies are mostly rejected there; the header parse (magic, length, JSON, config,
// ternary shapes, body) is what the mutations exercise. Inputs whose first byte is odd are read
// with the checksum off, which lets the fuzzer reach the body's safetensors parse as well.
#include <cstdint>

#include "fuzz_util.hpp"
#include "io/bitt.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    // The first byte picks the mode and is not part of the file, so the corpus's files are
    // real .bitt files behind one byte.
    const bool verify = (data[0] & 1) == 0;
    const auto path = bitttt::fuzz::write_scratch("model.bitt", data + 1, size - 1);
    bitttt::fuzz::expect_only_bitttt_errors([&] {
        bitttt::io::BittReadOptions options;
        options.verify_checksum = verify;
        auto file = bitttt::io::read_bitt(path, options);
        for (const auto& [name, shape] : file.ternary_shapes) (void)file.body.at(name);
    });
    return 0;
}
