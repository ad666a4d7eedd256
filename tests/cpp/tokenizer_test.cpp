// Tokenizer: UTF-8 repair, the ByteLevel alphabet, BPE against a naive reference, tokenizer.json
// parsing and its errors, training, streaming decoding. Comparisons with the Python `tokenizers`
// package (the oracle) are in tests/python/test_tokenizer.py.
#include "bitttt/tokenizer.hpp"

#include <gtest/gtest.h>
#include <xxhash.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "tokenizer/byte_level.hpp"
#include "tokenizer/gpt2_files.hpp"
#include "tokenizer/regex.hpp"
#include "tokenizer/text_file.hpp"
#include "tokenizer/utf8.hpp"

namespace bitttt {
namespace {

const std::string kShared = BITTTT_SHARED_DATA;
const std::string kFffd = "\xEF\xBF\xBD";

std::string lossy(std::string_view s) {
    std::string out;
    tok::utf8_append_lossy(out, s);
    return out;
}

// ---- UTF-8 -------------------------------------------------------------------------------------

TEST(Utf8, MaximalSubpartReplacement) {
    // Expected values follow Unicode 15 §3.9 (Table 3-8 examples), not this code.
    EXPECT_EQ(lossy("abc"), "abc");
    EXPECT_EQ(lossy("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"),
              "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
    EXPECT_EQ(lossy("\xE0\x80"), kFffd + kFffd);              // E0 needs A0..BF next: two subparts
    EXPECT_EQ(lossy("\xF0\x9F\x98"), kFffd);                  // truncated 4-byte sequence: one
    EXPECT_EQ(lossy("\xED\xA0\x80"), kFffd + kFffd + kFffd);  // surrogate: three
    EXPECT_EQ(lossy("\xC0\xAF"), kFffd + kFffd);              // overlong
    EXPECT_EQ(lossy("\xF4\x90\x80\x80"), kFffd + kFffd + kFffd + kFffd);  // > U+10FFFF
    EXPECT_EQ(lossy("a\xFF"
                    "b\xE2\x82"),
              "a" + kFffd + "b" + kFffd);
    EXPECT_EQ(lossy("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64"),
              "a" + kFffd + kFffd + kFffd + "b" + kFffd + "c" + kFffd + kFffd + "d");
    EXPECT_TRUE(tok::utf8_is_valid("plain ascii text that is long enough for the fast path"));
    EXPECT_FALSE(tok::utf8_is_valid("long ascii prefix then a bad byte \x80"));
}

TEST(Utf8, SettledPrefixHoldsOnlyAnUnfinishedCharacter) {
    EXPECT_EQ(tok::utf8_settled_prefix("abc"), 3u);
    EXPECT_EQ(tok::utf8_settled_prefix("ab\xE2\x82"), 2u);  // € missing its last byte
    EXPECT_EQ(tok::utf8_settled_prefix("ab\xF0"), 2u);
    EXPECT_EQ(tok::utf8_settled_prefix("ab\xE2\x82\xAC"), 5u);  // complete
    EXPECT_EQ(tok::utf8_settled_prefix("ab\xE0\x80"), 4u);      // already invalid: settled
    EXPECT_EQ(tok::utf8_settled_prefix("\xF0\x9F\x98"), 0u);
}

// ---- ByteLevel alphabet ------------------------------------------------------------------------

TEST(ByteLevel, AlphabetIsABijectionWithGpt2sKnownPoints) {
    const auto& t = tok::byte_level_table();
    std::vector<uint32_t> cps(t.byte_to_codepoint.begin(), t.byte_to_codepoint.end());
    std::sort(cps.begin(), cps.end());
    EXPECT_EQ(std::unique(cps.begin(), cps.end()), cps.end());
    EXPECT_EQ(t.byte_to_utf8[' '], "\xC4\xA0");   // "Ġ"
    EXPECT_EQ(t.byte_to_utf8['\n'], "\xC4\x8A");  // "Ċ"
    EXPECT_EQ(t.byte_to_utf8['A'], "A");
    EXPECT_EQ(t.byte_to_codepoint[0], 256u);
    EXPECT_EQ(t.byte_to_codepoint[0xAD], 323u);  // soft hyphen, the last remapped byte
    std::string all;
    for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
    std::string mapped, back;
    tok::byte_level_encode(mapped, all);
    ASSERT_TRUE(tok::byte_level_decode(back, mapped));
    EXPECT_EQ(back, all);
    std::string out;
    EXPECT_FALSE(tok::byte_level_decode(out, "a b"));  // a space is not in the alphabet
    EXPECT_TRUE(out.empty());
}

// ---- Regex -------------------------------------------------------------------------------------

std::vector<std::string> matches(const tok::Regex& re, std::string_view text) {
    std::vector<std::string> out;
    re.for_each_match(text, [&](size_t s, size_t e) { out.emplace_back(text.substr(s, e - s)); });
    return out;
}

TEST(Regex, OnigurumaClassesAndEmptyMatches) {
    tok::Regex space("\\s", "test");
    EXPECT_EQ(matches(space,
                      "a\xE3\x80\x80"
                      "b")
                  .size(),
              1u);  // U+3000 is whitespace
    EXPECT_TRUE(matches(space,
                        "a\xE1\xA0\x8E"
                        "b")
                    .empty());  // U+180E is not (Oniguruma)
    tok::Regex word("\\w+", "test");
    EXPECT_EQ(matches(word, "e\xCC\x81 x"), (std::vector<std::string>{"e\xCC\x81", "x"}));
    // Empty matches right after a match are skipped (Rust's find_iter rule).
    tok::Regex star("x*", "test");
    EXPECT_EQ(matches(star, "abxxc"), (std::vector<std::string>{"", "", "xx", ""}));
    EXPECT_THROW(tok::Regex("[\\S]", "test"), Error);
    EXPECT_THROW(tok::Regex("((", "test"), Error);
    tok::Regex lit = tok::Regex::literal("a.b*", "test");
    EXPECT_EQ(matches(lit, "a.b* axbb a.b*"), (std::vector<std::string>{"a.b*", "a.b*"}));
}

// ---- BPE against a naive reference -------------------------------------------------------------

// A tokenizer.json with no pre-tokenizer and no decoder, characters "a".."e" and `merges`.
std::string small_json(const std::vector<std::pair<std::string, std::string>>& merges,
                       const std::string& extra = "") {
    nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
    uint32_t id = 0;
    for (const char* c : {"a", "b", "c", "d", "e"}) vocab[c] = id++;
    nlohmann::ordered_json m = nlohmann::ordered_json::array();
    for (const auto& [l, r] : merges) {
        if (!vocab.contains(l + r)) vocab[l + r] = id++;
        m.push_back(l + " " + r);
    }
    return R"({"version": "1.0", "added_tokens": [], "normalizer": null, "pre_tokenizer": null,)" +
           extra + R"( "model": {"type": "BPE", "vocab": )" + vocab.dump() + R"(, "merges": )" +
           m.dump() + "}}";
}

// The textbook algorithm: merge the lowest-ranked adjacent pair, leftmost first, until none.
std::vector<std::string> naive_bpe(const std::string& word,
                                   const std::vector<std::pair<std::string, std::string>>& merges) {
    std::vector<std::string> s;
    for (char c : word) s.emplace_back(1, c);
    for (;;) {
        size_t best = 0, best_rank = std::numeric_limits<size_t>::max();
        for (size_t i = 0; i + 1 < s.size(); ++i) {
            for (size_t r = 0; r < merges.size() && r < best_rank; ++r) {
                if (merges[r].first == s[i] && merges[r].second == s[i + 1]) {
                    best = i, best_rank = r;
                    break;
                }
            }
        }
        if (best_rank == std::numeric_limits<size_t>::max()) return s;
        s[best] += s[best + 1];
        s.erase(s.begin() + static_cast<ptrdiff_t>(best) + 1);
    }
}

TEST(Bpe, MatchesNaiveReferenceOnRandomWordsShortAndLong) {
    const std::vector<std::pair<std::string, std::string>> merges = {
        {"a", "b"}, {"b", "a"},    {"ab", "c"}, {"a", "a"},  {"c", "d"}, {"aa", "aa"},
        {"e", "e"}, {"abc", "cd"}, {"d", "ab"}, {"ee", "e"}, {"b", "b"}, {"ba", "ab"}};
    Tokenizer t = Tokenizer::from_json(small_json(merges));
    Rng rng(123);
    for (int trial = 0; trial < 300; ++trial) {
        // Lengths past 64 exercise the heap version of the merge loop.
        size_t len = trial < 200 ? 1 + rng.next_u64() % 40 : 60 + rng.next_u64() % 400;
        std::string word;
        for (size_t i = 0; i < len; ++i)
            word.push_back(static_cast<char>('a' + rng.next_u64() % 5));
        std::vector<uint32_t> ids = t.encode(word);
        std::vector<std::string> expected = naive_bpe(word, merges);
        ASSERT_EQ(ids.size(), expected.size()) << word;
        for (size_t i = 0; i < ids.size(); ++i) {
            ASSERT_EQ(t.id_to_token(ids[i]).value(), expected[i]) << word;
        }
    }
}

TEST(Bpe, OverlappingPairMergesLeftFirst) {
    Tokenizer t = Tokenizer::from_json(small_json({{"a", "a"}}));
    std::vector<uint32_t> ids = t.encode("aaa");
    ASSERT_EQ(ids.size(), 2u);
    EXPECT_EQ(*t.id_to_token(ids[0]), "aa");
    EXPECT_EQ(*t.id_to_token(ids[1]), "a");
}

TEST(Bpe, UnknownCharactersAreDroppedWithoutUnkAndDecodeJoinsWithSpaces) {
    // The package drops characters it cannot represent when the model has no unk token, and a
    // tokenizer without decoder joins token strings with spaces.
    Tokenizer t = Tokenizer::from_json(small_json({{"a", "b"}}));
    std::vector<uint32_t> ids = t.encode("abzc");
    ASSERT_EQ(ids.size(), 2u);
    EXPECT_EQ(t.decode(ids), "ab c");
}

// ---- tokenizer.json errors ---------------------------------------------------------------------

void expect_error_mentions(const std::string& json, const std::string& needle) {
    try {
        Tokenizer::from_json(json, "my.json");
        FAIL() << "no error for " << needle;
    } catch (const Error& e) {
        std::string what = e.what();
        EXPECT_NE(what.find("my.json"), std::string::npos) << what;
        EXPECT_NE(what.find(needle), std::string::npos) << what;
    }
}

TEST(TokenizerJson, UnsupportedAndMalformedFieldsAreNamed) {
    expect_error_mentions(small_json({}, R"("normalizer": {"type": "NFC"},)"), "normalizer");
    expect_error_mentions(small_json({}, R"("decoder": {"type": "Metaspace"},)"), "decoder");
    expect_error_mentions(small_json({}, R"("surprise": 1,)"), "surprise");
    expect_error_mentions(small_json({{"a", "x"}}), "model.merges[0]");
    expect_error_mentions(
        small_json({}, R"("added_tokens": [{"id": 9, "content": "<m>", "lstrip": true}],)"),
        "added_tokens[0].lstrip");
    expect_error_mentions(
        small_json(
            {},
            R"("pre_tokenizer": {"type": "Split", "pattern": {"Regex": "[a"}, "behavior": "Isolated"},)"),
        "pre_tokenizer");
    expect_error_mentions("{\"model\": 3}", "model");
    // Hostile nesting is refused before it can exhaust the stack.
    std::string nested = R"({"type": "ByteLevel"})";
    for (int i = 0; i < 40; ++i)
        nested = R"({"type": "Sequence", "pretokenizers": [)" + nested + "]}";
    expect_error_mentions(small_json({}, R"("pre_tokenizer": )" + nested + ","), "nested");
    expect_error_mentions("not json", "invalid JSON");
    EXPECT_THROW(Tokenizer::load("/nonexistent/tokenizer.json"), Error);
}

TEST(TokenizerJson, CorruptedFilesThrowErrorNeverCrash) {
    // Random byte edits of a valid file (with added tokens and a Split): each load either
    // succeeds or throws bitttt::Error (no other exception, no crash under ASan).
    const std::string valid = small_json(
        {{"a", "b"}, {"ab", "c"}},
        R"("added_tokens": [{"id": 9, "content": "<s>", "special": true}], "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": " +"}, "behavior": "Removed", "invert": false}]},)");
    ASSERT_NO_THROW(Tokenizer::from_json(valid));
    Rng rng(99);
    const std::string alphabet = "{}[]\",:0123456789-. aZ\\";
    int loaded = 0;
    for (int trial = 0; trial < 2000; ++trial) {
        std::string text = valid;
        const int edits = 1 + static_cast<int>(rng.next_u64() % 3);
        for (int e = 0; e < edits; ++e) {
            const size_t pos = rng.next_u64() % text.size();
            text[pos] = alphabet[rng.next_u64() % alphabet.size()];
        }
        try {
            Tokenizer t = Tokenizer::from_json(text);
            t.decode(t.encode("abc <s> cab"));
            ++loaded;
        } catch (const Error&) {
        }
    }
    EXPECT_GT(loaded, 0);  // some edits (inside strings) keep the file valid
}

// ---- GPT-2 vocabulary: round trips, streaming, parallel encode ---------------------------------

// GPT-2's tokenizer.json assembled from encoder.json and vocab.bpe (legacy "a b" merges).
const Tokenizer& gpt2() {
    static const Tokenizer t = [] {
        const std::string dir = kShared + "/tokenizers/gpt2/";
        return Tokenizer::from_json(
            tok::gpt2_tokenizer_json(dir + "encoder.json", dir + "vocab.bpe"), "gpt2");
    }();
    return t;
}

std::vector<std::string> hard_texts() {
    return {"",
            "Hello, world! I'm here, they'll see.",
            "emoji \xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD CJK \xE4\xB8\xAD\xE6\x96\x87",
            "e\xCC\x81 \xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D \r\n\r\n",
            std::string(300, ' ') + "x" + std::string(500, '7'),
            "a<|endoftext|>b <|endoftext|>"};
}

TEST(Gpt2, KnownIdsAndRoundTrip) {
    const Tokenizer& t = gpt2();
    EXPECT_EQ(t.vocab_size(), 50257u);
    // Ids published with GPT-2 (encoder.json): "Hello" 15496, " world" 995.
    EXPECT_EQ(t.encode("Hello world"), (std::vector<uint32_t>{15496, 995}));
    EXPECT_EQ(t.encode("<|endoftext|>"), (std::vector<uint32_t>{50256}));
    EXPECT_GT(t.encode("<|endoftext|>", /*allow_special=*/false).size(), 1u);
    EXPECT_TRUE(t.is_special(50256));
    EXPECT_EQ(t.token_to_id("\xC4\xA0the").value(), 262u);  // "Ġthe"
    for (const auto& text : hard_texts()) EXPECT_EQ(t.decode(t.encode(text)), text);
    EXPECT_EQ(t.decode(t.encode("a<|endoftext|>b"), /*skip_special=*/true), "ab");
    EXPECT_THROW(t.decode(std::vector<uint32_t>{50257}), Error);
}

TEST(Gpt2, InvalidUtf8IsEncodedAsItsRepair) {
    const Tokenizer& t = gpt2();
    const std::string bad = "ok \xE0\x80 x\xED\xA0\x80y \xFF end\xE2\x82";
    EXPECT_EQ(t.encode(bad), t.encode(lossy(bad)));
    EXPECT_EQ(t.decode(t.encode(bad)), lossy(bad));
}

TEST(Gpt2, RandomBytesRoundTripToTheirRepair) {
    const Tokenizer& t = gpt2();
    Rng rng(5);
    for (int trial = 0; trial < 300; ++trial) {
        std::string text;
        const size_t len = rng.next_u64() % 200;
        for (size_t i = 0; i < len; ++i) {
            // Mostly ASCII and UTF-8 lead/continuation bytes, so valid characters occur too.
            const uint64_t r = rng.next_u64();
            text.push_back(
                static_cast<char>(r % 3 == 0 ? 0x80 + (r >> 8) % 0x80 : (r >> 8) % 0x100));
        }
        ASSERT_EQ(t.decode(t.encode(text)), lossy(text));
    }
}

TEST(Gpt2, ParallelAndBatchEncodeEqualSerial) {
    const std::string text = tok::read_text_file(kShared + "/tinystories/valid.txt.gz");
    const Tokenizer& t = gpt2();
    std::vector<uint32_t> serial = t.encode(text);
    EXPECT_EQ(t.encode_parallel(text, 2), serial);
    EXPECT_EQ(t.decode(serial), text);
    std::vector<std::string> texts = hard_texts();
    std::vector<std::string_view> views(texts.begin(), texts.end());
    auto batch = t.encode_batch(views, 2);
    for (size_t i = 0; i < texts.size(); ++i) EXPECT_EQ(batch[i], t.encode(texts[i]));
}

TEST(Gpt2, StreamingDecoderEqualsDecodeAndEmitsOnlyCompleteCharacters) {
    const Tokenizer& t = gpt2();
    Rng rng(7);
    for (int trial = 0; trial < 200; ++trial) {
        // Random ids include the byte tokens that split multi-byte characters across tokens.
        std::vector<uint32_t> ids;
        for (int i = 0; i < 30; ++i) {
            ids.push_back(rng.next_u64() % 2 ? static_cast<uint32_t>(rng.next_u64() % 256)
                                             : static_cast<uint32_t>(rng.next_u64() % 50257));
        }
        StreamingDecoder d = t.streaming_decoder();
        std::string streamed;
        for (uint32_t id : ids) {
            std::string piece = d.push(id);
            ASSERT_TRUE(tok::utf8_is_valid(piece));
            streamed += piece;
        }
        streamed += d.finish();
        ASSERT_EQ(streamed, t.decode(ids));
    }
    // "€" is E2 82 AC: byte tokens arrive one by one, the character comes out once complete.
    StreamingDecoder d = t.streaming_decoder();
    auto byte_id = [&](unsigned char b) {
        return t.token_to_id(tok::byte_level_table().byte_to_utf8[b]).value();
    };
    EXPECT_EQ(d.push(byte_id(0xE2)), "");
    EXPECT_EQ(d.push(byte_id(0x82)), "");
    EXPECT_EQ(d.push(byte_id(0xAC)), "\xE2\x82\xAC");
    EXPECT_EQ(d.push(byte_id(0xE2)), "");
    EXPECT_EQ(d.finish(), kFffd);
}

// ---- training ----------------------------------------------------------------------------------

TEST(Train, FirstMergesFollowPairCountsAndTieBreak) {
    // Words (GPT-2 pre-tokenizer, split at <|endoftext|>): "aaab" x2, " aaab" x2, "cd" x1,
    // " cd" x3. Ids: <|endoftext|> 0, then bytes by code point ('!' = 1, so 'a' = 65 ... 'd' = 68).
    // Pair counts: (a,a) 8, (a,b) 4, (c,d) 4, (Ġ,c) 3, (Ġ,a) 2 -> merge 0 is (a,a) = id 257.
    // Then (aa,a) = (257,65), (a,b) = (65,66), (c,d) = (67,68) all count 4: the smallest pair
    // wins, (a,b); then (aa,ab) = (257,258) and (c,d) tie at 4 and (c,d) wins.
    TokenizerTrainOptions options;
    options.vocab_size = 1 + 256 + 3;
    options.min_frequency = 1;
    Tokenizer t = Tokenizer::train_from_text(
        "aaab aaab aaab<|endoftext|>cd cd cd cd<|endoftext|>aaab", options);
    EXPECT_EQ(t.vocab_size(), 260u);
    EXPECT_EQ(t.token_to_id("<|endoftext|>").value(), 0u);
    EXPECT_TRUE(t.is_special(0));
    // Byte tokens in code point order of their characters: "!" (33) first.
    EXPECT_EQ(t.token_to_id("!").value(), 1u);
    nlohmann::json j = nlohmann::json::parse(t.to_json());
    const auto& merges = j["model"]["merges"];
    ASSERT_EQ(merges.size(), 3u);
    EXPECT_EQ(merges[0], nlohmann::json::array({"a", "a"}));
    EXPECT_EQ(merges[1], nlohmann::json::array({"a", "b"}));
    EXPECT_EQ(merges[2], nlohmann::json::array({"c", "d"}));
    EXPECT_EQ(t.decode(t.encode("aaab cd")), "aaab cd");
}

TEST(Train, MinFrequencyStopsAndResultIsDeterministicAcrossThreads) {
    const std::string text = tok::read_text_file(kShared + "/tinystories/valid.txt.gz");
    TokenizerTrainOptions options;
    options.vocab_size = 800;
    options.threads = 1;
    Tokenizer one = Tokenizer::train_from_text(text, options);
    options.threads = 2;
    Tokenizer two = Tokenizer::train_from_text(text, options);
    EXPECT_EQ(one.to_json(), two.to_json());
    EXPECT_EQ(one.vocab_size(), 800u);
    std::vector<uint32_t> ids = one.encode(text);
    EXPECT_EQ(one.decode(ids), text);
    EXPECT_GT(static_cast<double>(text.size()) / static_cast<double>(ids.size()), 2.5);
    // Reloading the written JSON gives the same tokenizer.
    EXPECT_EQ(Tokenizer::from_json(one.to_json()).encode(text), ids);

    options.min_frequency = 1000000;  // no pair is that frequent: bytes only
    Tokenizer bytes_only = Tokenizer::train_from_text(text, options);
    EXPECT_EQ(bytes_only.vocab_size(), 257u);
    EXPECT_EQ(bytes_only.encode("hi").size(), 2u);

    options.vocab_size = 100;  // cannot hold the byte alphabet
    EXPECT_THROW(Tokenizer::train_from_text(text, options), Error);
}

TEST(Train, EmptyTrainingFilesAreAnError) {
    const std::string path = ::testing::TempDir() + "/bitttt_empty_training.txt";
    std::ofstream(path).close();
    TokenizerTrainOptions options;
    options.vocab_size = 300;
    try {
        Tokenizer::train({path}, options);
        FAIL() << "an empty file trained a tokenizer";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("no text to train on"), std::string::npos) << e.what();
    }
    std::remove(path.c_str());
}

// ---- caches and text files ----------------------------------------------------------------------

TEST(Tokenizer, ReleaseCachesKeepsTheIdsAndIsSafeWhileOthersEncode) {
    TokenizerTrainOptions options;
    options.vocab_size = 320;
    options.threads = 1;
    std::string text;
    for (int i = 0; i < 40; ++i)
        text += "the cat sat on the mat, caf\xc3\xa9 " + std::to_string(i) + "\n";
    const Tokenizer tok = Tokenizer::train_from_text(text, options);
    const std::vector<uint32_t> want = tok.encode(text);
    tok.release_caches();
    EXPECT_EQ(tok.encode(text), want);
    EXPECT_EQ(tok.encode_parallel(text, 2), want);
    tok.release_caches();
    tok.release_caches();  // nothing cached: a no-op
    // Encoders on two threads while a third keeps dropping the caches: same ids every time.
    std::atomic<bool> stop{false};
    std::atomic<int> mismatches{0};
    std::thread dropper([&] {
        while (!stop) tok.release_caches();
    });
    std::vector<std::thread> encoders;
    for (int t = 0; t < 2; ++t) {
        encoders.emplace_back([&] {
            for (int i = 0; i < 50; ++i)
                if (tok.encode(text) != want) ++mismatches;
        });
    }
    for (auto& e : encoders) e.join();
    stop = true;
    dropper.join();
    EXPECT_EQ(mismatches.load(), 0);
}

TEST(Tokenizer, JsonHashIsTheHashOfToJsonComputedOnceAndSharedByCopies) {
    TokenizerTrainOptions options;
    options.vocab_size = 300;
    options.threads = 1;
    const std::string text = "the cat sat on the mat, the cat ran\n";
    const Tokenizer tok = Tokenizer::train_from_text(text, options);
    const std::string json = tok.to_json();
    const uint64_t want = XXH3_64bits(json.data(), json.size());
    // First calls from several threads at once: every one sees the same, complete value.
    std::vector<uint64_t> seen(4, 0);
    std::vector<std::thread> threads;
    for (size_t t = 0; t < seen.size(); ++t)
        threads.emplace_back([&, t] { seen[t] = tok.json_hash(); });
    for (auto& t : threads) t.join();
    for (uint64_t h : seen) EXPECT_EQ(h, want);
    const Tokenizer copy = tok;  // shares the (immutable) tokenizer
    EXPECT_EQ(copy.json_hash(), want);
    EXPECT_EQ(Tokenizer::from_json(json).json_hash(), want);  // the same JSON: the same hash
    // Another tokenizer (one merge only): another hash.
    options.vocab_size = 258;
    const Tokenizer other = Tokenizer::train_from_text(text, options);
    ASSERT_LT(other.vocab_size(), tok.vocab_size());
    EXPECT_NE(other.json_hash(), want);
}

TEST(TextFile, ReadsPlainAndGzipFilesOfEverySizeAroundTheBufferSizes) {
    const std::string dir = ::testing::TempDir();
    Rng rng(5);
    for (size_t size : {size_t{0}, size_t{1}, size_t{4095}, size_t{4096}, size_t{4097},
                        size_t{65535}, size_t{65536}, size_t{65537}, size_t{200000},
                        (size_t{1} << 20) - 1, (size_t{1} << 20) + 3}) {
        std::string bytes(size, '\0');
        for (auto& c : bytes) c = static_cast<char>('a' + rng.next_u64() % 26);
        const std::string plain = dir + "/bitttt_text_file.txt";
        std::ofstream(plain, std::ios::binary)
            .write(bytes.data(), static_cast<std::streamsize>(size));
        EXPECT_EQ(tok::read_text_file(plain), bytes) << size;
        const std::string gz = dir + "/bitttt_text_file.txt.gz";
        gzFile f = gzopen(gz.c_str(), "wb");
        ASSERT_NE(f, nullptr);
        if (size > 0) {
            ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(size)),
                      static_cast<int>(size));
        }
        gzclose(f);
        EXPECT_EQ(tok::read_text_file(gz), bytes) << size << " (gzip)";
        if (size == 65537) {
            EXPECT_THROW(tok::read_text_file(plain, 65536), Error);
        }
        std::remove(plain.c_str());
        std::remove(gz.c_str());
    }
    // A small gzip file of much text (read in chunks of the compressed size: many of them).
    const std::string gz = dir + "/bitttt_text_file_ratio.txt.gz";
    const std::string text(3'000'000, 'a');
    gzFile f = gzopen(gz.c_str(), "wb9");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(gzwrite(f, text.data(), static_cast<unsigned>(text.size())),
              static_cast<int>(text.size()));
    gzclose(f);
    EXPECT_LT(std::filesystem::file_size(gz), 20000u);
    EXPECT_EQ(tok::read_text_file(gz), text);
    EXPECT_THROW(tok::read_text_file(gz, text.size() - 1), Error);
    // Cut short (a partial download): an error naming the file, not a shorter text.
    std::filesystem::resize_file(gz, std::filesystem::file_size(gz) / 2);
    try {
        (void)tok::read_text_file(gz);
        ADD_FAILURE() << "a truncated gzip file was read without an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(gz), std::string::npos) << e.what();
    }
    std::remove(gz.c_str());
}

}  // namespace
}  // namespace bitttt
