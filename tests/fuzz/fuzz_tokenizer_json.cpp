// Fuzz target: tokenizer.json (tokenizer/tokenizer_json.cpp). An accepted tokenizer encodes and
// decodes a fixed mixed text (ASCII, multi-byte UTF-8, an invalid byte, a special token), every id
// it returns is in its vocabulary, and decoding the ids gives back valid UTF-8.
#include <bitttt/tokenizer.hpp>
#include <cstdint>
#include <string_view>

#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    bitttt::fuzz::expect_only_bitttt_errors([&] {
        const std::string_view json(reinterpret_cast<const char*>(data), size);
        const auto tok = bitttt::Tokenizer::from_json(json, "fuzz/tokenizer.json");
        static constexpr std::string_view kText =
            "Once upon a time, 42 caf\xc3\xa9s \xe2\x82\xac \xff <|endoftext|>  tabs\t\n end";
        for (bool special : {true, false}) {
            const auto ids = tok.encode(kText, special);
            for (uint32_t id : ids)
                if (id >= tok.vocab_size()) std::abort();
            (void)tok.decode(ids, false);
            (void)tok.decode(ids, true);
        }
        (void)tok.to_json();
    });
    return 0;
}
