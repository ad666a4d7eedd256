// Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/) with the project's
// own writers, so every seed is a valid file of today's formats. Run from the repository root:
//   cmake --build build-fuzz --target fuzz_make_corpus && build-fuzz/fuzz_make_corpus
//   tests/fuzz/corpus
// (any build directory works). Hand-written seeds (config.json variants, token cache indexes,
// C ABI programs) are written here too, so the whole corpus is reproducible.
#include <bitttt/tokenizer.hpp>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "io/bitt.hpp"
#include "io/safetensors.hpp"
#include "model/config.hpp"
#include "model/ttt_state_file.hpp"

namespace fs = std::filesystem;
using namespace bitttt;

namespace {

fs::path root;

void put(const std::string& target, const std::string& name, const std::string& bytes,
         const std::string& prefix = "") {
    fs::create_directories(root / target);
    std::ofstream out(root / target / name, std::ios::binary | std::ios::trunc);
    out << prefix << bytes;
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<uint8_t> f32_bytes(std::vector<float> v) {
    std::vector<uint8_t> b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    return b;
}

Tokenizer small_tokenizer(uint32_t vocab) {
    TokenizerTrainOptions options;
    options.vocab_size = vocab;
    options.threads = 1;
    std::string text;
    for (int i = 0; i < 10; ++i) text += "the cat sat on the mat. the dog ran.\n";
    return Tokenizer::train_from_text(text, options);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: fuzz_make_corpus OUT_DIR\n");
        return 2;
    }
    root = argv[1];
    const fs::path tmp = fs::temp_directory_path() / "bitttt_make_corpus";
    fs::create_directories(tmp);

    // safetensors: each dtype, a scalar-ish shape, metadata, an empty file.
    {
        auto a = f32_bytes({1.0f, -2.0f, 0.5f, 3.0f, 0.0f, -0.0f});
        std::vector<uint8_t> h = {0x80, 0x3f, 0x00, 0xc0};  // bf16 1, -2
        std::vector<uint8_t> f = {0x00, 0x3c, 0x00, 0x7c};  // f16 1, +inf
        std::vector<uint8_t> u = {1, 2, 3};
        std::vector<io::TensorToWrite> t = {{"a", io::DType::kF32, {2, 3}, a, {}},
                                            {"b.bf16", io::DType::kBF16, {2}, h, {}},
                                            {"c.f16", io::DType::kF16, {1, 2}, f, {}},
                                            {"d", io::DType::kU8, {3}, u, {}}};
        io::write_safetensors((tmp / "a.st").string(), t, {{"format", "pt"}});
        put("fuzz_safetensors", "four_dtypes.safetensors", slurp(tmp / "a.st"));
        io::write_safetensors((tmp / "b.st").string(), {}, {});
        put("fuzz_safetensors", "empty.safetensors", slurp(tmp / "b.st"));
        const auto seven = f32_bytes({7.0f});
        std::vector<io::TensorToWrite> z = {{"zero", io::DType::kF32, {0, 4}, {}, {}},
                                            {"s", io::DType::kF32, {}, seven, {}}};
        io::write_safetensors((tmp / "c.st").string(), z, {}, 1);
        put("fuzz_safetensors", "zero_and_scalar.safetensors", slurp(tmp / "c.st"));
    }

    // config.json: defaults, the delta rule, every key.
    put("fuzz_config", "minimal.json", "{}");
    put("fuzz_config", "delta.json",
        R"({"vocab_size": 32, "hidden_dim": 16, "num_layers": 2, "ttt_rule": "delta", "ttt_heads": 2, "ttt_dim": 8})");
    {
        ModelConfig c;
        c.vocab_size = 300;
        c.hidden_dim = 64;
        c.num_layers = 3;
        c.act_bits = 0;
        c.resolve_and_validate();
        put("fuzz_config", "all_keys.json", c.to_json().dump(1));
    }

    // tokenizer.json: trained byte-level BPEs (with and without merges).
    put("fuzz_tokenizer_json", "bpe_280.json", small_tokenizer(280).to_json());
    put("fuzz_tokenizer_json", "bytes_257.json", small_tokenizer(257).to_json());

    // Text for the encode/decode target.
    put("fuzz_tokenizer_text", "ascii.txt", "the cat sat on the mat. <|endoftext|> the dog");
    put("fuzz_tokenizer_text", "utf8.txt",
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe6\x97\xa5\xe6\x9c\xac  \t\r\n");
    put("fuzz_tokenizer_text", "invalid.txt", "a\xff\xc3 \xe2\x82 \xed\xa0\x80 <|endoftext|");

    // .bitt: a tiny model's worth of tensors (not the full parameter table: read_bitt checks the
    // container; the loader checks the tensors), with and without a tokenizer. The first byte is
    // the target's mode byte (even: checksum on, odd: off).
    {
        ModelConfig c;
        c.vocab_size = 8;
        c.hidden_dim = 8;
        c.num_layers = 1;
        c.resolve_and_validate();
        io::BittToWrite w;
        w.config = c;
        w.ternary_shapes = {{"layers.0.mlp.up_proj.weight", {4, 8}}};
        std::vector<uint8_t> packed(64, 0x5a);
        const auto embed = f32_bytes(std::vector<float>(16, 0.25f));
        const auto scale = f32_bytes({0.5f});  // the spans below point into these
        w.tensors = {{"embed.weight", io::DType::kF32, {8, 2}, embed, {}},
                     {"layers.0.mlp.up_proj.weight", io::DType::kU8, {16, 4}, packed, {}},
                     {"layers.0.mlp.up_proj.weight_scale", io::DType::kF32, {1}, scale, {}}};
        io::write_bitt((tmp / "a.bitt").string(), w);
        put("fuzz_bitt", "no_tokenizer_checksum.bitt", slurp(tmp / "a.bitt"), std::string(1, '\0'));
        put("fuzz_bitt", "no_tokenizer_nochecksum.bitt", slurp(tmp / "a.bitt"), "\x01");
        w.tokenizer_json = small_tokenizer(257).to_json();
        w.ternary_shapes.clear();
        w.tensors.resize(1);
        io::write_bitt((tmp / "b.bitt").string(), w);
        put("fuzz_bitt", "tokenizer_nochecksum.bitt", slurp(tmp / "b.bitt"), "\x01");
    }

    // .tttstate: the fixed model of the target (rule 0, 2 layers, 1 head, Dh 2) and a delta one.
    {
        std::vector<float> w = {1, 2, 3, 4, -1, -2, -3, -4};
        save_ttt_state((tmp / "a.tttstate").string(), {0, 0x5EED5EED5EED5EEDull, 2, 1, 2, 17}, w);
        put("fuzz_tttstate", "fixed_model.tttstate", slurp(tmp / "a.tttstate"),
            std::string(1, '\0'));
        put("fuzz_tttstate", "fixed_model_self.tttstate", slurp(tmp / "a.tttstate"), "\x01");
        std::vector<float> d(2 * 2 * 2, 0.5f);
        save_ttt_state((tmp / "b.tttstate").string(), {1, 42, 1, 2, 2, 0}, d);
        put("fuzz_tttstate", "delta_self.tttstate", slurp(tmp / "b.tttstate"), "\x01");
    }

    // Token cache: a matching index (placeholders for the digests) + uint16 tokens, and a uint32
    // one. Byte-level ids: 'O' = 1 + 79.
    {
        const std::string index16 =
            R"({"format": 1, "source": "data.txt", "source_bytes": 65, "source_xxh3": "@SRC@", )"
            R"("tokenizer_xxh3": "@TOK@", "tokens": 4, "dtype": "uint16"})";
        put("fuzz_token_cache", "uint16.bin", index16 + std::string("\0\x50\0\x51\0\0\0\x52\0", 9));
        const std::string index32 =
            R"({"format": 1, "source": "data.txt", "source_bytes": 65, "source_xxh3": "@SRC@", )"
            R"("tokenizer_xxh3": "@TOK@", "tokens": 2, "dtype": "uint32"})";
        put("fuzz_token_cache", "uint32.bin", index32 + std::string("\0\x50\0\0\0\0\0\0\0", 9));
    }

    // C ABI programs: create a layer of dim 8 (op 0, size code 4), forward, get/set state,
    // reset, destroy, use after destroy, forge.
    {
        std::string p;
        auto op = [&](std::initializer_list<int> bytes) {
            for (int b : bytes) p.push_back(static_cast<char>(b));
        };
        op({0, 4, 0, 0xcd, 0xcc, 0xcc, 0x3d});     // create(8, 0.1): no handle byte yet
        op({1, 0, 3, 0, 0, 0x80, 0x3f});           // forward 3 tokens
        op({2, 0, 0, 0, 0, 0, 0x3f});              // set/get state, right count
        op({2, 0, 5, 0, 0, 0, 0x3f});              // wrong count
        op({3, 0, 4, 0, 1, 0, 0, 0, 0, 0, 0, 0});  // reset, destroy
        op({1, 0, 1, 3, 0, 0, 0});                 // use after destroy
        op({5, 0, 0x41, 0x41, 0, 0, 0, 0, 0, 0});  // forged handle
        put("fuzz_capi", "lifecycle.bin", p);
        put("fuzz_capi", "bad_sizes.bin",
            std::string("\x00\x00\x01\x00\x00\x00\x00\x00"
                        "\x00\x00\x0b\x00\x00\x00\xc0\x7f"
                        "\x00\x00\x0c\x00\x00\x00\x80\x7f",
                        24));
    }
    fs::remove_all(tmp);
    std::printf("corpus written to %s\n", root.c_str());
    return 0;
}
