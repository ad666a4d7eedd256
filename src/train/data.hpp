// Training data (DESIGN.md §2.4): UTF-8 text, plain or .gz, documents separated by lines that
// hold exactly `<|endoftext|>`; tokenized once into a cached token file next to a small JSON
// index, reused while the source file and the tokenizer are unchanged; random batches from a
// seeded generator.
#pragma once

#include <bitttt/tokenizer.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/rng.hpp"

namespace bitttt::train {

inline constexpr std::string_view kEndOfText = "<|endoftext|>";

// The documents of `text`: the pieces between `<|endoftext|>` lines (the separator lines and the
// newline before them are dropped; empty pieces are skipped).
std::vector<std::string_view> split_documents(std::string_view text);

// Every document's ids followed by the end-of-text id (`<|endoftext|>`, which must exist).
std::vector<int32_t> tokenize_documents(std::string_view text, const Tokenizer& tokenizer);

struct TokenCorpus {
    std::vector<int32_t> tokens;
    std::string cache_path;   // the token file
    bool from_cache = false;  // true when an existing cache was reused
};

// Tokens of text_path with this tokenizer, from the cache in cache_dir when the index there
// matches (source size and XXH3 hash of its bytes, XXH3 of the tokenizer's JSON); otherwise
// tokenizes and writes `<cache_dir>/<file name>.<key>.tokens` (uint16 when every id fits, else
// uint32, little-endian) and `.json` atomically.
TokenCorpus load_corpus(const std::string& text_path, const Tokenizer& tokenizer,
                        const std::string& cache_dir);

// The byte-level tokenizer used when no tokenizer is given: `<|endoftext|>` = 0, then the 256
// bytes, no merges (vocabulary 257).
Tokenizer byte_level_tokenizer();

// Batches of B rows, each T+1 consecutive tokens from a uniformly random start (inputs are the
// first T, targets the last T). The generator's state is the data position of a checkpoint.
class BatchSampler {
  public:
    BatchSampler(const std::vector<int32_t>& tokens, int64_t B, int64_t T, uint64_t seed);
    void next(int32_t* inputs, int32_t* targets);  // each [B, T]
    Rng& rng() { return rng_; }

  private:
    const std::vector<int32_t>& tokens_;
    int64_t B_, T_;
    Rng rng_;
};

}  // namespace bitttt::train
