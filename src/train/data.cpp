#include "train/data.hpp"

#include <xxhash.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/atomic_file.hpp"
#include "io/json_text.hpp"
#include "io/mapped_file.hpp"
#include "tokenizer/text_file.hpp"

namespace bitttt::train {
namespace {

std::string hex64(uint64_t h) {
    return fmt::format("{:016x}", h);
}

uint64_t hash_file(const std::string& path) {
    auto file = io::MappedFile::open(path);
    return XXH3_64bits(file->data(), file->size());
}

}  // namespace

std::vector<std::string_view> split_documents(std::string_view text) {
    std::vector<std::string_view> docs;
    size_t doc_start = 0, pos = 0;
    auto push = [&](size_t end) {
        std::string_view d = text.substr(doc_start, end - doc_start);
        while (!d.empty() && (d.back() == '\n' || d.back() == '\r')) d.remove_suffix(1);
        if (!d.empty()) docs.push_back(d);
    };
    while (pos < text.size()) {
        size_t eol = text.find('\n', pos);
        if (eol == std::string_view::npos) eol = text.size();
        std::string_view line = text.substr(pos, eol - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line == kEndOfText) {
            push(pos);
            doc_start = std::min(text.size(), eol + 1);
        }
        pos = eol + 1;
    }
    if (doc_start < text.size()) push(text.size());
    return docs;
}

std::vector<int32_t> tokenize_documents(std::string_view text, const Tokenizer& tokenizer) {
    auto eot = tokenizer.token_to_id(kEndOfText);
    check(eot.has_value(), ErrorKind::kInvalidArgument,
          "the tokenizer has no '<|endoftext|>' token");
    std::vector<std::string_view> docs = split_documents(text);
    // Document text is plain text: a literal "<|endoftext|>" inside it is not the special token.
    auto ids = tokenizer.encode_batch(docs, 0, /*allow_special=*/false);
    std::vector<int32_t> tokens;
    size_t total = 0;
    for (const auto& d : ids) total += d.size() + 1;
    tokens.reserve(total);
    for (const auto& d : ids) {
        for (uint32_t id : d) tokens.push_back(static_cast<int32_t>(id));
        tokens.push_back(static_cast<int32_t>(*eot));
    }
    return tokens;
}

TokenCorpus load_corpus(const std::string& text_path, const Tokenizer& tokenizer,
                        const std::string& cache_dir) {
    namespace fs = std::filesystem;
    const uint64_t source_bytes = fs::file_size(text_path);
    const std::string source_hash = hex64(hash_file(text_path));
    const std::string tok_hash = hex64(tokenizer.json_hash());
    const std::string key = hex64(XXH3_64bits((source_hash + tok_hash).data(), 32));
    const std::string stem =
        (fs::path(cache_dir) / (fs::path(text_path).filename().string() + "." + key)).string();
    const std::string token_path = stem + ".tokens", index_path = stem + ".json";
    const int64_t vocab = tokenizer.vocab_size();
    TokenCorpus corpus;
    corpus.cache_path = token_path;

    if (fs::exists(index_path) && fs::exists(token_path)) {
        // A cache that does not match (or is damaged) is rebuilt, never trusted.
        try {
            auto index = io::parse_json_checked(io::read_text_file(index_path), index_path);
            const int64_t count = index.at("tokens").get<int64_t>();
            const int width = index.at("dtype").get<std::string>() == "uint16" ? 2 : 4;
            if (index.at("source_bytes").get<uint64_t>() == source_bytes &&
                index.at("source_xxh3").get<std::string>() == source_hash &&
                index.at("tokenizer_xxh3").get<std::string>() == tok_hash && count > 0 &&
                fs::file_size(token_path) == static_cast<uint64_t>(count) * width) {
                auto file = io::MappedFile::open(token_path);
                corpus.tokens.resize(static_cast<size_t>(count));
                bool valid = true;
                for (int64_t i = 0; i < count; ++i) {
                    uint32_t id = 0;
                    if (width == 2) {
                        uint16_t v;
                        std::memcpy(&v, file->data() + 2 * i, 2);
                        id = v;
                    } else {
                        std::memcpy(&id, file->data() + 4 * i, 4);
                    }
                    valid = valid && id < static_cast<uint32_t>(vocab);
                    corpus.tokens[static_cast<size_t>(i)] = static_cast<int32_t>(id);
                }
                if (valid) {
                    corpus.from_cache = true;
                    return corpus;
                }
            }
        } catch (const std::exception&) {
            // fall through: rebuild
        }
        corpus.tokens.clear();
    }

    corpus.tokens = tokenize_documents(tok::read_text_file(text_path), tokenizer);
    check(!corpus.tokens.empty(), ErrorKind::kInvalidArgument, "{}: no text to train on",
          text_path);
    fs::create_directories(cache_dir);
    const bool narrow = vocab <= 65536;
    {
        io::AtomicFileWriter out(token_path);
        std::vector<uint8_t> buf;
        buf.reserve(corpus.tokens.size() * (narrow ? 2 : 4));
        for (int32_t id : corpus.tokens) {
            const uint32_t u = static_cast<uint32_t>(id);
            buf.push_back(static_cast<uint8_t>(u));
            buf.push_back(static_cast<uint8_t>(u >> 8));
            if (!narrow) {
                buf.push_back(static_cast<uint8_t>(u >> 16));
                buf.push_back(static_cast<uint8_t>(u >> 24));
            }
        }
        out.write(buf.data(), buf.size());
        out.commit();
    }
    nlohmann::json index = {{"format", 1},
                            {"source", text_path},
                            {"source_bytes", source_bytes},
                            {"source_xxh3", source_hash},
                            {"tokenizer_xxh3", tok_hash},
                            {"tokens", corpus.tokens.size()},
                            {"dtype", narrow ? "uint16" : "uint32"}};
    io::write_file_atomic(index_path, index.dump(2) + "\n");
    return corpus;
}

Tokenizer byte_level_tokenizer() {
    TokenizerTrainOptions options;
    options.vocab_size = 257;  // <|endoftext|> + 256 bytes: no merges
    return Tokenizer::train_from_text("", options);
}

BatchSampler::BatchSampler(const std::vector<int32_t>& tokens, int64_t B, int64_t T, uint64_t seed)
    : tokens_(tokens), B_(B), T_(T), rng_(seed) {
    check(static_cast<int64_t>(tokens.size()) >= T + 1, ErrorKind::kInvalidArgument,
          "the data has {} tokens, fewer than context length + 1 = {}", tokens.size(), T + 1);
}

void BatchSampler::next(int32_t* inputs, int32_t* targets) {
    const uint64_t starts = tokens_.size() - static_cast<uint64_t>(T_);  // windows of T+1
    for (int64_t b = 0; b < B_; ++b) {
        const int64_t s = static_cast<int64_t>(rng_.below(starts));
        for (int64_t t = 0; t < T_; ++t) {
            inputs[b * T_ + t] = tokens_[static_cast<size_t>(s + t)];
            targets[b * T_ + t] = tokens_[static_cast<size_t>(s + t + 1)];
        }
    }
}

}  // namespace bitttt::train
