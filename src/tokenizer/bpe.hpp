// The BPE model of tokenizer.json: vocabulary, ranked merges, and the word -> ids algorithm of
// the `tokenizers` package (repeatedly merge the adjacent pair of lowest rank, leftmost first).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/hash_maps.hpp"

namespace bitttt::tok {

struct BpeOptions {
    std::optional<std::string> unk_token;
    bool fuse_unk = false;
    bool byte_fallback = false;
    bool ignore_merges = false;
};

// Reusable buffers of one encoding thread.
struct BpeScratch {
    std::vector<uint32_t> ids, ranks, merge_ids;
    std::vector<int32_t> prev, next;
    std::string mapped;
};

class BpeModel {
  public:
    // `vocab` maps token -> id; `merges` are token-string pairs in rank order. `what` names the
    // source in error messages. Throws Error for merges that name unknown tokens, ids >= 2^24,
    // duplicate ids, a missing unk token.
    BpeModel(std::vector<std::pair<std::string, uint32_t>> vocab,
             std::vector<std::pair<std::string, std::string>> merges, BpeOptions options,
             std::string_view what);

    // Appends the ids of one pre-token. With byte_mapped, `word` holds raw bytes that stand for
    // their ByteLevel characters (the vocabulary is in ByteLevel form); otherwise `word` is the
    // token text itself, split into UTF-8 characters.
    void encode_word(std::string_view word, bool byte_mapped, std::vector<uint32_t>& out,
                     BpeScratch& scratch) const;

    std::optional<uint32_t> token_to_id(std::string_view token) const {
        auto it = vocab_.find(token);
        return it == vocab_.end() ? std::nullopt : std::optional<uint32_t>(it->second);
    }
    // nullptr for an id without a token.
    const std::string* id_to_token(uint32_t id) const {
        return id < id_to_token_.size() && has_id_[id] ? &id_to_token_[id] : nullptr;
    }
    uint32_t id_limit() const { return static_cast<uint32_t>(id_to_token_.size()); }
    const std::vector<std::pair<std::string, std::string>>& merges() const { return merges_; }
    const BpeOptions& options() const { return options_; }

  private:
    void initial_symbols(std::string_view word, bool byte_mapped, std::vector<uint32_t>& ids) const;
    void merge_small(std::vector<uint32_t>& ids, BpeScratch& scratch) const;
    void merge_large(std::vector<uint32_t>& ids, BpeScratch& scratch) const;

    StringMap<uint32_t> vocab_;
    std::vector<std::string> id_to_token_;
    std::vector<uint8_t> has_id_;
    std::vector<std::pair<std::string, std::string>> merges_;
    PairRankMap merge_map_;
    BpeOptions options_;
    std::optional<uint32_t> unk_id_;
    // Byte-level fast path: id of each byte's character when all 256 are in the vocabulary.
    std::array<uint32_t, 256> byte_ids_{};
    bool all_bytes_in_vocab_ = false;
};

}  // namespace bitttt::tok
