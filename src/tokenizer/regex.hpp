// Regular expressions for pre-tokenizers, run by PCRE2 (UTF mode, JIT).
//
// The `tokenizers` package runs its patterns with Oniguruma (Ruby syntax); a pattern means the
// same here because the few classes where the two engines differ are rewritten before compiling:
//   \s -> [\t-\r\x20\x{85}\p{Z}]   (Oniguruma's Unicode whitespace; PCRE2 would add U+180E)
//   \w -> [\p{L}\p{M}\p{N}\p{Pc}]  (Oniguruma counts marks and connector punctuation as word)
// and ^/$ match at line breaks (Ruby's rule). Constructs PCRE2 cannot express the same way
// (\S, \W inside a class, class intersection &&, nested classes, \h) are rejected.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace bitttt::tok {

class Regex {
  public:
    // `what` names the pattern in error messages (e.g. "tokenizer.json: pre_tokenizer.pattern").
    Regex(std::string_view pattern, std::string_view what);
    // A pattern matching `literal` exactly.
    static Regex literal(std::string_view literal, std::string_view what);
    ~Regex();
    Regex(Regex&& other) noexcept;
    Regex& operator=(Regex&&) = delete;
    Regex(const Regex&) = delete;

    // Leftmost match in text at or after `from` (text must be valid UTF-8, `from` on a character
    // boundary). Returns false when there is none.
    bool find(std::string_view text, size_t from, size_t& start, size_t& end) const;

    // Calls fn(start, end) for each match, left to right, with the iteration rule of Rust's
    // regex crates (which the `tokenizers` package uses): an empty match right where the previous
    // match ended is skipped and the search resumes one character later.
    template <typename Fn>
    void for_each_match(std::string_view text, Fn&& fn) const {
        size_t search_from = 0, last_match_end = std::string_view::npos;
        size_t start, end;
        while (search_from <= text.size() && find(text, search_from, start, end)) {
            if (start == end && end == last_match_end) {
                search_from += char_length_at(text, search_from);
                continue;
            }
            search_from = end;
            last_match_end = end;
            fn(start, end);
        }
    }

    const std::string& pattern() const { return pattern_; }

  private:
    static size_t char_length_at(std::string_view text, size_t i);
    std::string pattern_;  // as given (for error messages and serialization)
    std::string what_;
    void* code_ = nullptr;  // pcre2_code_8*
};

}  // namespace bitttt::tok
