#include "tokenizer/gpt2_files.hpp"

#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.hpp"
#include "tokenizer/text_file.hpp"

namespace bitttt::tok {

std::string gpt2_tokenizer_json(const std::string& encoder_json_path,
                                const std::string& vocab_bpe_path) {
    nlohmann::json vocab;
    try {
        vocab = nlohmann::json::parse(read_text_file(encoder_json_path));
    } catch (const nlohmann::json::exception& e) {
        fail(ErrorKind::kFormat, "{}: invalid JSON: {}", encoder_json_path, e.what());
    }
    check(vocab.is_object(), ErrorKind::kFormat, "{}: expected an object of token -> id",
          encoder_json_path);
    std::istringstream lines(read_text_file(vocab_bpe_path));
    nlohmann::json merges = nlohmann::json::array();
    std::string line;
    while (std::getline(lines, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty() || line.starts_with("#version")) continue;
        merges.push_back(line);  // checked by the tokenizer.json reader
    }
    nlohmann::json added = nlohmann::json::array();
    if (auto it = vocab.find("<|endoftext|>"); it != vocab.end()) {
        added.push_back({{"id", *it},
                         {"content", "<|endoftext|>"},
                         {"single_word", false},
                         {"lstrip", false},
                         {"rstrip", false},
                         {"normalized", false},
                         {"special", true}});
    }
    nlohmann::json byte_level = {{"type", "ByteLevel"},
                                 {"add_prefix_space", false},
                                 {"trim_offsets", true},
                                 {"use_regex", true}};
    nlohmann::json j = {{"version", "1.0"},
                        {"truncation", nullptr},
                        {"padding", nullptr},
                        {"added_tokens", added},
                        {"normalizer", nullptr},
                        {"pre_tokenizer", byte_level},
                        {"post_processor", nullptr},
                        {"decoder", byte_level},
                        {"model",
                         {{"type", "BPE"},
                          {"dropout", nullptr},
                          {"unk_token", nullptr},
                          {"continuing_subword_prefix", nullptr},
                          {"end_of_word_suffix", nullptr},
                          {"fuse_unk", false},
                          {"byte_fallback", false},
                          {"ignore_merges", false},
                          {"vocab", vocab},
                          {"merges", merges}}}};
    return j.dump();
}

}  // namespace bitttt::tok
