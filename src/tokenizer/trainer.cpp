// Byte-level BPE training (Tokenizer::train), the algorithm of the `tokenizers` package's
// BpeTrainer:
//  1. cut the text at special tokens, pre-tokenize it with the GPT-2 pattern and count the
//     distinct words (in parallel: each thread counts its share of the text, then the counts are
//     summed);
//  2. start every word as its bytes; the vocabulary is the special tokens, then the 256 byte
//     tokens in code-point order of their ByteLevel characters;
//  3. repeat: take the adjacent pair with the highest total count over all words (ties: the
//     smallest (left id, right id)), add the merged token, and rewrite only the words that
//     contain the pair. Pair counts are updated from the local changes of those words (no
//     recount); a max-heap holds the candidates and stale entries are refreshed when popped.
// With the same words and counts this gives the merges the package gives.
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <exception>
#include <queue>
#include <unordered_map>

#include "core/error.hpp"
#include "core/threads.hpp"
#include "tokenizer/byte_level.hpp"
#include "tokenizer/text_file.hpp"
#include "tokenizer/tokenizer_impl.hpp"
#include "tokenizer/utf8.hpp"

namespace bitttt {

namespace {

struct WordCount {
    std::string bytes;
    uint64_t count;
};

// Step 1: the distinct pre-tokens of all texts with their counts, sorted by bytes.
std::vector<WordCount> count_words(std::span<const std::string_view> texts,
                                   const std::vector<std::string>& special_tokens, int threads,
                                   const TokenizerTrainOptions& options) {
    std::vector<tok::AddedToken> specials;
    specials.reserve(special_tokens.size());  // matcher keeps pointers into it
    for (const auto& s : special_tokens) specials.push_back({s, 0, true, false});
    tok::AddedTokenMatcher matcher;
    for (const auto& s : specials) matcher.add(&s);
    matcher.prepare();
    tok::PreTokenizer pre;
    pre.add_byte_level(false, true);

    // Segments between special tokens, grouped into batches of ~4 MB for progress reports.
    std::vector<std::string_view> segments;
    uint64_t total_bytes = 0;
    for (std::string_view text : texts) {
        size_t emitted = 0, from = 0, start = 0;
        const tok::AddedToken* token = nullptr;
        while (matcher.find(text, from, start, token)) {
            if (start > emitted) segments.push_back(text.substr(emitted, start - emitted));
            from = emitted = start + token->content.size();
        }
        if (emitted < text.size()) segments.push_back(text.substr(emitted));
        total_bytes += text.size();
    }

    const int nthreads = threads > 0 ? threads : num_threads();
    std::vector<tok::StringMap<uint64_t>> local(nthreads);
    std::exception_ptr error;
    uint64_t done_bytes = 0;
    size_t next = 0;
    while (next < segments.size()) {
        size_t end = next;
        uint64_t batch_bytes = 0;
        while (end < segments.size() && batch_bytes < (4u << 20))
            batch_bytes += segments[end++].size();
        const int64_t first = static_cast<int64_t>(next), last = static_cast<int64_t>(end);
#pragma omp parallel num_threads(nthreads)
        {
            tok::PreTokenizeScratch scratch;
            auto& counts = local[omp_get_thread_num()];
#pragma omp for schedule(dynamic, 8)
            for (int64_t i = first; i < last; ++i) {
                try {
                    pre.run(segments[i], scratch);
                    for (std::string_view piece : scratch.pieces) {
                        auto it = counts.find(piece);
                        if (it == counts.end()) {
                            counts.emplace(std::string(piece), 1);
                        } else {
                            ++it->second;
                        }
                    }
                } catch (...) {
#pragma omp critical(bitttt_train_error)
                    if (!error) error = std::current_exception();
                }
            }
        }
        if (error) std::rethrow_exception(error);
        done_bytes += batch_bytes;
        next = end;
        // Special tokens are not counted in done_bytes: report 100% once at the end.
        if (options.progress && end < segments.size()) {
            options.progress({"count", done_bytes, total_bytes});
        }
    }
    if (options.progress) options.progress({"count", total_bytes, total_bytes});
    for (int t = 1; t < nthreads; ++t) {
        for (auto& [word, count] : local[t]) local[0][word] += count;
        local[t] = {};
    }
    std::vector<WordCount> words;
    words.reserve(local[0].size());
    for (auto& [word, count] : local[0]) words.push_back({word, count});
    std::sort(words.begin(), words.end(),
              [](const WordCount& a, const WordCount& b) { return a.bytes < b.bytes; });
    return words;
}

struct Candidate {
    int64_t count;
    uint64_t pair;  // (left << 32) | right
    // std::priority_queue pops the largest: highest count, then smallest pair.
    bool operator<(const Candidate& o) const {
        return count != o.count ? count < o.count : pair > o.pair;
    }
};

Tokenizer train_bpe(std::span<const std::string_view> texts, const TokenizerTrainOptions& options) {
    const auto& specials = options.special_tokens;
    for (size_t i = 0; i < specials.size(); ++i) {
        check(!specials[i].empty(), ErrorKind::kInvalidArgument, "train: empty special token");
        check(tok::utf8_is_valid(specials[i]), ErrorKind::kInvalidArgument,
              "train: special token {} is not valid UTF-8", i);
        for (size_t j = 0; j < i; ++j) {
            check(specials[i] != specials[j], ErrorKind::kInvalidArgument,
                  "train: special token '{}' given twice", specials[i]);
        }
    }
    check(options.vocab_size >= specials.size() + 256 && options.vocab_size <= (1u << 24),
          ErrorKind::kInvalidArgument,
          "train: vocab_size {} must be in [{} (special tokens + 256 bytes), 2^24]",
          options.vocab_size, specials.size() + 256);

    // Invalid UTF-8 is replaced as encode() would replace it.
    std::vector<std::string> repaired;
    std::vector<std::string_view> valid_texts;
    for (std::string_view t : texts) {
        if (tok::utf8_is_valid(t)) {
            valid_texts.push_back(t);
        } else {
            repaired.emplace_back();
            tok::utf8_append_lossy(repaired.back(), t);
            valid_texts.push_back(repaired.back());
        }
    }
    std::vector<WordCount> words = count_words(valid_texts, specials, options.threads, options);

    // Step 2: initial vocabulary.
    std::vector<std::string> id_to_token;
    tok::StringMap<uint32_t> token_to_id;
    auto add_token = [&](const std::string& token) {
        auto [it, inserted] = token_to_id.emplace(token, static_cast<uint32_t>(id_to_token.size()));
        if (inserted) id_to_token.push_back(token);
        return it->second;
    };
    for (const auto& s : specials) add_token(s);
    const auto& table = tok::byte_level_table();
    std::array<int, 256> bytes_by_codepoint;
    for (int b = 0; b < 256; ++b) bytes_by_codepoint[b] = b;
    std::sort(bytes_by_codepoint.begin(), bytes_by_codepoint.end(), [&](int x, int y) {
        return table.byte_to_codepoint[x] < table.byte_to_codepoint[y];
    });
    std::array<uint32_t, 256> byte_id;
    for (int b : bytes_by_codepoint) byte_id[b] = add_token(table.byte_to_utf8[b]);

    std::vector<std::vector<uint32_t>> symbols(words.size());
    std::unordered_map<uint64_t, int64_t> pair_count;
    std::unordered_map<uint64_t, std::vector<uint32_t>> where;  // pair -> words that had it
    for (size_t w = 0; w < words.size(); ++w) {
        for (unsigned char b : words[w].bytes) symbols[w].push_back(byte_id[b]);
        const auto count = static_cast<int64_t>(words[w].count);
        for (size_t i = 0; i + 1 < symbols[w].size(); ++i) {
            const uint64_t p = tok::pair_key(symbols[w][i], symbols[w][i + 1]);
            pair_count[p] += count;
            auto& list = where[p];
            if (list.empty() || list.back() != w) list.push_back(static_cast<uint32_t>(w));
        }
    }
    std::priority_queue<Candidate> heap;
    for (const auto& [p, c] : pair_count) {
        if (c > 0) heap.push({c, p});
    }

    // Step 3: merges.
    const uint64_t planned = options.vocab_size - id_to_token.size();
    std::vector<std::pair<std::string, std::string>> merges;
    std::vector<uint64_t> seen_in_merge(words.size(), UINT64_MAX);
    std::vector<uint64_t> grown;  // pairs whose count rose in this merge
    while (id_to_token.size() < options.vocab_size && !heap.empty()) {
        Candidate top = heap.top();
        heap.pop();
        const int64_t current = pair_count[top.pair];
        if (top.count != current) {
            if (current > 0) heap.push({current, top.pair});
            continue;
        }
        if (top.count < 1 || static_cast<uint64_t>(top.count) < options.min_frequency) break;
        const uint32_t left = static_cast<uint32_t>(top.pair >> 32);
        const uint32_t right = static_cast<uint32_t>(top.pair);
        merges.emplace_back(id_to_token[left], id_to_token[right]);
        const uint32_t merged = add_token(id_to_token[left] + id_to_token[right]);
        const uint64_t merge_index = merges.size();

        std::vector<uint32_t> affected = std::move(where[top.pair]);
        where.erase(top.pair);
        grown.clear();
        auto change = [&](uint32_t a, uint32_t b, int64_t delta, uint32_t word) {
            const uint64_t p = tok::pair_key(a, b);
            pair_count[p] += delta;
            if (delta > 0) {
                auto& list = where[p];
                if (list.empty() || list.back() != word) list.push_back(word);
                grown.push_back(p);
            }
        };
        for (uint32_t w : affected) {
            if (seen_in_merge[w] == merge_index) continue;
            seen_in_merge[w] = merge_index;
            std::vector<uint32_t>& s = symbols[w];
            const auto count = static_cast<int64_t>(words[w].count);
            // Left to right, non-overlapping: "a a a" with (a, a) becomes "aa a". The symbol
            // before an occurrence is already rewritten (s[out - 1]); the one after is not yet.
            size_t out = 0;
            const size_t n = s.size();
            for (size_t r = 0; r < n;) {
                if (r + 1 < n && s[r] == left && s[r + 1] == right) {
                    if (out > 0) {
                        change(s[out - 1], left, -count, w);
                        change(s[out - 1], merged, count, w);
                    }
                    change(left, right, -count, w);
                    if (r + 2 < n) {
                        change(right, s[r + 2], -count, w);
                        change(merged, s[r + 2], count, w);
                    }
                    s[out++] = merged;
                    r += 2;
                } else {
                    s[out++] = s[r++];
                }
            }
            s.resize(out);
        }
        std::sort(grown.begin(), grown.end());
        grown.erase(std::unique(grown.begin(), grown.end()), grown.end());
        for (uint64_t p : grown) {
            if (pair_count[p] > 0) heap.push({pair_count[p], p});
        }
        if (options.progress && merges.size() % 1024 == 0 && merges.size() < planned) {
            options.progress({"merge", merges.size(), planned});
        }
    }
    // Training may stop early (min_frequency): the last report says done == total.
    if (options.progress) options.progress({"merge", merges.size(), merges.size()});

    // The tokenizer.json the package writes for a ByteLevel BPE.
    std::vector<std::pair<std::string, uint32_t>> vocab;
    vocab.reserve(id_to_token.size());
    for (uint32_t id = 0; id < id_to_token.size(); ++id) vocab.emplace_back(id_to_token[id], id);
    auto impl = std::make_shared<Tokenizer::Impl>(
        tok::BpeModel(std::move(vocab), std::move(merges), {}, "trained tokenizer"));
    for (uint32_t i = 0; i < specials.size(); ++i)
        impl->added.push_back({specials[i], i, true, false});
    impl->pre_tokenizer.add_byte_level(false, true);
    impl->decoder = tok::DecoderKind::kByteLevel;
    impl->pre_tokenizer_json = {{"type", "ByteLevel"},
                                {"add_prefix_space", false},
                                {"trim_offsets", true},
                                {"use_regex", true}};
    impl->post_processor_json = {{"type", "ByteLevel"},
                                 {"add_prefix_space", true},
                                 {"trim_offsets", false},
                                 {"use_regex", true}};
    impl->decoder_json = {{"type", "ByteLevel"},
                          {"add_prefix_space", true},
                          {"trim_offsets", true},
                          {"use_regex", true}};
    impl->finalize();
    return Tokenizer::from_json(tok::write_tokenizer_json(*impl), "trained tokenizer");
}

}  // namespace

Tokenizer Tokenizer::train_from_text(std::string_view text, const TokenizerTrainOptions& options) {
    return train_bpe(std::span<const std::string_view>(&text, 1), options);
}

Tokenizer Tokenizer::train(const std::vector<std::string>& files,
                           const TokenizerTrainOptions& options) {
    check(!files.empty(), ErrorKind::kInvalidArgument, "train: no input files");
    std::vector<std::string> contents;
    size_t bytes = 0;
    for (const auto& path : files) {
        contents.push_back(tok::read_text_file(path));
        bytes += contents.back().size();
    }
    // An empty training set would silently give a tokenizer of the 256 bytes alone.
    check(bytes > 0, ErrorKind::kInvalidArgument, "train: {} empty: no text to train on",
          files.size() == 1 ? files[0] + " is" : "the input files are");
    std::vector<std::string_view> texts(contents.begin(), contents.end());
    return train_bpe(texts, options);
}

}  // namespace bitttt
