#include "tokenizer/pre_tokenizer.hpp"

#include "core/error.hpp"

namespace bitttt::tok {

void PreTokenizer::add_split(std::unique_ptr<Regex> regex, SplitBehavior behavior, bool invert) {
    check(!byte_mapped_, ErrorKind::kUnsupported, "a Split after ByteLevel is not supported");
    steps_.push_back({std::move(regex), behavior, invert});
}

void PreTokenizer::add_byte_level(bool add_prefix_space, bool use_regex) {
    check(!byte_mapped_, ErrorKind::kUnsupported, "two ByteLevel pre-tokenizers are not supported");
    if (add_prefix_space) steps_.push_back({nullptr, SplitBehavior::kIsolated, false});
    if (use_regex) {
        steps_.push_back({std::make_unique<Regex>(kGpt2Pattern, "ByteLevel pre-tokenizer"),
                          SplitBehavior::kIsolated, false});
    }
    byte_mapped_ = true;
}

void PreTokenizer::run(std::string_view text, PreTokenizeScratch& scratch) const {
    scratch.pieces.clear();
    scratch.arena.clear();
    if (!text.empty()) scratch.pieces.push_back(text);
    for (const Step& step : steps_) {
        scratch.next_pieces.clear();
        for (std::string_view piece : scratch.pieces) {
            if (step.regex) {
                split_piece(step, piece, scratch);
            } else if (!piece.empty() && piece.front() == ' ') {
                scratch.next_pieces.push_back(piece);
            } else {
                // ByteLevel's add_prefix_space: every piece gets a leading space unless it has one.
                scratch.arena.push_back(" ");
                scratch.arena.back().append(piece);
                scratch.next_pieces.push_back(scratch.arena.back());
            }
        }
        std::swap(scratch.pieces, scratch.next_pieces);
    }
}

// The `tokenizers` rule: list the text as alternating non-match / match spans (an empty match is
// a span too), flip them with invert, then merge spans by the behavior and drop empty pieces.
void PreTokenizer::split_piece(const Step& step, std::string_view piece,
                               PreTokenizeScratch& scratch) const {
    auto& out = scratch.next_pieces;
    if (step.behavior == SplitBehavior::kIsolated && !step.invert) {
        // Hot path (GPT-2 style): every gap and every match is its own piece.
        size_t prev = 0;
        step.regex->for_each_match(piece, [&](size_t start, size_t end) {
            if (start > prev) out.push_back(piece.substr(prev, start - prev));
            if (end > start) out.push_back(piece.substr(start, end - start));
            prev = end;
        });
        if (prev < piece.size()) out.push_back(piece.substr(prev));
        return;
    }
    auto& spans = scratch.spans;
    spans.clear();
    size_t prev = 0;
    step.regex->for_each_match(piece, [&](size_t start, size_t end) {
        if (start != prev) spans.push_back({prev, start, false});
        spans.push_back({start, end, true});
        prev = end;
    });
    if (prev != piece.size()) spans.push_back({prev, piece.size(), false});
    if (step.invert) {
        for (auto& s : spans) s.is_match = !s.is_match;
    }
    auto emit = [&](size_t start, size_t end) {
        if (end > start) out.push_back(piece.substr(start, end - start));
    };
    switch (step.behavior) {
        case SplitBehavior::kRemoved:
            for (const auto& s : spans) {
                if (!s.is_match) emit(s.start, s.end);
            }
            break;
        case SplitBehavior::kIsolated:
            for (const auto& s : spans) emit(s.start, s.end);
            break;
        case SplitBehavior::kMergedWithPrevious: {
            // A match joins the piece before it (unless that piece is itself a match).
            std::vector<std::pair<size_t, size_t>> merged;
            bool previous_match = false;
            for (const auto& s : spans) {
                if (s.is_match && !previous_match && !merged.empty()) {
                    merged.back().second = s.end;
                } else {
                    merged.push_back({s.start, s.end});
                }
                previous_match = s.is_match;
            }
            for (auto [a, b] : merged) emit(a, b);
            break;
        }
        case SplitBehavior::kMergedWithNext: {
            // Mirror image: walk right to left, a match joins the piece after it.
            std::vector<std::pair<size_t, size_t>> merged;
            bool previous_match = false;
            for (size_t i = spans.size(); i-- > 0;) {
                const auto& s = spans[i];
                if (s.is_match && !previous_match && !merged.empty()) {
                    merged.back().first = s.start;
                } else {
                    merged.push_back({s.start, s.end});
                }
                previous_match = s.is_match;
            }
            for (size_t i = merged.size(); i-- > 0;) emit(merged[i].first, merged[i].second);
            break;
        }
        case SplitBehavior::kContiguous: {
            // Runs of consecutive matches (or non-matches) become one piece.
            std::vector<std::pair<size_t, size_t>> merged;
            bool previous_match = false;
            for (const auto& s : spans) {
                if (s.is_match == previous_match && !merged.empty()) {
                    merged.back().second = s.end;
                } else {
                    merged.push_back({s.start, s.end});
                }
                previous_match = s.is_match;
            }
            for (auto [a, b] : merged) emit(a, b);
            break;
        }
    }
}

}  // namespace bitttt::tok
