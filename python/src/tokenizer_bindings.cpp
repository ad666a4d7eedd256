// Tokenizer (byte-level BPE, tokenizer.json) and its streaming decoder. The GIL is released while
// C++ works on text (encode, batch encode, decode, training), so other Python threads run on.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/vector.h>

#include <string>
#include <string_view>
#include <vector>

#include "bindings.hpp"
#include "bitttt/tokenizer.hpp"
#include "core/error.hpp"

namespace bitttt::python {
namespace {

using Release = nb::call_guard<nb::gil_scoped_release>;

// The C++ side starts as many threads (and a buffer each) as asked: bound the count as
// set_num_threads does, so that a stray 10**9 is an error rather than an exhausted machine.
void check_threads(int threads) {
    check(threads >= 0 && threads <= 4096, ErrorKind::kInvalidArgument,
          "threads must be in [0, 4096] (0: all cores), got {}", threads);
}

TokenizerTrainOptions train_options(int64_t vocab_size, int64_t min_frequency,
                                    std::vector<std::string> special_tokens, int threads) {
    // Python ints are unbounded: check the range here so that -1 is a clear ValueError rather
    // than a huge unsigned number.
    check(vocab_size >= 0 && vocab_size <= int64_t{1} << 32, ErrorKind::kInvalidArgument,
          "train: vocab_size must be a positive count, got {}", vocab_size);
    check(min_frequency >= 0, ErrorKind::kInvalidArgument,
          "train: min_frequency must be >= 0, got {}", min_frequency);
    check_threads(threads);
    TokenizerTrainOptions o;
    o.vocab_size = static_cast<uint32_t>(vocab_size);
    o.min_frequency = static_cast<uint64_t>(min_frequency);
    o.special_tokens = std::move(special_tokens);
    o.threads = threads;
    return o;
}

}  // namespace

void bind_tokenizer(nb::module_& m) {
    nb::class_<StreamingDecoder>(
        m, "StreamingDecoder",
        "Turns ids arriving one by one into text pieces that are always whole UTF-8 characters. "
        "The pieces of every push() plus finish() equal Tokenizer.decode() of all the ids.")
        .def("push", &StreamingDecoder::push, nb::arg("id"),
             "Text completed by this id (possibly ''). Raises ValueError for an unknown id.")
        .def("finish", &StreamingDecoder::finish,
             "Flushes held bytes (an unfinished character becomes U+FFFD) and starts over.")
        .def("reset", &StreamingDecoder::reset, "Drops held bytes and starts over.");

    const std::vector<std::string> default_specials = {"<|endoftext|>"};
    nb::class_<Tokenizer>(m, "Tokenizer",
                          "Byte-level BPE tokenizer in the Hugging Face tokenizer.json format; "
                          "encodes to the same ids as the `tokenizers` package. Immutable and "
                          "safe to share between threads.")
        .def_static(
            "from_file", [](const Path& path) { return Tokenizer::load(path.string()); },
            nb::arg("path"), Release(),
            "Loads a tokenizer.json file (OSError if unreadable, ValueError if invalid).")
        .def_static(
            "from_json",
            [](std::string_view json) { return Tokenizer::from_json(json, "<tokenizer json>"); },
            nb::arg("json"), Release(), "Parses tokenizer.json text.")
        .def("to_json", &Tokenizer::to_json, "The tokenizer.json text.")
        .def(
            "save", [](const Tokenizer& t, const Path& path) { t.save(path.string()); },
            nb::arg("path"), Release(), "Writes tokenizer.json (atomically).")
        .def_static(
            "train",
            [](const std::vector<Path>& paths, int64_t vocab_size, int64_t min_frequency,
               std::vector<std::string> special_tokens, int threads) {
                auto options =
                    train_options(vocab_size, min_frequency, std::move(special_tokens), threads);
                std::vector<std::string> files;
                for (const Path& p : paths) files.push_back(p.string());
                nb::gil_scoped_release release;
                return Tokenizer::train(files, options);
            },
            nb::arg("files"), nb::arg("vocab_size") = 16384, nb::arg("min_frequency") = 2,
            nb::arg("special_tokens") = default_specials, nb::arg("threads") = 0,
            "Trains a byte-level BPE tokenizer (GPT-2 pre-tokenizer) on UTF-8 text files, plain "
            "or .gz, like the `tokenizers` BpeTrainer. vocab_size counts the special tokens "
            "(first ids, so <|endoftext|> is 0), the 256 bytes and the merges.")
        .def_static(
            "train_from_text",
            [](std::string_view text, int64_t vocab_size, int64_t min_frequency,
               std::vector<std::string> special_tokens, int threads) {
                auto options =
                    train_options(vocab_size, min_frequency, std::move(special_tokens), threads);
                nb::gil_scoped_release release;
                return Tokenizer::train_from_text(text, options);
            },
            nb::arg("text"), nb::arg("vocab_size") = 16384, nb::arg("min_frequency") = 2,
            nb::arg("special_tokens") = default_specials, nb::arg("threads") = 0,
            "Tokenizer.train() on text held in memory.")
        .def("encode", &Tokenizer::encode, nb::arg("text"), nb::arg("allow_special") = true,
             Release(),
             "Text -> ids. allow_special=False encodes special tokens such as <|endoftext|> as "
             "plain text.")
        .def(
            "encode_batch",
            [](const Tokenizer& t, std::vector<std::string> texts, int threads,
               bool allow_special) {
                check_threads(threads);
                nb::gil_scoped_release release;
                std::vector<std::string_view> views(texts.begin(), texts.end());
                return t.encode_batch(views, threads, allow_special);
            },
            nb::arg("texts"), nb::arg("threads") = 0, nb::arg("allow_special") = true,
            "encode() of each text, on `threads` threads (0: all cores).")
        .def(
            "encode_long",
            [](const Tokenizer& t, std::string_view text, int threads, bool allow_special) {
                check_threads(threads);
                nb::gil_scoped_release release;
                return t.encode_parallel(text, threads, allow_special);
            },
            nb::arg("text"), nb::arg("threads") = 0, nb::arg("allow_special") = true,
            "The same ids as encode(), the text split at special tokens and encoded on "
            "`threads` threads: for long texts such as a corpus.")
        .def(
            "decode",
            [](const Tokenizer& t, const std::vector<uint32_t>& ids, bool skip_special) {
                return t.decode(ids, skip_special);
            },
            nb::arg("ids"), nb::arg("skip_special") = false, Release(),
            "Ids -> text (ValueError for an id that names no token).")
        .def(
            "decode_batch",
            [](const Tokenizer& t, const std::vector<std::vector<uint32_t>>& batch,
               bool skip_special) {
                std::vector<std::string> out;
                out.reserve(batch.size());
                for (const auto& ids : batch) out.push_back(t.decode(ids, skip_special));
                return out;
            },
            nb::arg("batch"), nb::arg("skip_special") = false, Release(),
            "decode() of each list of ids.")
        .def("streaming_decoder", &Tokenizer::streaming_decoder, nb::arg("skip_special") = false,
             "A StreamingDecoder for text that arrives id by id.")
        .def_prop_ro("vocab_size", &Tokenizer::vocab_size,
                     "One more than the largest id (the rows an embedding table needs).")
        .def("__len__", &Tokenizer::vocab_size, "The vocab_size.")
        .def("token_to_id", &Tokenizer::token_to_id, nb::arg("token"),
             "The id of a token as stored in tokenizer.json (byte-level form, e.g. 'Ġthe'), or "
             "None.")
        .def("id_to_token", &Tokenizer::id_to_token, nb::arg("id"),
             "The token string of an id, or None if the id names no token.")
        .def("is_special", &Tokenizer::is_special, nb::arg("id"),
             "Whether the id is a special token such as <|endoftext|>.")
        .def("__repr__", [](const Tokenizer& t) {
            return "Tokenizer(vocab_size=" + std::to_string(t.vocab_size()) + ")";
        });
}

}  // namespace bitttt::python
