// Pre-tokenization: cuts text into the pieces ("words") that BPE encodes one at a time, with the
// semantics of the `tokenizers` package's Split and ByteLevel pre-tokenizers.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.hpp"

namespace bitttt::tok {

// The pattern of GPT-2 (and of the ByteLevel pre-tokenizer with use_regex).
inline constexpr std::string_view kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// What happens to the matches of a Split (names as in tokenizer.json).
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreTokenizeScratch {
    std::vector<std::string_view> pieces, next_pieces;
    std::deque<std::string> arena;  // pieces that are not views of the input (prefix spaces)
    struct Span {
        size_t start, end;
        bool is_match;
    };
    std::vector<Span> spans;
};

class PreTokenizer {
  public:
    // A Split step: each piece is cut at the matches of `regex`.
    void add_split(std::unique_ptr<Regex> regex, SplitBehavior behavior, bool invert);
    // The ByteLevel step (must be last): optional prefix space, optional GPT-2 split, and from
    // then on pieces stand for their ByteLevel characters.
    void add_byte_level(bool add_prefix_space, bool use_regex);
    bool byte_mapped() const { return byte_mapped_; }
    bool empty() const { return steps_.empty(); }

    // Cuts `text` into scratch.pieces (views of `text` or of scratch.arena; empty pieces dropped).
    void run(std::string_view text, PreTokenizeScratch& scratch) const;

  private:
    struct Step {
        std::unique_ptr<Regex> regex;  // null: the prefix-space step
        SplitBehavior behavior = SplitBehavior::kIsolated;
        bool invert = false;
    };
    void split_piece(const Step& step, std::string_view piece, PreTokenizeScratch& scratch) const;
    std::vector<Step> steps_;
    bool byte_mapped_ = false;
};

}  // namespace bitttt::tok
