// The trainer around the model: schedule, AdamW, data and its cache, overfitting a tiny text,
// bit-for-bit resume from a checkpoint, non-finite detection, and parity of the exported model
// with the inference engine.
#include <gtest/gtest.h>

#include <bitttt/model.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "core/threads.hpp"
#include "io/safetensors.hpp"
#include "train/checkpoint.hpp"
#include "train/data.hpp"
#include "train/optimizer.hpp"
#include "train/trainer.hpp"

namespace bitttt::train {
namespace {
namespace fs = std::filesystem;

// These small models run on one thread: on a machine whose cores are shared, waking a thread
// team per op costs more than the op (ThreadCountDoesNotChangeResults covers the threaded path).
struct OneThread {
    OneThread() { set_num_threads(1); }
    ~OneThread() { set_num_threads(0); }
};

fs::path temp_dir(const std::string& name) {
    fs::path p = fs::temp_directory_path() / fmt::format("bitttt_{}_{}", name, ::getpid());
    fs::remove_all(p);
    fs::create_directories(p);
    return p;
}

TEST(TrainLoop, LearningRateSchedule) {
    // Warmup: linear up to the peak at step warmup-1.
    EXPECT_FLOAT_EQ(learning_rate(0, 110, 10, 1e-3f, 1e-5f), 1e-4f);
    EXPECT_FLOAT_EQ(learning_rate(9, 110, 10, 1e-3f, 1e-5f), 1e-3f);
    // Cosine from the peak (step 10) to min_lr (step 109); halfway is the mean.
    EXPECT_FLOAT_EQ(learning_rate(10, 110, 10, 1e-3f, 1e-5f), 1e-3f);
    EXPECT_NEAR(learning_rate(10 + 99 / 2.0, 110, 10, 1e-3f, 1e-5f), 0.5 * (1e-3 + 1e-5), 1e-5);
    EXPECT_FLOAT_EQ(learning_rate(109, 110, 10, 1e-3f, 1e-5f), 1e-5f);
    EXPECT_FLOAT_EQ(learning_rate(500, 110, 10, 1e-3f, 1e-5f), 1e-5f);
    for (int64_t s = 11; s < 110; ++s)
        EXPECT_LT(learning_rate(s, 110, 10, 1e-3f, 1e-5f),
                  learning_rate(s - 1, 110, 10, 1e-3f, 1e-5f));
}

TEST(TrainLoop, AdamWStepAndGlobalNorm) {
    // First step: m̂ = g, v̂ = g², so the update is lr·g/(|g|+ε) + lr·wd·p.
    float p[3] = {1.0f, -2.0f, 0.5f}, g[3] = {0.3f, -4.0f, 0.0f}, m[3] = {}, v[3] = {};
    AdamWConfig c;
    adamw_update(p, g, m, v, 3, 0.01f, 1.0f, 1, true, c);
    EXPECT_NEAR(p[0], 1.0f - 0.01f * (0.3f / (0.3f + 1e-8f)) - 0.01f * 0.1f * 1.0f, 1e-6);
    EXPECT_NEAR(p[1], -2.0f + 0.01f - 0.01f * 0.1f * -2.0f, 1e-6);
    EXPECT_NEAR(p[2], 0.5f - 0.01f * 0.1f * 0.5f, 1e-7);
    float q[2] = {1.0f, 1.0f}, gq[2] = {1.0f, 1.0f}, mq[2] = {}, vq[2] = {};
    adamw_update(q, gq, mq, vq, 2, 0.01f, 0.5f, 1, false, c);  // no decay, scaled gradient
    EXPECT_NEAR(q[0], 1.0f - 0.01f, 1e-6);
    std::vector<float> big(200000, 0.5f);
    EXPECT_NEAR(global_norm(big.data(), 200000), 0.5 * std::sqrt(200000.0), 1e-6);
}

TEST(TrainLoop, DocumentsAndCache) {
    auto docs = split_documents("one\ntwo\n<|endoftext|>\n\n<|endoftext|>\nthree<|endoftext|>x\n");
    ASSERT_EQ(docs.size(), 2u);
    EXPECT_EQ(docs[0], "one\ntwo");
    EXPECT_EQ(docs[1], "three<|endoftext|>x");  // not a line of its own: plain text
    Tokenizer tok = byte_level_tokenizer();
    EXPECT_EQ(tok.vocab_size(), 257u);
    auto ids = tokenize_documents("ab\n<|endoftext|>\nc\n", tok);
    ASSERT_EQ(ids.size(), 5u);  // a b <eot> c <eot>
    EXPECT_EQ(ids[2], 0);
    EXPECT_EQ(ids[4], 0);
    EXPECT_EQ(tok.decode({{static_cast<uint32_t>(ids[0]), static_cast<uint32_t>(ids[1])}}), "ab");

    fs::path dir = temp_dir("cache");
    fs::path text = dir / "t.txt";
    std::ofstream(text) << "hello world\n<|endoftext|>\nsecond story\n<|endoftext|>\n";
    TokenCorpus a = load_corpus(text.string(), tok, (dir / "cache").string());
    EXPECT_FALSE(a.from_cache);
    TokenCorpus b = load_corpus(text.string(), tok, (dir / "cache").string());
    EXPECT_TRUE(b.from_cache);
    EXPECT_EQ(a.tokens, b.tokens);
    std::ofstream(text) << "changed text\n<|endoftext|>\n";  // a new source is re-tokenized
    TokenCorpus c = load_corpus(text.string(), tok, (dir / "cache").string());
    EXPECT_FALSE(c.from_cache);
    EXPECT_EQ(c.tokens.size(), 13u);
    fs::remove_all(dir);
}

TrainOptions tiny_options(const fs::path& dir, const std::string& text) {
    fs::path data = dir / "data.txt";
    if (!fs::exists(data)) std::ofstream(data) << text;
    TrainOptions o;
    o.model.vocab_size = 257;
    o.model.hidden_dim = 32;
    o.model.num_layers = 2;
    o.model.resolve_and_validate();
    o.batch_size = 4;
    o.context_len = 16;
    o.steps = 20;
    o.warmup_steps = 2;
    o.lr = 3e-3f;
    o.min_lr = 1e-4f;
    o.eval_interval = 0;
    o.eval_batches = 1;
    o.save_interval = 0;
    o.data = data.string();
    o.out_dir = (dir / "out").string();
    o.progress = false;
    o.export_model = false;
    return o;
}

const char* kStory =
    "Once upon a time there was a little cat. The cat liked to play in the sun. One day the cat "
    "saw a bird and ran after it.\n<|endoftext|>\n";

TEST(TrainLoop, TinyModelOverfitsTinyText) {
    OneThread one_thread;
    fs::path dir = temp_dir("overfit");
    std::string text;
    for (int i = 0; i < 8; ++i) text += kStory;
    TrainOptions o = tiny_options(dir, text);
    o.steps = 250;
    o.lr = 1e-2f;
    o.model.hidden_dim = 48;
    o.model.ttt_dim = 0, o.model.mlp_dim = 0;
    o.model.resolve_and_validate();
    o.min_lr = 1e-3f;
    o.batch_size = 4;
    o.context_len = 64;
    Trainer trainer(o);
    EXPECT_EQ(trainer.run(), TrainOutcome::kFinished);
    const auto& l = trainer.losses();
    EXPECT_GT(l.front(), 5.0);  // ln(257) = 5.55 at the start
    double tail = 0;
    for (size_t i = l.size() - 10; i < l.size(); ++i) tail += l[i] / 10;
    std::printf("overfit: first loss %.3f, mean of the last 10 steps %.3f\n", l.front(), tail);
    EXPECT_LT(tail, 0.5) << "mean loss of the last 10 steps";
    fs::remove_all(dir);
}

TEST(TrainLoop, ResumeIsBitIdentical) {
    OneThread one_thread;
    for (const char* rule : {"reconstruct", "delta"}) {
        fs::path dir = temp_dir(std::string("resume_") + rule);
        TrainOptions o = tiny_options(dir, std::string(kStory) + kStory + kStory);
        o.model.ttt_rule = parse_ttt_rule(rule);
        o.model.ttt_heads = o.model.ttt_rule == TttRule::kDelta ? 2 : 1;
        Trainer straight(o);
        straight.run();
        // 10 steps, checkpoint, a fresh trainer from the checkpoint, 10 more.
        TrainOptions first = o;
        first.out_dir = (dir / "out2").string();
        first.stop_at_step = 10;
        std::vector<double> resumed;
        {
            Trainer t(first);
            EXPECT_EQ(t.run(), TrainOutcome::kStopped);
            resumed = t.losses();
        }
        TrainOptions second = first;
        second.stop_at_step = 0;
        second.resume = (dir / "out2" / "checkpoint.safetensors").string();
        second.model = ModelConfig{};  // everything comes from the checkpoint
        second.batch_size = 99;
        Trainer t2(second);
        EXPECT_EQ(t2.steps_done(), 10);
        EXPECT_EQ(t2.run(), TrainOutcome::kFinished);
        resumed.insert(resumed.end(), t2.losses().begin(), t2.losses().end());
        ASSERT_EQ(resumed.size(), 20u);
        for (size_t i = 0; i < 20; ++i)
            EXPECT_EQ(resumed[i], straight.losses()[i]) << rule << " step " << i + 1;
        for (int64_t j = 0; j < straight.model().layout().total; ++j)
            ASSERT_EQ(straight.model().params[j], t2.model().params[j]) << j;
        fs::remove_all(dir);
    }
}

TEST(TrainLoop, NonFiniteGradientNamesStepAndTensor) {
    OneThread one_thread;
    fs::path dir = temp_dir("nan");
    Trainer t(tiny_options(dir, std::string(kStory) + kStory + kStory));
    t.step();
    t.save_checkpoint();
    // A NaN in a norm weight poisons the loss: the error names the step and the parameter.
    const int64_t i = t.model().layout().index_of("layers.1.norm2.weight");
    t.model().param(static_cast<size_t>(i))[3] = NAN;
    try {
        t.step();
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("step 2"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("layers.1.norm2.weight"), std::string::npos)
            << e.what();
    }
    EXPECT_EQ(t.steps_done(), 1);
    // The last good checkpoint is still there and intact.
    Checkpoint ck = read_checkpoint((dir / "out" / "checkpoint.safetensors").string());
    EXPECT_EQ(ck.state.at("step").get<int64_t>(), 1);
    fs::remove_all(dir);
}

// A damaged or foreign checkpoint is a clear error naming the file, never a crash.
TEST(TrainLoop, BadCheckpointsAreErrors) {
    OneThread one_thread;
    fs::path dir = temp_dir("badck");
    TrainOptions o = tiny_options(dir, std::string(kStory) + kStory + kStory);
    {
        Trainer t(o);
        t.step();
        t.save_checkpoint();
    }
    const fs::path good = dir / "out" / "checkpoint.safetensors";
    auto expect_error = [&](const fs::path& path, const std::string& needle) {
        TrainOptions r = o;
        r.resume = path.string();
        try {
            Trainer t(r);
            ADD_FAILURE() << "no error for " << needle;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    std::ofstream(dir / "garbage.safetensors") << "not a checkpoint at all";
    expect_error(dir / "garbage.safetensors", "garbage.safetensors");
    expect_error(dir / "missing.safetensors", "missing.safetensors");
    // A valid safetensors file that is not a checkpoint.
    std::vector<float> one = {1.0f};
    io::TensorToWrite t{"x", io::DType::kF32, {1}, {reinterpret_cast<uint8_t*>(one.data()), 4}, {}};
    io::write_safetensors((dir / "other.safetensors").string(), {t});
    expect_error(dir / "other.safetensors", "not a bitttt checkpoint");
    // Truncated: the header promises more data than the file holds.
    const auto size = fs::file_size(good);
    fs::copy_file(good, dir / "short.safetensors");
    fs::resize_file(dir / "short.safetensors", size / 2);
    expect_error(dir / "short.safetensors", "short.safetensors");
    // A state whose fields have the wrong types.
    Checkpoint ck = read_checkpoint(good.string());
    TrainModel<float> m(ck.config);
    AlignedBuffer<float> mv(m.params.size());
    ck.copy_tensors(m.layout(), "param", m.params.data());
    CheckpointToWrite w{&m.layout(), &m.config(), m.params.data(),  mv.data(),
                        mv.data(),   ck.state,    ck.tokenizer_json};
    w.state["rng"] = {"zz", "1", "2", "3"};
    save_checkpoint((dir / "badrng.safetensors").string(), w);
    expect_error(dir / "badrng.safetensors", "bad training state");
    w.state = ck.state;
    w.state["options"]["batch_size"] = "sixteen";
    save_checkpoint((dir / "badopt.safetensors").string(), w);
    expect_error(dir / "badopt.safetensors", "bad training state");
    fs::remove_all(dir);
}

// Every sum has one order whatever the thread count (gemm tiles, per-column reductions, fixed
// blocks in the global norm), so training gives the same bits on 1 and 2 threads.
TEST(TrainLoop, ThreadCountDoesNotChangeResults) {
    fs::path dir = temp_dir("threads");
    TrainOptions o = tiny_options(dir, std::string(kStory) + kStory + kStory);
    o.model.hidden_dim = 64, o.model.ttt_dim = 0, o.model.mlp_dim = 0;
    o.model.resolve_and_validate();
    o.context_len = 64;
    std::vector<double> losses[2];
    for (int threads : {1, 2}) {
        set_num_threads(threads);
        Trainer t(o);
        for (int i = 0; i < 3; ++i) t.step();
        losses[threads - 1] = t.losses();
    }
    set_num_threads(0);
    EXPECT_EQ(losses[0], losses[1]);
    fs::remove_all(dir);
}

// A trained model, exported, gives in inference (packed ternary, integer kernels) the logits the
// training forward (fake quantization) gives, to float tolerance.
TEST(TrainLoop, ExportedModelMatchesTrainingForward) {
    OneThread one_thread;
    for (const char* rule : {"reconstruct", "delta"}) {
        fs::path dir = temp_dir(std::string("parity_") + rule);
        TrainOptions o = tiny_options(dir, std::string(kStory) + kStory + kStory);
        o.model.ttt_rule = parse_ttt_rule(rule);
        o.model.ttt_heads = o.model.ttt_rule == TttRule::kDelta ? 2 : 1;
        o.export_model = true;
        Trainer t(o);
        t.run();
        std::vector<int32_t> ids = {5, 80, 100, 33, 0, 7, 200, 256, 1, 99, 42, 42, 17};
        const int64_t n = static_cast<int64_t>(ids.size()), V = 257;
        // Inference reads lm_head rounded to bf16 (model/weights.hpp); so does this reference
        // (the model is already exported, the rounding only affects the forward below).
        float* head =
            t.model().param(static_cast<size_t>(t.model().layout().index_of("lm_head.weight")));
        for (int64_t i = 0; i < V * t.model().config().hidden_dim; ++i)
            head[i] = io::bf16_to_f32(io::f32_to_bf16(head[i]));
        t.model().forward(ids.data(), nullptr, 1, n);
        std::vector<float> expect(t.model().logits(), t.model().logits() + n * V);
        for (const char* path : {"model.bitt", "model"}) {
            auto model = Model::load((dir / "out" / path).string());
            Session session(model);
            std::vector<float> got(static_cast<size_t>(n * V));
            session.forward(ids, got);
            double max_diff = 0, max_abs = 0;
            for (size_t j = 0; j < got.size(); ++j) {
                max_diff = std::max<double>(max_diff, std::fabs(got[j] - expect[j]));
                max_abs = std::max<double>(max_abs, std::fabs(expect[j]));
            }
            EXPECT_LT(max_diff, 1e-3 * std::max(1.0, max_abs)) << rule << " " << path;
        }
        fs::remove_all(dir);
    }
}

}  // namespace
}  // namespace bitttt::train
