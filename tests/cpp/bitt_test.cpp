// .bitt files: round trips through the loader (packed weights used in place in the mapping),
// the file layout checked byte by byte, and every kind of damaged or inconsistent file.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <nlohmann/json.hpp>

#include "core/rng.hpp"
#include "io/bitt.hpp"
#include "io/mapped_file.hpp"
#include "io_test_util.hpp"
#include "kernels/cpu/ternary.hpp"
#include "model/loader.hpp"

namespace bitttt {
namespace {

using io::DType;
using testing::error_of;
using testing::read_bytes;
using testing::ScratchDir;
using testing::write_bytes;

const char* kTokenizer = R"({"version":"1.0","model":{"type":"BPE","vocab":{"a":0,"\u00e9":1}},)"
                         R"("merges":[],"added_tokens":[{"id":0,"content":"<|endoftext|>"}]})";

ModelConfig small_config(const char* rule = "reconstruct") {
    // Odd sizes: rows and columns that need padding in the packed layout.
    return ModelConfig::from_json({{"vocab_size", 37},
                                   {"hidden_dim", 20},
                                   {"num_layers", 2},
                                   {"ttt_dim", 6},
                                   {"mlp_dim", 44},
                                   {"ttt_rule", rule},
                                   {"ttt_heads", std::string(rule) == "delta" ? 2 : 1}});
}

// Every tensor of `a` and `b` holds the same values (packed codes compared as logical codes and
// as the bytes of the padded layout).
void expect_same_weights(const ModelWeights& a, const ModelWeights& b) {
    ASSERT_EQ(a.config, b.config);
    ASSERT_EQ(a.table.size(), b.table.size());
    for (size_t i = 0; i < a.table.size(); ++i) {
        const ParamSpec& spec = a.table[i];
        if (spec.kind == ParamKind::kBitLinear) {
            const auto &x = a.tensors[i].ternary, &y = b.tensors[i].ternary;
            ASSERT_EQ(x.scale, y.scale) << spec.name;
            ASSERT_EQ(x.rows, y.rows);
            ASSERT_EQ(x.cols, y.cols);
            const auto n = static_cast<size_t>(kernels::packed_bytes(x.rows, x.cols));
            ASSERT_EQ(std::memcmp(x.codes, y.codes, n), 0) << spec.name;
        } else {
            for (int64_t j = 0; j < spec.numel(); ++j)
                ASSERT_EQ(a.tensors[i].f32[j], b.tensors[i].f32[j]) << spec.name << "[" << j << "]";
        }
    }
}

TEST(Bitt, RoundTripMapsPackedWeightsInPlace) {
    ScratchDir dir;
    for (const char* rule : {"reconstruct", "delta"}) {
        const ModelWeights w = ModelWeights::random(small_config(rule), 11);
        const std::string path = dir.file(std::string(rule) + ".bitt");
        save_bitt(path, w, std::string(kTokenizer));
        LoadedModel m = load_model(path);
        expect_same_weights(w, m.weights);
        ASSERT_TRUE(m.tokenizer_json.has_value());
        EXPECT_EQ(nlohmann::json::parse(*m.tokenizer_json), nlohmann::json::parse(kTokenizer));
        EXPECT_EQ(m.weights.layers.size(), 2u);

        // Zero copy: every packed tensor points into the mapping, 64-byte aligned.
        auto file = std::static_pointer_cast<const io::MappedFile>(m.weights.storage.at(0));
        ASSERT_NE(file, nullptr);
        auto in_file = [&](const void* p) {
            auto* b = static_cast<const uint8_t*>(p);
            return b >= file->data() && b < file->data() + file->size();
        };
        for (size_t i = 0; i < m.weights.table.size(); ++i) {
            const ParamSpec& spec = m.weights.table[i];
            if (spec.kind == ParamKind::kBitLinear) {
                const uint8_t* codes = m.weights.tensors[i].ternary.codes;
                EXPECT_TRUE(in_file(codes)) << spec.name;
                EXPECT_EQ(reinterpret_cast<uintptr_t>(codes) % 64, 0u) << spec.name;
            } else if (spec.numel() * 4 % 64 == 0) {  // fp32 tensors of whole cache lines too
                EXPECT_TRUE(in_file(m.weights.tensors[i].f32)) << spec.name;
            }
        }
    }
}

TEST(Bitt, FileLayoutFollowsTheSpec) {
    ScratchDir dir;
    const ModelWeights w = ModelWeights::random(small_config(), 2);
    const std::string path = dir.file("m.bitt");
    save_bitt(path, w, std::nullopt);
    const std::vector<uint8_t> bytes = read_bytes(path);
    ASSERT_GT(bytes.size(), 12u);
    EXPECT_EQ(std::string(bytes.begin(), bytes.begin() + 4), "BITT");
    uint64_t n;
    std::memcpy(&n, bytes.data() + 4, 8);
    EXPECT_EQ((12 + n) % 64, 0u) << "body not 64-byte aligned";
    auto header = nlohmann::json::parse(bytes.begin() + 12, bytes.begin() + 12 + long(n));
    EXPECT_EQ(header["format_version"], 1);
    EXPECT_TRUE(header["tokenizer"].is_null());
    EXPECT_EQ(header["config"]["hidden_dim"], 20);
    EXPECT_EQ(header["ternary"]["layout"], "tq2_rg16");
    EXPECT_EQ(header["ternary"]["shapes"]["layers.1.mlp.down_proj.weight"],
              nlohmann::json::array({20, 44}));
    const uint8_t* body = bytes.data() + 12 + n;
    const size_t body_bytes = bytes.size() - 12 - n;
    EXPECT_EQ(header["body_bytes"], body_bytes);
    EXPECT_EQ(header["checksum"]["xxh3_64"], fmt::format("{:016x}", XXH3_64bits(body, body_bytes)));

    // The body is plain safetensors: packed codes U8 [padded rows, padded cols / 4] with the
    // codes of kernels/cpu/ternary.hpp, scales F32 [1], data 64-byte aligned in the file.
    auto view = io::SafetensorsView::parse({body, body_bytes}, "body");
    EXPECT_EQ((12 + n + view.data_offset()) % 64, 0u);
    const auto& codes = view.at("layers.0.mlp.gate_proj.weight");  // logical [44, 20]
    EXPECT_EQ(codes.dtype, DType::kU8);
    EXPECT_EQ(codes.shape, (std::vector<int64_t>{48, 8}));  // 44 -> 48 rows, 20 -> 32 cols / 4
    EXPECT_EQ((codes.data.data() - bytes.data()) % 64, 0);
    const auto& spec_codes = w.tensor("layers.0.mlp.gate_proj.weight").ternary;
    EXPECT_EQ(std::memcmp(codes.data.data(), spec_codes.codes, codes.data.size()), 0);
    const auto& scale = view.at("layers.0.mlp.gate_proj.weight_scale");
    EXPECT_EQ(scale.shape, (std::vector<int64_t>{1}));
    float beta;
    std::memcpy(&beta, scale.data.data(), 4);
    EXPECT_EQ(beta, spec_codes.scale);
    EXPECT_EQ(view.at("embed.weight").dtype, DType::kF32);
    EXPECT_FALSE(load_model(path).tokenizer_json.has_value());
}

TEST(Bitt, HalfPrecisionFloatTensors) {
    ScratchDir dir;
    const ModelWeights w = ModelWeights::random(small_config("delta"), 4);
    for (DType dtype : {DType::kBF16, DType::kF16}) {
        const std::string path = dir.file("h.bitt");
        save_bitt(path, w, std::nullopt, dtype);
        ModelWeights r = load_model_weights(path);
        for (size_t i = 0; i < w.table.size(); ++i) {
            if (w.table[i].kind == ParamKind::kBitLinear) continue;
            for (int64_t j = 0; j < w.table[i].numel(); ++j) {
                const float x = w.tensors[i].f32[j];
                const float want = dtype == DType::kBF16 ? io::bf16_to_f32(io::f32_to_bf16(x))
                                                         : io::f16_to_f32(io::f32_to_f16(x));
                ASSERT_EQ(r.tensors[i].f32[j], want) << w.table[i].name;
            }
        }
    }
}

// ---- damaged files ----

struct Parts {
    std::vector<uint8_t> bytes;
    uint64_t header_len;
    std::string header() const {
        return std::string(bytes.begin() + 12, bytes.begin() + 12 + long(header_len));
    }
    void set_header(const std::string& h) {  // same length only
        ASSERT_EQ(h.size(), header_len);
        std::memcpy(bytes.data() + 12, h.data(), h.size());
    }
};

Parts parts_of(const std::string& path) {
    Parts p{read_bytes(path), 0};
    std::memcpy(&p.header_len, p.bytes.data() + 4, 8);
    return p;
}

// Replaces the first `from` in the header by `to` (same length).
std::vector<uint8_t> edit_header(Parts p, const std::string& from, const std::string& to) {
    std::string h = p.header();
    size_t at = h.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    h.replace(at, from.size(), to);
    p.set_header(h);
    return p.bytes;
}

TEST(Bitt, DamagedFilesGiveErrorsNamingFileAndProblem) {
    ScratchDir dir;
    const ModelWeights w = ModelWeights::random(small_config(), 5);
    const std::string good = dir.file("good.bitt");
    save_bitt(good, w, std::string(kTokenizer));
    const Parts p = parts_of(good);
    const size_t body_at = 12 + p.header_len;

    std::vector<uint8_t> flipped = p.bytes;
    flipped[body_at + (flipped.size() - body_at) / 2] ^= 0x10;
    std::vector<uint8_t> magic = p.bytes;
    magic[0] = 'X';
    std::vector<uint8_t> huge = p.bytes;
    const uint64_t big = uint64_t{1} << 40;
    std::memcpy(huge.data() + 4, &big, 8);
    std::vector<uint8_t> past = p.bytes;
    const uint64_t too_long = p.bytes.size();
    std::memcpy(past.data() + 4, &too_long, 8);
    std::vector<uint8_t> bad_utf8 = p.bytes;
    bad_utf8[12 + 3] = 0xC0;
    std::vector<uint8_t> trailing = p.bytes;
    trailing.push_back(0);
    std::vector<uint8_t> misaligned = p.bytes;  // one more header byte shifts the body by one
    misaligned.insert(misaligned.begin() + 12, ' ');
    const uint64_t n1 = p.header_len + 1;
    std::memcpy(misaligned.data() + 4, &n1, 8);

    struct Case {
        const char* what;
        std::vector<uint8_t> bytes;
        const char* expected;
    };
    const std::vector<Case> cases = {
        {"checksum", flipped, "checksum mismatch: the body hashes to xxh3_64"},
        {"magic", magic, "not a .bitt file (magic bytes 58495454"},
        {"huge header", huge, "header length 1099511627776 is too large"},
        {"header past end", past, "runs past the end of the file"},
        {"utf8", bad_utf8, "header: not valid UTF-8 (byte 3)"},
        {"json", edit_header(p, "{", "["), "header: not valid JSON"},
        {"version", edit_header(p, "\"format_version\":1", "\"format_version\":7"),
         "unsupported format_version 7 (this build reads 1)"},
        {"config", edit_header(p, "\"hidden_dim\":20", "\"hidden_dim\":-1"),
         "config: 'hidden_dim' = -1 is out of range"},
        {"unknown key", edit_header(p, "\"body_bytes\"", "\"body_bytez\""),
         "header has no 'body_bytes'"},
        {"layout", edit_header(p, "tq2_rg16", "tq2_rg32"), "unsupported ternary layout"},
        {"trailing", trailing, "but the header says"},
        {"misaligned", misaligned, "which is not a multiple of 64"},
        {"tokenizer type", edit_header(p, "\"tokenizer\":{", "\"tokenizer\":["),
         "header: not valid JSON"},
    };
    const std::string path = dir.file("bad.bitt");
    for (const Case& c : cases) {
        write_bytes(path, c.bytes);
        std::string msg = error_of([&] { load_model(path); });
        EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << c.what << ": " << msg;
        EXPECT_NE(msg.find(c.expected), std::string::npos) << c.what << ": " << msg;
    }
    // Checksum text of the wrong form (same length: uppercase digit).
    std::string h = p.header();
    size_t at = h.find("\"xxh3_64\":\"") + 11;
    h[at] = 'G';
    Parts q = p;
    q.set_header(h);
    write_bytes(path, q.bytes);
    EXPECT_NE(error_of([&] { load_model(path); }).find("is not 16 lowercase hex digits"),
              std::string::npos);
    // The checksum flag: the same flipped byte loads when verification is off.
    write_bytes(path, flipped);
    EXPECT_NO_THROW(load_model(path, {.verify = false}));
}

TEST(Bitt, EveryTruncationIsAnError) {
    ScratchDir dir;
    ModelConfig c = ModelConfig::from_json(
        {{"vocab_size", 5}, {"hidden_dim", 4}, {"num_layers", 1}, {"mlp_dim", 4}});
    const std::string good = dir.file("tiny.bitt");
    save_bitt(good, ModelWeights::random(c, 1), std::nullopt);
    const std::vector<uint8_t> full = read_bytes(good);
    const std::string path = dir.file("cut.bitt");
    for (size_t n = 0; n < full.size(); ++n) {
        write_bytes(path, std::vector<uint8_t>(full.begin(), full.begin() + long(n)));
        std::string msg = error_of([&] { load_model(path); });
        ASSERT_EQ(msg.rfind(path + ": ", 0), 0u) << "prefix " << n << ": " << msg;
    }
}

TEST(Bitt, RandomCorruptionGivesErrorsNeverCrashes) {
    ScratchDir dir;
    ModelConfig c = ModelConfig::from_json(
        {{"vocab_size", 5}, {"hidden_dim", 4}, {"num_layers", 1}, {"mlp_dim", 4}});
    const std::string good = dir.file("tiny.bitt");
    save_bitt(good, ModelWeights::random(c, 1), std::nullopt);
    const std::vector<uint8_t> full = read_bytes(good);
    const std::string path = dir.file("x.bitt");
    Rng rng(9);
    int errors = 0;
    for (int iter = 0; iter < 2000; ++iter) {
        std::vector<uint8_t> bytes = full;
        for (int k = 0; k < 1 + int(rng.below(3)); ++k)
            bytes[rng.below(bytes.size())] =
                iter % 2 ? uint8_t(rng.next_u64()) : uint8_t("0123456789[]{},:\" "[rng.below(19)]);
        write_bytes(path, bytes);
        // Without the checksum, corruption of the body reaches the safetensors and tensor checks.
        std::string msg = error_of([&] { load_model(path, {.verify = iter % 4 != 0}); });
        if (!msg.empty()) {
            ++errors;
            ASSERT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
        }
    }
    EXPECT_GT(errors, 1000);
}

// Files that are intact as files (valid checksum) but do not match their config.
TEST(Bitt, InconsistentTensorsAreNamed) {
    ScratchDir dir;
    const ModelWeights w = ModelWeights::random(small_config(), 3);
    const std::string good = dir.file("good.bitt");
    save_bitt(good, w, std::nullopt);
    io::BittFile b = io::read_bitt(good);
    // Rewrites the file with `edit` applied to the list of tensors.
    auto rewrite = [&](const std::function<void(io::BittToWrite&)>& edit) {
        io::BittToWrite c;
        c.config = b.config;
        c.ternary_shapes = b.ternary_shapes;
        for (const auto& t : b.body.tensors())
            c.tensors.push_back({t.name, t.dtype, t.shape, t.data, {}});
        edit(c);
        const std::string path = dir.file("edited.bitt");
        io::write_bitt(path, std::move(c));
        return error_of([&] { load_model(path); });
    };
    auto find = [](io::BittToWrite& c, const std::string& name) -> io::TensorToWrite& {
        for (auto& t : c.tensors)
            if (t.name == name) return t;
        throw std::runtime_error("no " + name);
    };
    auto remove = [](io::BittToWrite& c, const std::string& name) {
        std::erase_if(c.tensors, [&](const io::TensorToWrite& t) { return t.name == name; });
    };
    EXPECT_EQ(rewrite([](io::BittToWrite&) {}), "");  // unchanged: loads
    EXPECT_NE(rewrite([&](io::BittToWrite& c) {
                  remove(c, "layers.1.norm2.weight");
              }).find(": missing tensor 'layers.1.norm2.weight'"),
              std::string::npos);
    EXPECT_NE(rewrite([&](io::BittToWrite& c) {
                  remove(c, "layers.0.ttt.up.weight_scale");
              }).find("missing tensor 'layers.0.ttt.up.weight_scale'"),
              std::string::npos);
    const std::vector<uint8_t> four(4, 0);
    EXPECT_NE(rewrite([&](io::BittToWrite& c) {
                  c.tensors.push_back({"layers.0.extra", DType::kU8, {4}, four, {}});
              }).find("unexpected tensor 'layers.0.extra'"),
              std::string::npos);
    EXPECT_NE(rewrite([&](io::BittToWrite& c) {
                  find(c, "norm_f.weight").shape = {4, 5};
              }).find("tensor 'norm_f.weight' has shape [4, 5], the config needs [20]"),
              std::string::npos);
    EXPECT_NE(rewrite([&](io::BittToWrite& c) {
                  find(c, "norm_f.weight").dtype = DType::kU8;
                  find(c, "norm_f.weight").shape = {80};
              }).find("tensor 'norm_f.weight' has dtype U8, expected F32, BF16 or F16"),
              std::string::npos);
    EXPECT_NE(rewrite([&](io::BittToWrite& c) {
                  auto& t = find(c, "layers.0.ttt.down.weight");
                  t.dtype = DType::kF32;
                  t.shape = {32};
              }).find("tensor 'layers.0.ttt.down.weight' has dtype F32, expected U8"),
              std::string::npos);
    EXPECT_NE(rewrite([&](io::BittToWrite& c) {
                  find(c, "layers.0.ttt.down.weight").shape = {8, 16};
              })
                  .find("tensor 'layers.0.ttt.down.weight' has shape [8, 16], expected [16, 8] "
                        "(packed [6, 20])"),
              std::string::npos);
    EXPECT_NE(
        rewrite([&](io::BittToWrite& c) {
            c.ternary_shapes["layers.0.ttt.up.weight"] = {20, 7};
        }).find("'layers.0.ttt.up.weight' is [20, 7] in ternary.shapes, the config needs [20, 6]"),
        std::string::npos);
    EXPECT_NE(rewrite([&](io::BittToWrite& c) {
                  c.ternary_shapes["embed.weight"] = {37, 20};
              }).find("ternary.shapes names 'embed.weight', which is not a BitLinear tensor"),
              std::string::npos);
    const float nan = std::nanf("");
    EXPECT_NE(rewrite([&](io::BittToWrite& c) {
                  find(c, "layers.1.ttt.up.weight_scale").bytes = {
                      reinterpret_cast<const uint8_t*>(&nan), 4};
              }).find("tensor 'layers.1.ttt.up.weight_scale' = nan is not a finite scale"),
              std::string::npos);
    std::vector<uint8_t> bad_codes(16 * 8, 0x55);
    bad_codes[77] = 0x57;  // one code 3
    EXPECT_NE(
        rewrite([&](io::BittToWrite& c) {
            find(c, "layers.0.ttt.down.weight").bytes = bad_codes;
        }).find("tensor 'layers.0.ttt.down.weight' holds an invalid ternary code (3) in byte 77"),
        std::string::npos);
}

}  // namespace
}  // namespace bitttt
