// Hash maps of the tokenizer's hot paths.
#pragma once

#include <xxhash.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace bitttt::tok {

// Hash for std::unordered_map<std::string, T> that also accepts std::string_view keys (lookups
// without building a std::string).
struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return XXH3_64bits(s.data(), s.size()); }
};
template <typename T>
using StringMap = std::unordered_map<std::string, T, StringHash, std::equal_to<>>;

inline uint64_t pair_key(uint32_t left, uint32_t right) {
    return (static_cast<uint64_t>(left) << 32) | right;
}

// Open-addressing map from a token pair (left, right) to its merge (rank, id of the merged
// token): the inner loop of BPE looks up every adjacent pair, so this is one multiply, one shift
// and (almost always) one cache line. Built once, read-only afterwards.
class PairRankMap {
  public:
    struct Merge {
        uint32_t rank;
        uint32_t id;
    };
    static constexpr Merge kNone = {UINT32_MAX, UINT32_MAX};

    void reserve(size_t count) {
        size_t capacity = 16;
        while (capacity < count * 2) capacity *= 2;  // load factor <= 1/2 keeps probes short
        slots_.assign(capacity, Slot{kEmpty, kNone});
        shift_ = 64;
        for (size_t c = capacity; c > 1; c >>= 1) --shift_;
        size_ = 0;
    }
    // Inserts or replaces (a later merge of the same pair wins, as in `tokenizers`).
    void set(uint32_t left, uint32_t right, Merge merge) {
        if ((size_ + 1) * 2 > slots_.size()) grow();
        const uint64_t key = pair_key(left, right);
        for (size_t i = index(key);; i = (i + 1) & (slots_.size() - 1)) {
            if (slots_[i].key == kEmpty) {
                slots_[i] = {key, merge};
                ++size_;
                return;
            }
            if (slots_[i].key == key) {
                slots_[i].merge = merge;
                return;
            }
        }
    }
    Merge get(uint32_t left, uint32_t right) const {
        if (slots_.empty()) return kNone;
        const uint64_t key = pair_key(left, right);
        for (size_t i = index(key);; i = (i + 1) & (slots_.size() - 1)) {
            if (slots_[i].key == key) return slots_[i].merge;
            if (slots_[i].key == kEmpty) return kNone;
        }
    }
    size_t size() const { return size_; }

  private:
    // Ids are < 2^31 (checked at load), so this key never occurs.
    static constexpr uint64_t kEmpty = UINT64_MAX;
    struct Slot {
        uint64_t key;
        Merge merge;
    };
    size_t index(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ull) >> shift_; }
    void grow() {
        std::vector<Slot> old;
        old.swap(slots_);  // slots_ is left empty (defined state) for reserve()
        reserve(old.empty() ? 8 : old.size());
        for (const Slot& s : old) {
            if (s.key != kEmpty)
                set(static_cast<uint32_t>(s.key >> 32), static_cast<uint32_t>(s.key), s.merge);
        }
    }
    std::vector<Slot> slots_;
    int shift_ = 64;
    size_t size_ = 0;
};

}  // namespace bitttt::tok
