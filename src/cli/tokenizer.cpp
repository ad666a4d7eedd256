// `bitttt tokenizer train|encode|decode`: byte-level BPE tokenizers in tokenizer.json format.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "bitttt/tokenizer.hpp"
#include "cli/commands.hpp"
#include "core/error.hpp"
#include "tokenizer/text_file.hpp"

namespace bitttt::cli {

namespace {

struct TokenizerArgs {
    std::vector<std::string> inputs;
    std::string output = "tokenizer.json";
    std::string tokenizer;
    std::string text;
    std::vector<std::string> special = {"<|endoftext|>"};
    std::vector<std::string> ids;
    uint32_t vocab_size = 16384;
    uint64_t min_frequency = 2;
    int threads = 0;
    bool no_special = false;
    bool skip_special = false;
    bool jsonl = false;
};

std::string read_stdin() {
    std::ostringstream s;
    s << std::cin.rdbuf();
    return s.str();
}

void run_train(const TokenizerArgs& a) {
    TokenizerTrainOptions options;
    options.vocab_size = a.vocab_size;
    options.min_frequency = a.min_frequency;
    options.special_tokens = a.special;
    options.threads = a.threads;
    const auto start = std::chrono::steady_clock::now();
    auto elapsed = [&] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    options.progress = [&](const TokenizerTrainProgress& p) {
        const double pct =
            p.total ? 100.0 * static_cast<double>(p.done) / static_cast<double>(p.total) : 100.0;
        if (p.stage == "count") {
            fmt::print(stderr, "\r[{:6.1f}s] counting words: {:.1f} / {:.1f} MB ({:.0f}%)",
                       elapsed(), static_cast<double>(p.done) / 1e6,
                       static_cast<double>(p.total) / 1e6, pct);
        } else {
            fmt::print(stderr, "\r[{:6.1f}s] merges: {} / {} ({:.0f}%)          ", elapsed(),
                       p.done, p.total, pct);
        }
        if (p.done == p.total) fmt::print(stderr, "\n");
        std::fflush(stderr);
    };
    Tokenizer tokenizer = Tokenizer::train(a.inputs, options);
    tokenizer.save(a.output);
    fmt::print(stderr, "[{:6.1f}s] wrote {} ({} tokens)\n", elapsed(), a.output,
               tokenizer.vocab_size());
}

// --jsonl: each input line is a JSON string, each output line the JSON array of its ids (one
// process for many texts: tests and tools).
void encode_jsonl(const Tokenizer& tokenizer, const TokenizerArgs& a) {
    std::string line;
    size_t number = 0;
    while (std::getline(std::cin, line)) {
        ++number;
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(line);
        } catch (const nlohmann::json::exception& e) {
            fail(ErrorKind::kInvalidArgument, "stdin line {}: invalid JSON: {}", number, e.what());
        }
        check(j.is_string(), ErrorKind::kInvalidArgument, "stdin line {}: expected a JSON string",
              number);
        fmt::print("{}\n",
                   nlohmann::json(tokenizer.encode(j.get<std::string>(), !a.no_special)).dump());
    }
}

void decode_jsonl(const Tokenizer& tokenizer, const TokenizerArgs& a) {
    std::string line;
    size_t number = 0;
    while (std::getline(std::cin, line)) {
        ++number;
        std::vector<uint32_t> ids;
        try {
            ids = nlohmann::json::parse(line).get<std::vector<uint32_t>>();
        } catch (const nlohmann::json::exception& e) {
            fail(ErrorKind::kInvalidArgument, "stdin line {}: expected a JSON array of ids: {}",
                 number, e.what());
        }
        fmt::print("{}\n", nlohmann::json(tokenizer.decode(ids, a.skip_special)).dump());
    }
}

void run_encode(const TokenizerArgs& a) {
    Tokenizer tokenizer = Tokenizer::load(a.tokenizer);
    if (a.jsonl) return encode_jsonl(tokenizer, a);
    std::string text;
    if (!a.text.empty()) {
        text = a.text;
    } else if (!a.inputs.empty()) {
        for (const auto& path : a.inputs) text += tok::read_text_file(path);
    } else {
        text = read_stdin();
    }
    std::vector<uint32_t> ids = tokenizer.encode_parallel(text, a.threads, !a.no_special);
    std::string out;
    out.reserve(ids.size() * 6);
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i) out.push_back(' ');
        out += std::to_string(ids[i]);
    }
    out.push_back('\n');
    std::fwrite(out.data(), 1, out.size(), stdout);
}

void run_decode(const TokenizerArgs& a) {
    Tokenizer tokenizer = Tokenizer::load(a.tokenizer);
    if (a.jsonl) return decode_jsonl(tokenizer, a);
    std::vector<std::string> words = a.ids;
    if (words.empty()) {
        std::istringstream in(read_stdin());
        words.assign(std::istream_iterator<std::string>(in), std::istream_iterator<std::string>());
    }
    std::vector<uint32_t> ids;
    for (const auto& w : words) {
        size_t used = 0;
        unsigned long long v = 0;
        try {
            v = std::stoull(w, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        check(used == w.size() && !w.empty() && w[0] != '-' && v <= UINT32_MAX,
              ErrorKind::kInvalidArgument, "decode: '{}' is not a token id", w);
        ids.push_back(static_cast<uint32_t>(v));
    }
    std::string text = tokenizer.decode(ids, a.skip_special);
    std::fwrite(text.data(), 1, text.size(), stdout);
}

}  // namespace

void register_tokenizer(CLI::App& app) {
    auto* cmd = app.add_subcommand("tokenizer", "Train a byte-level BPE tokenizer, encode, decode");
    cmd->require_subcommand(1);
    auto args = std::make_shared<TokenizerArgs>();

    auto* train = cmd->add_subcommand("train", "Train a tokenizer on text files (plain or .gz)");
    train->add_option("inputs", args->inputs, "Training text files")
        ->required()
        ->check(CLI::ExistingFile);
    train->add_option("-o,--output", args->output, "Output tokenizer.json")->capture_default_str();
    train->add_option("--vocab-size", args->vocab_size, "Vocabulary size (special + 256 + merges)")
        ->capture_default_str()
        ->check(CLI::Range(257u, 1u << 24));
    train->add_option("--min-frequency", args->min_frequency, "Smallest pair count to merge")
        ->capture_default_str();
    train->add_option("--special", args->special, "Special tokens, in id order")
        ->capture_default_str();
    train->add_option("-t,--threads", args->threads, "Threads for word counting (0: all cores)")
        ->check(CLI::Range(0, 4096));
    train->callback([args] { run_train(*args); });

    auto* encode =
        cmd->add_subcommand("encode", "Print the token ids of text (--text, files or stdin)");
    encode->add_option("-k,--tokenizer", args->tokenizer, "tokenizer.json")->required();
    encode->add_option("--text", args->text, "Text to encode");
    encode->add_option("inputs", args->inputs, "Text files (plain or .gz)")
        ->check(CLI::ExistingFile);
    encode->add_flag("--no-special", args->no_special, "Encode special tokens as plain text");
    encode->add_option("-t,--threads", args->threads, "Threads (0: all cores)")
        ->check(CLI::Range(0, 4096));
    encode->add_flag("--jsonl", args->jsonl,
                     "stdin: one JSON string a line; stdout: JSON id arrays");
    encode->callback([args] { run_encode(*args); });

    auto* decode =
        cmd->add_subcommand("decode", "Print the text of token ids (arguments or stdin)");
    decode->add_option("-k,--tokenizer", args->tokenizer, "tokenizer.json")->required();
    decode->add_option("ids", args->ids, "Token ids");
    decode->add_flag("--skip-special", args->skip_special, "Leave out special tokens");
    decode->add_flag("--jsonl", args->jsonl,
                     "stdin: one JSON id array a line; stdout: JSON strings");
    decode->callback([args] { run_decode(*args); });
}

}  // namespace bitttt::cli
