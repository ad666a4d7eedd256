// Byte-level BPE tokenizer that reads and writes the Hugging Face `tokenizer.json` format.
//
// Encoding gives the same ids as the Python `tokenizers` package for every file this class loads;
// a file that asks for something not implemented here (a normalizer, a WordPiece model, dropout,
// ...) is rejected at load with an error naming the file and the field, never silently encoded
// differently. Supported: model BPE (vocab, merges as "a b" strings or [a, b] pairs, unk_token,
// fuse_unk, byte_fallback, ignore_merges), pre-tokenizers ByteLevel, Split (regex or string, every
// behavior, invert) and Sequence of them (ByteLevel last), decoder ByteLevel or none,
// post-processor ByteLevel or none, added tokens (special or not; single_word/lstrip/rstrip must be
// false).
//
// Text handling rules:
//  - encode() takes UTF-8. Invalid UTF-8 is first replaced by U+FFFD, one per maximal invalid
//    subsequence (the Unicode "maximal subpart" rule, the same as Python's
//    `bytes.decode("utf-8", "replace")` and Rust's `String::from_utf8_lossy`), then encoded.
//  - decode() turns ids into bytes through the decoder and replaces invalid UTF-8 in the result in
//    the same way, as the `tokenizers` package does. decode(encode(x)) == x for valid UTF-8 x.
//  - Added tokens (e.g. `<|endoftext|>`) are matched in the text before pre-tokenization,
//    leftmost-longest. With allow_special = false, special added tokens are encoded as plain text
//    (the package's `encode_special_tokens = True`).
//
// A Tokenizer is immutable after construction, cheap to copy (shared state) and safe to use from
// several threads at once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bitttt {

// What train() reports while it runs: stage is "count" (words counted, done/total in bytes of text)
// or "merge" (merges done out of the merges the vocabulary size allows).
struct TokenizerTrainProgress {
    std::string_view stage;
    uint64_t done = 0;
    uint64_t total = 0;
};

struct TokenizerTrainOptions {
    // Final vocabulary size: special tokens + 256 byte tokens + merges. Training stops earlier when
    // no pair occurs at least min_frequency times.
    uint32_t vocab_size = 16384;
    uint64_t min_frequency = 2;
    // Special tokens take the first ids in this order (so `<|endoftext|>` is id 0). They are cut
    // out of the training text and never take part in merges.
    std::vector<std::string> special_tokens = {"<|endoftext|>"};
    int threads = 0;  // word counting threads; 0: all cores
    std::function<void(const TokenizerTrainProgress&)> progress;  // optional
};

class StreamingDecoder;

class Tokenizer {
  public:
    // Loads a tokenizer.json file; errors name the file and the offending field.
    static Tokenizer load(const std::string& path);
    // Parses tokenizer.json text; `origin` names it in error messages.
    static Tokenizer from_json(std::string_view json, std::string_view origin = "<tokenizer json>");
    // The tokenizer.json text (the layout the `tokenizers` package writes), and a file with it.
    std::string to_json() const;
    void save(const std::string& path) const;
    // XXH3-64 of to_json(): identifies the tokenizer (the trainer's token cache is keyed by it).
    // Computed on the first call only (a tokenizer never changes), so keying a cache costs nothing.
    uint64_t json_hash() const;

    // Byte-level BPE training in the manner of `tokenizers`' BpeTrainer with the GPT-2
    // pre-tokenizer (ByteLevel, no prefix space). Deterministic: each step merges the pair with
    // the highest count; ties go to the pair with the smallest (left id, right id). Files are
    // UTF-8 text, plain or gzip (.gz); the text is split at special tokens (documents separated by
    // `<|endoftext|>` lines).
    static Tokenizer train(const std::vector<std::string>& files,
                           const TokenizerTrainOptions& options);
    static Tokenizer train_from_text(std::string_view text, const TokenizerTrainOptions& options);

    // Text -> ids on the calling thread.
    std::vector<uint32_t> encode(std::string_view text, bool allow_special = true) const;
    // The same ids as encode(); the pieces between added tokens are encoded on `threads` threads
    // (0: all cores). For long texts such as a training corpus.
    std::vector<uint32_t> encode_parallel(std::string_view text, int threads = 0,
                                          bool allow_special = true) const;
    // encode() of each text, the texts spread over `threads` threads (0: all cores).
    std::vector<std::vector<uint32_t>> encode_batch(std::span<const std::string_view> texts,
                                                    int threads = 0,
                                                    bool allow_special = true) const;
    // Frees the word caches and scratch buffers that encoding keeps for later calls (they are
    // rebuilt on demand, so only speed changes). Safe while other threads encode with this
    // tokenizer: buffers in use are kept.
    void release_caches() const;

    // Ids -> text. Throws Error for an id that names no token. skip_special drops special tokens.
    std::string decode(std::span<const uint32_t> ids, bool skip_special = false) const;
    // For generation: emits text as ids arrive, holding back bytes of an unfinished character.
    StreamingDecoder streaming_decoder(bool skip_special = false) const;

    // One more than the largest id (the size an embedding table needs).
    uint32_t vocab_size() const;
    std::optional<uint32_t> token_to_id(std::string_view token) const;
    // The token string as stored in tokenizer.json (byte-level form, e.g. "Ġthe"); nullopt for an
    // id that names no token.
    std::optional<std::string> id_to_token(uint32_t id) const;
    bool is_special(uint32_t id) const;

    struct Impl;

  private:
    explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
    std::shared_ptr<const Impl> impl_;
    friend class StreamingDecoder;
};

// Turns a stream of ids into text pieces that are always complete UTF-8: bytes of a character
// split across tokens are held until the character is complete. The concatenation of every
// push() and the final finish() equals Tokenizer::decode() of all the ids.
class StreamingDecoder {
  public:
    // Text that is complete after this id (possibly empty). Throws Error for an unknown id.
    std::string push(uint32_t id);
    // Flushes held bytes (an unfinished character becomes U+FFFD) and starts over.
    std::string finish();
    // Drops held bytes and starts over.
    void reset();

  private:
    friend class Tokenizer;
    StreamingDecoder(std::shared_ptr<const Tokenizer::Impl> impl, bool skip_special)
        : impl_(std::move(impl)), skip_special_(skip_special) {}
    std::shared_ptr<const Tokenizer::Impl> impl_;
    bool skip_special_ = false;
    bool first_token_ = true;  // no separator before the first token (decoder-less tokenizers)
    std::string pending_;      // undecided bytes: a prefix of a UTF-8 sequence
};

}  // namespace bitttt
