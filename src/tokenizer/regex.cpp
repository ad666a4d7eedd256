#include "tokenizer/regex.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.hpp"

namespace bitttt::tok {

namespace {

constexpr std::string_view kSpaceClass = "\\t-\\r\\x20\\x{85}\\p{Z}";
constexpr std::string_view kWordClass = "\\p{L}\\p{M}\\p{N}\\p{Pc}";

std::string pcre2_message(int code) {
    PCRE2_UCHAR buffer[256];
    pcre2_get_error_message(code, buffer, sizeof(buffer));
    return reinterpret_cast<const char*>(buffer);
}

// Rewrites the Oniguruma-specific classes (see regex.hpp) into PCRE2 syntax.
std::string rewrite_for_pcre2(std::string_view p, std::string_view what) {
    std::string out;
    out.reserve(p.size() + 32);
    bool in_class = false;
    size_t class_start = 0;  // index in p just after '[' (and '^')
    for (size_t i = 0; i < p.size(); ++i) {
        const char c = p[i];
        if (c == '\\') {
            check(i + 1 < p.size(), ErrorKind::kFormat, "{}: pattern ends with a lone backslash",
                  what);
            const char e = p[++i];
            if (e == 's' || e == 'w') {
                std::string_view cls = e == 's' ? kSpaceClass : kWordClass;
                if (in_class) {
                    out.append(cls);
                } else {
                    out.append("[").append(cls).append("]");
                }
            } else if (e == 'S' || e == 'W') {
                check(!in_class, ErrorKind::kUnsupported,
                      "{}: \\{} inside a character class is not supported", what, e);
                out.append("[^").append(e == 'S' ? kSpaceClass : kWordClass).append("]");
            } else if (e == 'h' || e == 'H') {
                fail(ErrorKind::kUnsupported, "{}: \\{} (Oniguruma hex digit) is not supported",
                     what, e);
            } else {
                out.push_back('\\');
                out.push_back(e);
            }
            continue;
        }
        if (in_class) {
            if (c == '[') {
                // Only POSIX classes like [:alpha:] may nest.
                check(i + 1 < p.size() && p[i + 1] == ':', ErrorKind::kUnsupported,
                      "{}: nested character classes are not supported", what);
                size_t close = p.find(":]", i + 2);
                check(close != std::string_view::npos, ErrorKind::kFormat,
                      "{}: unterminated POSIX class", what);
                out.append(p.substr(i, close + 2 - i));
                i = close + 1;
                continue;
            }
            if (c == '&' && i + 1 < p.size() && p[i + 1] == '&') {
                fail(ErrorKind::kUnsupported, "{}: class intersection && is not supported", what);
            }
            if (c == ']' && i > class_start) in_class = false;
            out.push_back(c);
            continue;
        }
        if (c == '[') {
            in_class = true;
            out.push_back(c);
            if (i + 1 < p.size() && p[i + 1] == '^') out.push_back(p[++i]);
            class_start = i + 1;  // a ']' right here is a literal
            continue;
        }
        out.push_back(c);
    }
    return out;
}

// Per-thread match state: match data and a JIT stack large enough for long runs (a 1 MB line of
// one character class).
struct MatchScratch {
    pcre2_match_data* data = nullptr;
    pcre2_match_context* context = nullptr;
    pcre2_jit_stack* jit_stack = nullptr;
    MatchScratch() {
        data = pcre2_match_data_create(1, nullptr);
        context = pcre2_match_context_create(nullptr);
        jit_stack = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, nullptr);
        check(data && context && jit_stack, ErrorKind::kInternal, "PCRE2: out of memory");
        pcre2_jit_stack_assign(context, nullptr, jit_stack);
    }
    ~MatchScratch() {
        pcre2_jit_stack_free(jit_stack);
        pcre2_match_context_free(context);
        pcre2_match_data_free(data);
    }
};

MatchScratch& match_scratch() {
    thread_local MatchScratch scratch;
    return scratch;
}

}  // namespace

Regex::Regex(std::string_view pattern, std::string_view what) : pattern_(pattern), what_(what) {
    const std::string rewritten = rewrite_for_pcre2(pattern, what);
    int error = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* code =
        pcre2_compile(reinterpret_cast<PCRE2_SPTR>(rewritten.data()), rewritten.size(),
                      PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &error, &offset, nullptr);
    if (!code) {
        fail(ErrorKind::kFormat, "{}: invalid regex '{}' at offset {}: {}", what, pattern, offset,
             pcre2_message(error));
    }
    // JIT is an optimization: if this build of PCRE2 cannot, the interpreter gives the same
    // matches.
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    code_ = code;
}

Regex Regex::literal(std::string_view literal, std::string_view what) {
    std::string pattern;
    for (unsigned char c : literal) {
        // Alphanumerics stand for themselves; every other byte is escaped (\xHH with UTF-8
        // multi-byte sequences kept as they are: escaping bytes >= 0x80 would mean code points).
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            c >= 0x80) {
            pattern.push_back(static_cast<char>(c));
        } else {
            pattern += fmt::format("\\x{{{:x}}}", c);
        }
    }
    return Regex(pattern, what);
}

Regex::~Regex() {
    if (code_) pcre2_code_free(static_cast<pcre2_code*>(code_));
}

Regex::Regex(Regex&& other) noexcept
    : pattern_(std::move(other.pattern_)), what_(std::move(other.what_)), code_(other.code_) {
    other.code_ = nullptr;
}

bool Regex::find(std::string_view text, size_t from, size_t& start, size_t& end) const {
    MatchScratch& scratch = match_scratch();
    int rc = pcre2_match(static_cast<const pcre2_code*>(code_),
                         reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), from,
                         PCRE2_NO_UTF_CHECK, scratch.data, scratch.context);
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc < 0) {
        fail(ErrorKind::kUnsupported, "{}: regex '{}' failed on a {}-byte input: {}", what_,
             pattern_, text.size(), pcre2_message(rc));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(scratch.data);
    start = ovector[0];
    end = ovector[1];
    // \K can make a match end before it starts; the split logic needs start <= end.
    check(start <= end, ErrorKind::kUnsupported, "{}: regex '{}' uses \\K, which is unsupported",
          what_, pattern_);
    return true;
}

size_t Regex::char_length_at(std::string_view text, size_t i) {
    if (i >= text.size()) return 1;
    const auto b = static_cast<unsigned char>(text[i]);
    return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
}

}  // namespace bitttt::tok
