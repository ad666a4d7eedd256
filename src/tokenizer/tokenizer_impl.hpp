// The state behind bitttt::Tokenizer (include/bitttt/tokenizer.hpp), shared by its parts:
// tokenizer_json.cpp builds it from tokenizer.json, tokenizer.cpp encodes and decodes with it,
// trainer.cpp creates one from training.
#pragma once

#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "bitttt/tokenizer.hpp"
#include "tokenizer/bpe.hpp"
#include "tokenizer/pre_tokenizer.hpp"

namespace bitttt::tok {

struct AddedToken {
    std::string content;
    uint32_t id = 0;
    bool special = false;
    bool normalized = false;
};

// Leftmost-longest search for added tokens (the package uses a leftmost-longest Aho-Corasick
// automaton; added tokens are few, so candidates indexed by first byte do the same job).
class AddedTokenMatcher {
  public:
    void add(const AddedToken* token);
    // Orders each candidate list longest first; call once after the last add().
    void prepare();
    bool empty() const { return count_ == 0; }
    // First match at or after `from`: the earliest start, the longest token there.
    bool find(std::string_view text, size_t from, size_t& start, const AddedToken*& token) const;

  private:
    std::vector<const AddedToken*> by_first_byte_[256];  // longest first
    size_t count_ = 0;
};

// Per-thread encoding state: the word cache and reusable buffers.
struct EncodeScratch {
    // pre-token bytes -> (offset, count) of its ids in cache_ids
    StringMap<std::pair<uint32_t, uint32_t>> cache;
    std::vector<uint32_t> cache_ids;
    BpeScratch bpe;
    PreTokenizeScratch pre;
    std::string sanitized;
};

enum class DecoderKind { kNone, kByteLevel };

}  // namespace bitttt::tok

namespace bitttt {

struct Tokenizer::Impl {
    Impl(tok::BpeModel model_in) : model(std::move(model_in)) {}

    tok::BpeModel model;
    std::vector<tok::AddedToken> added;       // in tokenizer.json order
    tok::AddedTokenMatcher match_plain;       // added tokens with normalized = false
    tok::AddedTokenMatcher match_normalized;  // added tokens with normalized = true
    tok::PreTokenizer pre_tokenizer;
    tok::DecoderKind decoder = tok::DecoderKind::kNone;

    // Per id: the bytes the decoder makes of the token, whether it is special, whether it exists.
    std::vector<std::string> decoded;
    std::vector<uint8_t> special, exists;

    // The JSON of the parts written back verbatim by to_json().
    nlohmann::json normalizer_json, pre_tokenizer_json, post_processor_json, decoder_json;

    // Called once all fields above are set: builds matchers and the per-id tables.
    void finalize();

    std::optional<uint32_t> token_to_id(std::string_view token) const;
    const std::string* id_to_token(uint32_t id) const;

    // Pool of encoding scratch states, one per concurrently encoding thread.
    std::unique_ptr<tok::EncodeScratch> acquire_scratch() const;
    void release_scratch(std::unique_ptr<tok::EncodeScratch> scratch) const;
    void clear_scratch_pool() const;

    // Encodes text that contains no added tokens (pre-tokenize, then BPE each piece).
    void encode_plain(std::string_view text, std::vector<uint32_t>& out,
                      tok::EncodeScratch& scratch) const;
    // Splits text at added tokens: calls on_text(view) for text and on_token(id) for tokens.
    template <typename OnText, typename OnToken>
    void split_added(std::string_view text, bool allow_special, OnText&& on_text,
                     OnToken&& on_token) const;

    std::vector<uint32_t> encode(std::string_view text, bool allow_special,
                                 tok::EncodeScratch& scratch) const;

    // Tokenizer::json_hash(), computed once.
    mutable std::once_flag json_hash_once;
    mutable uint64_t json_hash = 0;

  private:
    mutable std::mutex pool_mutex_;
    mutable std::vector<std::unique_ptr<tok::EncodeScratch>> pool_;
};

}  // namespace bitttt

namespace bitttt::tok {

// Builds a Tokenizer::Impl from tokenizer.json text; `origin` names it in errors.
std::shared_ptr<Tokenizer::Impl> parse_tokenizer_json(std::string_view json,
                                                      std::string_view origin);
std::string write_tokenizer_json(const Tokenizer::Impl& impl);

}  // namespace bitttt::tok
