// GPT-2's original tokenizer files (encoder.json: token -> id; vocab.bpe: "#version" line, then
// one merge "left right" a line) as tokenizer.json text: ByteLevel pre-tokenizer (no prefix
// space) and decoder, and `<|endoftext|>` as a special added token (id 50256 in GPT-2) when the
// vocabulary has it. The same tokenizer the `tokenizers` package builds with
// models.BPE.from_file(...) plus ByteLevel pre-tokenizer and decoder.
#pragma once

#include <string>

namespace bitttt::tok {

std::string gpt2_tokenizer_json(const std::string& encoder_json_path,
                                const std::string& vocab_bpe_path);

}  // namespace bitttt::tok
