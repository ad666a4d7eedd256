// Model directories (config.json + model.safetensors [+ tokenizer.json]) and the export path
// .bitt -> directory -> .bitt, which must reproduce the packed weights exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/rng.hpp"
#include "io/atomic_file.hpp"
#include "io/mapped_file.hpp"
#include "io/safetensors.hpp"
#include "io_test_util.hpp"
#include "kernels/cpu/ternary.hpp"
#include "model/loader.hpp"

namespace bitttt {
namespace {

using io::DType;
using testing::error_of;
using testing::read_bytes;
using testing::ScratchDir;

ModelConfig config_of(const char* rule) {
    return ModelConfig::from_json({{"vocab_size", 29},
                                   {"hidden_dim", 18},
                                   {"num_layers", 2},
                                   {"ttt_dim", 6},
                                   {"mlp_dim", 34},
                                   {"ttt_rule", rule},
                                   {"ttt_heads", std::string(rule) == "delta" ? 3 : 1}});
}

// Random fp32 master weights, one vector per ParamSpec.
std::vector<std::vector<float>> random_master(const ModelConfig& c, uint64_t seed) {
    Rng rng(seed);
    std::vector<std::vector<float>> m;
    for (const ParamSpec& spec : parameter_table(c)) {
        std::vector<float> t(static_cast<size_t>(spec.numel()));
        for (auto& v : t) v = rng.normal() * 0.1f;
        m.push_back(std::move(t));
    }
    return m;
}

std::function<const float*(const ParamSpec&)> lookup_in(const ModelConfig& c,
                                                        const std::vector<std::vector<float>>& m) {
    auto table = std::make_shared<std::vector<ParamSpec>>(parameter_table(c));
    return [table, &m](const ParamSpec& spec) -> const float* {
        for (size_t i = 0; i < table->size(); ++i)
            if ((*table)[i].name == spec.name) return m[i].data();
        return nullptr;
    };
}

void expect_same_weights(const ModelWeights& a, const ModelWeights& b) {
    ASSERT_EQ(a.config, b.config);
    for (size_t i = 0; i < a.table.size(); ++i) {
        const ParamSpec& spec = a.table[i];
        if (spec.kind == ParamKind::kBitLinear) {
            const auto &x = a.tensors[i].ternary, &y = b.tensors[i].ternary;
            ASSERT_EQ(x.scale, y.scale) << spec.name;
            const auto n = static_cast<size_t>(kernels::packed_bytes(x.rows, x.cols));
            ASSERT_EQ(std::memcmp(x.codes, y.codes, n), 0) << spec.name;
        } else {
            for (int64_t j = 0; j < spec.numel(); ++j)
                ASSERT_EQ(a.tensors[i].f32[j], b.tensors[i].f32[j]) << spec.name;
        }
    }
}

void write_dir(const ScratchDir& dir, const ModelConfig& c,
               const std::vector<std::vector<float>>& master, DType dtype) {
    io::write_file_atomic(dir.file("config.json"), c.to_json().dump());
    save_safetensors_master(dir.file("model.safetensors"), c, lookup_in(c, master), dtype);
}

TEST(Loader, DirectoryWithMasterWeightsInEveryDtype) {
    for (const char* rule : {"reconstruct", "delta"}) {
        for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
            ScratchDir dir;
            const ModelConfig c = config_of(rule);
            auto master = random_master(c, 17);
            write_dir(dir, c, master, dtype);
            io::write_file_atomic(dir.file("tokenizer.json"), std::string_view(R"({"model":{}})"));
            LoadedModel m = load_model(dir.path().string());
            // Reference: the same master weights rounded to the file's dtype, quantized in memory.
            for (auto& t : master)
                for (auto& v : t)
                    v = dtype == DType::kBF16  ? io::bf16_to_f32(io::f32_to_bf16(v))
                        : dtype == DType::kF16 ? io::f16_to_f32(io::f32_to_f16(v))
                                               : v;
            expect_same_weights(ModelWeights::from_master(c, lookup_in(c, master)), m.weights);
            EXPECT_EQ(m.tokenizer_json, std::optional<std::string>(R"({"model":{}})"));
        }
    }
}

TEST(Loader, DirectoryProblemsNameTheFileAndTensor) {
    ScratchDir dir;
    const ModelConfig c = config_of("reconstruct");
    const auto master = random_master(c, 1);
    const std::string st = dir.file("model.safetensors");
    const std::string root = dir.path().string();

    EXPECT_NE(error_of([&] { load_model(root); }).find(root + ": no config.json"),
              std::string::npos);
    io::write_file_atomic(dir.file("config.json"), c.to_json().dump());
    EXPECT_NE(error_of([&] { load_model(root); }).find(st + ": no such file"), std::string::npos);

    // Tensor lists with one thing wrong, written with our safetensors writer.
    auto write_with = [&](const std::function<void(std::vector<io::TensorToWrite>&)>& edit) {
        std::vector<io::TensorToWrite> ts;
        const auto table = parameter_table(c);
        for (size_t i = 0; i < table.size(); ++i)
            ts.push_back(
                {table[i].name,
                 DType::kF32,
                 table[i].shape,
                 {reinterpret_cast<const uint8_t*>(master[i].data()), master[i].size() * 4},
                 {}});
        edit(ts);
        io::write_safetensors(st, std::move(ts));
        return error_of([&] { load_model(root); });
    };
    EXPECT_EQ(write_with([](auto&) {}), "");
    EXPECT_NE(write_with([](auto& ts) {
                  ts.erase(ts.begin() + 3);
              }).find(st + ": missing tensor 'layers.0.ttt.up.weight'"),
              std::string::npos);
    const std::vector<uint8_t> bytes(8);
    EXPECT_NE(write_with([&](auto& ts) {
                  ts.push_back({"lm_head.bias", DType::kU8, {8}, bytes, {}});
              }).find(st + ": unexpected tensor 'lm_head.bias'"),
              std::string::npos);
    EXPECT_NE(
        write_with([](auto& ts) {
            ts[1].shape = {9, 2};
        }).find(st + ": tensor 'layers.0.norm1.weight' has shape [9, 2], the config needs [18]"),
        std::string::npos);
    EXPECT_NE(write_with([](auto& ts) {
                  ts[1].dtype = DType::kU8;
                  ts[1].shape = {72};
              }).find(st + ": tensor 'layers.0.norm1.weight' has dtype U8"),
              std::string::npos);

    write_with([](auto&) {});
    io::write_file_atomic(dir.file("tokenizer.json"), std::string_view("{\"a\": [1,"));
    EXPECT_NE(error_of([&] { load_model(root); }).find("tokenizer.json: not valid JSON"),
              std::string::npos);
    EXPECT_NE(error_of([&] { load_model(st); }).find("a .safetensors file alone has no config"),
              std::string::npos);
    EXPECT_NE(error_of([&] { load_model(dir.file("none.bitt")); }).find("no such file"),
              std::string::npos);
}

TEST(Loader, DequantizationScaleRequantizesExactly) {
    // Materializes the dequantized magnitudes and runs the quantizer's own absmean over them.
    Rng rng(5);
    std::vector<float> w;
    for (int i = 0; i < 400; ++i) {
        // Scales from 2^-20 up: far below that the quantizer's + 1e-8 in w / (beta + 1e-8)
        // changes the codes themselves.
        const float beta = std::ldexp(rng.uniform() + 0.5f, int(rng.below(30)) - 20);
        const int64_t n = 2 + int64_t(rng.below(i % 10 == 0 ? 200'000 : 3'000));
        const int64_t nnz = 2 + int64_t(rng.below(uint64_t(n - 1)));
        const DequantScale s = dequantization_scale(beta, n, nnz);
        ASSERT_GE(s.high_count, 0);
        ASSERT_LE(s.high_count, nnz);
        w.assign(size_t(n), 0.0f);
        for (int64_t j = 0; j < nnz; ++j)
            w[size_t(j)] = (j % 2 ? -1 : 1) * (j < s.high_count ? s.high : s.low);
        ASSERT_EQ(kernels::ternary_scale(w.data(), n), beta) << beta << " " << n << " " << nnz;
        std::vector<int8_t> q(static_cast<size_t>(n));
        kernels::quantize_ternary(w.data(), n, beta, q.data());
        for (int64_t j = 0; j < n; ++j) ASSERT_EQ(q[size_t(j)], j < nnz ? (j % 2 ? -1 : 1) : 0);
    }
}

TEST(Loader, ExportToDirectoryReloadsToTheSamePackedWeights) {
    ScratchDir dir;
    for (const char* rule : {"reconstruct", "delta"}) {
        const ModelWeights w = ModelWeights::random(config_of(rule), 23);
        const std::string tokenizer = R"({"version": "1.0", "model": {"type": "BPE"}})";
        const std::string bitt = dir.file("a.bitt");
        save_bitt(bitt, w, tokenizer);
        LoadedModel m = load_model(bitt);
        const std::string out = dir.file(std::string("exported_") + rule);
        save_model_dir(out, m.weights, m.tokenizer_json);

        // The exported BitLinear weights are s * q: three values per tensor, and ternary_scale
        // (the quantizer's own absmean) of them is beta to the last bit.
        io::SafetensorsFile st = io::SafetensorsFile::open(out + "/model.safetensors");
        for (size_t i = 0; i < w.table.size(); ++i) {
            if (w.table[i].kind != ParamKind::kBitLinear) continue;
            const auto& t = st.view.at(w.table[i].name);
            std::vector<float> values(size_t(t.numel));
            io::tensor_to_f32(t, values.data(), "x");
            EXPECT_EQ(kernels::ternary_scale(values.data(), t.numel), w.tensors[i].ternary.scale);
        }

        // config.json is readable: floats as their shortest decimal, and they read back exactly.
        const std::string config_text = io::read_text_file(out + "/config.json");
        EXPECT_NE(config_text.find("\"inner_lr\": 0.1,"), std::string::npos) << config_text;
        EXPECT_NE(config_text.find("\"norm_eps\": 1e-05"), std::string::npos) << config_text;

        LoadedModel back = load_model(out);
        expect_same_weights(w, back.weights);
        EXPECT_EQ(back.tokenizer_json, std::optional<std::string>(*m.tokenizer_json));
        // And the whole way round gives the same file, byte for byte.
        const std::string again = dir.file("b.bitt");
        save_bitt(again, back.weights, back.tokenizer_json);
        EXPECT_EQ(read_bytes(bitt), read_bytes(again));
    }
}

}  // namespace
}  // namespace bitttt
