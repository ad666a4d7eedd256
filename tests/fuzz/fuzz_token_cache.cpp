// Fuzz target: the token cache of the trainer (train/data.hpp, load_corpus): a JSON index next to
// a raw token file, both of which may be damaged or hostile. The input is the index text, a NUL
// byte, then the token file's bytes. In the index, the placeholders @SRC@ and @TOK@ are replaced
// by the real XXH3 digests of the source text and the tokenizer (so mutations get past the
// "is this cache for this source" check and reach the token file's validation).
//
// Whatever the cache holds, load_corpus must return tokens that are all in the vocabulary, and
// when it says it rebuilt the cache the tokens must be the tokenization of the source.
#include <xxhash.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>

#include "core/threads.hpp"
#include "fuzz_util.hpp"
#include "train/data.hpp"

namespace {

constexpr char kSource[] = "Once upon a time there was a cat.\n<|endoftext|>\nThe dog ran far.\n";

std::string hex64(uint64_t h) {
    return fmt::format("{:016x}", h);
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
    for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size())
        s.replace(pos, from.size(), to);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // Two threads keep the parallel tokenization path in play; the default (every core) would
    // start a thread per core in each of the many fuzzing processes of a campaign.
    static const bool threads_set = (bitttt::set_num_threads(2), true);
    (void)threads_set;
    static const bitttt::Tokenizer tok = bitttt::train::byte_level_tokenizer();
    static const std::string tok_json = tok.to_json();
    static const std::string tok_hash = hex64(XXH3_64bits(tok_json.data(), tok_json.size()));
    // load_corpus keys the cache by the memoized json_hash(); it must be the hash of the JSON.
    static const bool hash_checked =
        (tok.json_hash() == XXH3_64bits(tok_json.data(), tok_json.size()) || (std::abort(), false));
    (void)hash_checked;
    static const std::string src_hash = hex64(XXH3_64bits(kSource, sizeof(kSource) - 1));
    static const std::string key = hex64(XXH3_64bits((src_hash + tok_hash).data(), 32));
    static const std::vector<int32_t> expected = bitttt::train::tokenize_documents(kSource, tok);

    const auto* nul = std::find(data, data + size, uint8_t{0});
    std::string index(reinterpret_cast<const char*>(data), static_cast<size_t>(nul - data));
    replace_all(index, "@SRC@", src_hash);
    replace_all(index, "@TOK@", tok_hash);
    const uint8_t* tokens = nul == data + size ? nul : nul + 1;

    // The source text and the cache folder, once: load_corpus only reads the source, and it
    // recreates the folder if it went missing.
    static const std::string text_path = bitttt::fuzz::write_scratch(
        "data.txt", reinterpret_cast<const uint8_t*>(kSource), sizeof(kSource) - 1);
    static const std::string cache_dir = [] {
        const auto d = bitttt::fuzz::scratch_dir() / "cache";
        std::filesystem::create_directories(d);
        return d.string();
    }();
    const std::string stem = "cache/data.txt." + key;
    bitttt::fuzz::write_scratch(stem + ".json", reinterpret_cast<const uint8_t*>(index.data()),
                                index.size());
    bitttt::fuzz::write_scratch(stem + ".tokens", tokens,
                                static_cast<size_t>(data + size - tokens));
    bitttt::fuzz::expect_only_bitttt_errors([&] {
        const auto corpus = bitttt::train::load_corpus(text_path, tok, cache_dir);
        for (int32_t id : corpus.tokens)
            if (id < 0 || static_cast<uint32_t>(id) >= tok.vocab_size()) std::abort();
        if (!corpus.from_cache && corpus.tokens != expected) std::abort();
    });
    // Each run frees what it allocated (fuzz_tokenizer_text.cpp says why that matters).
    tok.release_caches();
    return 0;
}
