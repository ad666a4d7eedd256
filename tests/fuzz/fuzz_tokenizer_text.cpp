// Fuzz target: encode/decode of arbitrary text with a small valid byte-level BPE tokenizer (one
// trained at start-up from a fixed text). For valid UTF-8 input decode(encode(x)) == x; for any
// input the ids are in the vocabulary, the parallel encoder agrees with the serial one and the
// streaming decoder agrees with decode().
#include <bitttt/tokenizer.hpp>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_util.hpp"
#include "tokenizer/utf8.hpp"

namespace {

const bitttt::Tokenizer& tokenizer() {
    static const bitttt::Tokenizer tok = [] {
        bitttt::TokenizerTrainOptions options;
        options.vocab_size = 300;
        options.threads = 1;
        std::string text;
        for (int i = 0; i < 20; ++i)
            text +=
                "Once upon a time there was a little cat. The cat liked the sun. caf\xc3\xa9 \n";
        return bitttt::Tokenizer::train_from_text(text, options);
    }();
    return tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto& tok = tokenizer();
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    bitttt::fuzz::expect_only_bitttt_errors([&] {
        const auto ids = tok.encode(text, true);
        for (uint32_t id : ids)
            if (id >= tok.vocab_size()) std::abort();
        const std::string back = tok.decode(ids);
        if (bitttt::tok::utf8_is_valid(text) && back != text) std::abort();
        if (tok.encode_parallel(text, 2, true) != ids) std::abort();
        auto stream = tok.streaming_decoder();
        std::string streamed;
        for (uint32_t id : ids) streamed += stream.push(id);
        streamed += stream.finish();
        if (streamed != back) std::abort();
    });
    // Drop the word caches this input filled: every run then starts from the same state (the BPE
    // merges run for every word instead of mostly hitting the cache), and each run frees all it
    // allocated, so libFuzzer's leak check stays on. Otherwise nearly every mutation grows a cache,
    // libFuzzer reruns it and scans the heap for leaks (~30 x slower) and after 1000 such scans
    // turns leak detection off for the rest of the run.
    tok.release_caches();
    return 0;
}
