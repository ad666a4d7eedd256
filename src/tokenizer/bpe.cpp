#include "tokenizer/bpe.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <queue>

#include "core/error.hpp"
#include "tokenizer/byte_level.hpp"

namespace bitttt::tok {

namespace {

// Largest id + 1 we accept: far above real vocabularies (~256K) and small enough that the dense
// id -> token table of a hostile file cannot exhaust memory.
constexpr uint32_t kMaxIdLimit = 1u << 24;
// Words up to this many symbols use the quadratic scan (no heap, no allocation); longer ones
// (a long run of digits or spaces is one pre-token) use the O(n log n) heap version.
constexpr size_t kSmallWord = 64;

}  // namespace

// By value: the tokens are moved into vocab_ (clang-tidy 14 misses the move through the binding).
// NOLINTNEXTLINE(performance-unnecessary-value-param)
BpeModel::BpeModel(std::vector<std::pair<std::string, uint32_t>> vocab,
                   std::vector<std::pair<std::string, std::string>> merges, BpeOptions options,
                   std::string_view what)
    : merges_(std::move(merges)), options_(std::move(options)) {
    uint32_t limit = 0;
    for (const auto& [token, id] : vocab) {
        check(id < kMaxIdLimit, ErrorKind::kFormat, "{}: model.vocab: id {} of token '{}' is >= {}",
              what, id, token, kMaxIdLimit);
        limit = std::max(limit, id + 1);
    }
    id_to_token_.resize(limit);
    has_id_.assign(limit, 0);
    vocab_.reserve(vocab.size());
    for (auto& [token, id] : vocab) {
        check(!has_id_[id], ErrorKind::kFormat, "{}: model.vocab: id {} is used by '{}' and '{}'",
              what, id, id_to_token_[id], token);
        has_id_[id] = 1;
        id_to_token_[id] = token;
        auto [it, inserted] = vocab_.emplace(std::move(token), id);
        check(inserted, ErrorKind::kFormat, "{}: model.vocab: token '{}' appears twice", what,
              it->first);
    }
    merge_map_.reserve(merges_.size());
    for (size_t rank = 0; rank < merges_.size(); ++rank) {
        const auto& [left, right] = merges_[rank];
        auto l = token_to_id(left), r = token_to_id(right), m = token_to_id(left + right);
        check(l && r, ErrorKind::kFormat, "{}: model.merges[{}]: '{}' is not in the vocabulary",
              what, rank, l ? right : left);
        check(m.has_value(), ErrorKind::kFormat,
              "{}: model.merges[{}]: the merged token '{}' is not in the vocabulary", what, rank,
              left + right);
        merge_map_.set(*l, *r, {static_cast<uint32_t>(rank), *m});
    }
    if (options_.unk_token) {
        unk_id_ = token_to_id(*options_.unk_token);
        check(unk_id_.has_value(), ErrorKind::kFormat,
              "{}: model.unk_token: '{}' is not in the vocabulary", what, *options_.unk_token);
    }
    all_bytes_in_vocab_ = true;
    for (int b = 0; b < 256; ++b) {
        auto id = token_to_id(byte_level_table().byte_to_utf8[b]);
        all_bytes_in_vocab_ = all_bytes_in_vocab_ && id.has_value();
        byte_ids_[b] = id.value_or(0);
    }
}

// The `tokenizers` rule for a word's first symbols: each character's token if the vocabulary
// has it; else its bytes as <0xXX> tokens (byte_fallback, when all exist); else the unk token
// (consecutive unknowns fused into one with fuse_unk); else the character is dropped. A pending
// unk is emitted only before the next known character or at the end, as the package does.
void BpeModel::initial_symbols(std::string_view word, bool byte_mapped,
                               std::vector<uint32_t>& ids) const {
    ids.clear();
    if (byte_mapped && all_bytes_in_vocab_) {
        for (unsigned char b : word) ids.push_back(byte_ids_[b]);
        return;
    }
    bool pending_unk = false;
    size_t i = 0;
    while (i < word.size()) {
        std::string_view ch;
        if (byte_mapped) {
            ch = byte_level_table().byte_to_utf8[static_cast<unsigned char>(word[i])];
            i += 1;
        } else {
            const auto b = static_cast<unsigned char>(word[i]);
            size_t len = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
            len = std::min(len, word.size() - i);
            ch = word.substr(i, len);
            i += len;
        }
        if (auto id = token_to_id(ch)) {
            if (pending_unk) ids.push_back(*unk_id_);
            pending_unk = false;
            ids.push_back(*id);
            continue;
        }
        if (options_.byte_fallback) {
            size_t before = ids.size();
            bool all = true;
            for (unsigned char b : ch) {
                auto id = token_to_id(fmt::format("<0x{:02X}>", b));
                if (!id) {
                    all = false;
                    break;
                }
                ids.push_back(*id);
            }
            if (all) continue;
            ids.resize(before);
        }
        if (unk_id_) {
            if (pending_unk && !options_.fuse_unk) ids.push_back(*unk_id_);
            pending_unk = true;
        }
    }
    if (pending_unk) ids.push_back(*unk_id_);
}

void BpeModel::encode_word(std::string_view word, bool byte_mapped, std::vector<uint32_t>& out,
                           BpeScratch& scratch) const {
    if (options_.ignore_merges) {
        // A word that is itself a token is taken whole, whatever the merges would do.
        std::string_view key = word;
        if (byte_mapped) {
            scratch.mapped.clear();
            byte_level_encode(scratch.mapped, word);
            key = scratch.mapped;
        }
        if (auto id = token_to_id(key)) {
            out.push_back(*id);
            return;
        }
    }
    std::vector<uint32_t>& ids = scratch.ids;
    initial_symbols(word, byte_mapped, ids);
    if (ids.size() <= kSmallWord) {
        merge_small(ids, scratch);
    } else {
        merge_large(ids, scratch);
    }
    out.insert(out.end(), ids.begin(), ids.end());
}

// ranks[i] is the rank of the pair (ids[i], ids[i+1]); each step merges the smallest, leftmost
// on ties, and refreshes only the two ranks next to it.
void BpeModel::merge_small(std::vector<uint32_t>& ids, BpeScratch& scratch) const {
    size_t n = ids.size();
    if (n < 2) return;
    std::vector<uint32_t>& ranks = scratch.ranks;
    std::vector<uint32_t>& merged = scratch.merge_ids;
    ranks.resize(n - 1);
    merged.resize(n - 1);
    for (size_t i = 0; i + 1 < n; ++i) {
        PairRankMap::Merge m = merge_map_.get(ids[i], ids[i + 1]);
        ranks[i] = m.rank;
        merged[i] = m.id;
    }
    while (n > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < n; ++i) {
            if (ranks[i] < ranks[best]) best = i;
        }
        if (ranks[best] == UINT32_MAX) break;
        ids[best] = merged[best];
        ids.erase(ids.begin() + static_cast<ptrdiff_t>(best) + 1);
        ranks.erase(ranks.begin() + static_cast<ptrdiff_t>(best));
        merged.erase(merged.begin() + static_cast<ptrdiff_t>(best));
        --n;
        // The pairs (best-1, best) and (best, best+1) now involve the new token.
        if (best > 0) {
            PairRankMap::Merge m = merge_map_.get(ids[best - 1], ids[best]);
            ranks[best - 1] = m.rank;
            merged[best - 1] = m.id;
        }
        if (best + 1 < n) {
            PairRankMap::Merge m = merge_map_.get(ids[best], ids[best + 1]);
            ranks[best] = m.rank;
            merged[best] = m.id;
        }
    }
}

// Same result as merge_small in O(n log n): symbols form a linked list over their original
// positions, candidate pairs sit in a min-heap ordered by (rank, position); an entry whose
// symbols changed since it was pushed is skipped when popped.
void BpeModel::merge_large(std::vector<uint32_t>& ids, BpeScratch& scratch) const {
    const int32_t n = static_cast<int32_t>(ids.size());
    std::vector<int32_t>& prev = scratch.prev;
    std::vector<int32_t>& next = scratch.next;
    prev.resize(n);
    next.resize(n);
    for (int32_t i = 0; i < n; ++i) {
        prev[i] = i - 1;
        next[i] = i + 1 < n ? i + 1 : -1;
    }
    struct Candidate {
        uint32_t rank;
        int32_t pos;
        uint32_t left, right, merged;
        bool operator>(const Candidate& o) const {
            return rank != o.rank ? rank > o.rank : pos > o.pos;
        }
    };
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
    auto push = [&](int32_t pos) {
        if (pos < 0 || next[pos] < 0) return;
        PairRankMap::Merge m = merge_map_.get(ids[pos], ids[next[pos]]);
        if (m.rank != UINT32_MAX) heap.push({m.rank, pos, ids[pos], ids[next[pos]], m.id});
    };
    for (int32_t i = 0; i + 1 < n; ++i) push(i);
    std::vector<uint8_t> alive(n, 1);
    while (!heap.empty()) {
        Candidate c = heap.top();
        heap.pop();
        const int32_t right = next[c.pos] >= 0 ? next[c.pos] : -1;
        if (!alive[c.pos] || right < 0 || ids[c.pos] != c.left || ids[right] != c.right) continue;
        ids[c.pos] = c.merged;
        alive[right] = 0;
        next[c.pos] = next[right];
        if (next[right] >= 0) prev[next[right]] = c.pos;
        push(prev[c.pos]);
        push(c.pos);
    }
    size_t out = 0;
    for (int32_t i = 0; i >= 0 && i < n; i = next[i]) ids[out++] = ids[i];
    ids.resize(out);
}

}  // namespace bitttt::tok
