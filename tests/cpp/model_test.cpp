// The inference model: the delta-rule scan (both TTT rules) against independent references, and
// Session's forward (prompt vs token by token, chunking, reset, state) on random models.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "bitttt/model.hpp"
#include "bitttt/tokenizer.hpp"
#include "core/cpu_features.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "core/threads.hpp"
#include "kernels/cpu/ttt_scan.hpp"
#include "model/config.hpp"
#include "model/delta_rule.hpp"
#include "model/weights.hpp"

namespace bitttt {
namespace {

using ScanFn = void (*)(const DeltaRuleScan&);

std::vector<std::pair<const char*, ScanFn>> scan_versions() {
    std::vector<std::pair<const char*, ScanFn>> v = {{"scalar", delta_rule_scan_scalar},
                                                     {"dispatch", delta_rule_scan}};
    if (detected_isa() >= Isa::kAvx2) v.emplace_back("avx2", delta_rule_scan_avx2);
    if (detected_isa() >= Isa::kAvx512) v.emplace_back("avx512", delta_rule_scan_avx512);
    return v;
}

// Random vectors, normalized per head when `unit`.
std::vector<float> random_rows(Rng& rng, int64_t tokens, int64_t heads, int64_t dh, bool unit) {
    std::vector<float> x(static_cast<size_t>(tokens * heads * dh));
    for (auto& v : x) v = rng.normal();
    if (unit) {
        for (int64_t r = 0; r < tokens * heads; ++r) {
            double ss = 0;
            for (int64_t j = 0; j < dh; ++j) ss += x[r * dh + j] * x[r * dh + j];
            for (int64_t j = 0; j < dh; ++j) x[r * dh + j] /= static_cast<float>(std::sqrt(ss));
        }
    }
    return x;
}

// §2.3 in double precision with whole matrices, written from the formula:
// W ← W − η (W k − v) kᵀ, o = W q (after) or the W before the update (before).
std::vector<double> naive_delta(std::vector<double>& w, int64_t heads, int64_t dh, int64_t tokens,
                                const std::vector<float>& q, const std::vector<float>& k,
                                const std::vector<float>& v, const std::vector<float>& eta,
                                bool after) {
    const int64_t dt = heads * dh;
    std::vector<double> out(static_cast<size_t>(tokens * dt));
    for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t h = 0; h < heads; ++h) {
            double* W = w.data() + h * dh * dh;
            const float* kt = k.data() + t * dt + h * dh;
            const float* vt = v.data() + t * dt + h * dh;
            const float* qt = q.data() + t * dt + h * dh;
            auto read = [&] {
                for (int64_t i = 0; i < dh; ++i) {
                    double s = 0;
                    for (int64_t j = 0; j < dh; ++j) s += W[i * dh + j] * qt[j];
                    out[t * dt + h * dh + i] = s;
                }
            };
            if (!after) read();
            std::vector<double> err(static_cast<size_t>(dh));
            for (int64_t i = 0; i < dh; ++i) {
                double s = 0;
                for (int64_t j = 0; j < dh; ++j) s += W[i * dh + j] * kt[j];
                err[i] = s - vt[i];
            }
            const double e = eta[t * heads + h];
            for (int64_t i = 0; i < dh; ++i)
                for (int64_t j = 0; j < dh; ++j) W[i * dh + j] -= e * err[i] * kt[j];
            if (after) read();
        }
    }
    return out;
}

TEST(DeltaRuleScan, EveryVersionMatchesNaiveDouble) {
    Rng rng(21);
    const int64_t shapes[][3] = {{1, 1, 1},  {1, 7, 3},  {2, 5, 4},  {3, 17, 5},
                                 {1, 33, 6}, {4, 16, 2}, {1, 64, 9}, {2, 40, 3}};
    for (const auto& [heads, dh, tokens] : shapes) {
        const int64_t dt = heads * dh;
        auto q = random_rows(rng, tokens, heads, dh, true);
        auto k = random_rows(rng, tokens, heads, dh, true);
        auto v = random_rows(rng, tokens, heads, dh, false);
        std::vector<float> eta(static_cast<size_t>(tokens * heads));
        for (auto& e : eta) e = 0.05f + 0.9f * rng.uniform();
        std::vector<float> w0(static_cast<size_t>(dt * dh));
        for (auto& x : w0) x = 0.3f * rng.normal();  // a non-zero start state
        for (bool after : {true, false}) {
            std::vector<double> wd(w0.begin(), w0.end());
            auto ref = naive_delta(wd, heads, dh, tokens, q, k, v, eta, after);
            for (const auto& [name, fn] : scan_versions()) {
                std::vector<float> w = w0, out(static_cast<size_t>(tokens * dt), -9.0f);
                DeltaRuleScan s;
                s.w = w.data();
                s.heads = heads;
                s.head_dim = dh;
                s.tokens = tokens;
                s.q = q.data(), s.q_stride = dt;
                s.k = k.data(), s.k_stride = dt;
                s.v = v.data(), s.v_stride = dt;
                s.eta = eta.data(), s.eta_stride = heads;
                s.read_after_update = after;
                s.out = out.data(), s.out_stride = dt;
                fn(s);
                for (size_t i = 0; i < out.size(); ++i)
                    ASSERT_NEAR(out[i], ref[i], 2e-5 * (1 + std::fabs(ref[i])))
                        << name << " heads " << heads << " dh " << dh << " after " << after;
                for (size_t i = 0; i < w.size(); ++i)
                    ASSERT_NEAR(w[i], wd[i], 2e-5 * (1 + std::fabs(wd[i]))) << name;
            }
        }
    }
}

TEST(DeltaRuleScan, ReconstructModeAgreesWithTttScanKernel) {
    // The model's reconstruct path (q = k = v = f̂, fixed η, read before the update, W row-major)
    // against the kernels' independent implementation on S = Wᵀ (ttt_scan.hpp).
    Rng rng(8);
    for (int64_t dt : {1, 5, 16, 37, 64}) {
        const int64_t tokens = 11;
        auto f = random_rows(rng, tokens, 1, dt, false);
        auto fh = f;
        for (int64_t t = 0; t < tokens; ++t) {
            float ss = 0;
            for (int64_t j = 0; j < dt; ++j) ss += f[t * dt + j] * f[t * dt + j];
            for (int64_t j = 0; j < dt; ++j)
                fh[t * dt + j] = f[t * dt + j] / (std::sqrt(ss) + 1e-6f);
        }
        const float eta = 0.7f;
        std::vector<float> s(static_cast<size_t>(dt * dt), 0.0f), z_ref(f.size());
        kernels::ttt_scan_reconstruct_scalar(s.data(), dt, eta, f.data(), dt, tokens, z_ref.data(),
                                             dt);
        std::vector<float> w(static_cast<size_t>(dt * dt), 0.0f), z(f.size());
        DeltaRuleScan scan;
        scan.w = w.data(), scan.head_dim = dt, scan.tokens = tokens;
        scan.k = fh.data(), scan.k_stride = dt, scan.v = fh.data(), scan.v_stride = dt;
        scan.eta = &eta, scan.eta_stride = 0, scan.read_after_update = false;
        scan.out = z.data(), scan.out_stride = dt;
        delta_rule_scan(scan);
        for (size_t i = 0; i < z.size(); ++i) ASSERT_NEAR(z[i], z_ref[i], 1e-5) << "dt " << dt;
        for (int64_t i = 0; i < dt; ++i)
            for (int64_t j = 0; j < dt; ++j)
                ASSERT_NEAR(w[i * dt + j], s[j * dt + i], 1e-5) << "W is S transposed";
    }
}

TEST(DeltaRuleScan, BadArgumentsAreErrors) {
    DeltaRuleScan s;
    s.head_dim = 0;
    EXPECT_THROW(delta_rule_scan(s), Error);
    s.head_dim = 4, s.tokens = 2;  // null buffers
    EXPECT_THROW(delta_rule_scan(s), Error);
}

// ---- Session ----

ModelConfig small_config(const std::string& rule, int act_bits, int heads = 1) {
    ModelConfig c;
    c.vocab_size = 97;
    c.hidden_dim = 48;
    c.num_layers = 3;
    c.ttt_dim = 24;
    c.mlp_dim = 72;
    c.ttt_rule = parse_ttt_rule(rule);
    c.ttt_heads = heads;
    c.inner_lr = 0.5f;  // large enough that the TTT state matters in a few tokens
    c.act_bits = act_bits;
    c.resolve_and_validate();
    return c;
}

std::shared_ptr<const Model> random_model(const ModelConfig& c, uint64_t seed = 1) {
    return Model::from_weights(ModelWeights::random(c, seed));
}

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
    Rng rng(seed);
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (auto& id : ids) id = static_cast<int32_t>(rng.below(static_cast<uint64_t>(vocab)));
    return ids;
}

struct Variant {
    const char* rule;
    int act_bits;
    int heads;
};
const Variant kVariants[] = {{"reconstruct", 8, 1},
                             {"reconstruct", 0, 1},
                             {"delta", 8, 1},
                             {"delta", 8, 3},
                             {"delta", 0, 2}};

TEST(Session, PromptForwardEqualsTokenByToken) {
    for (const auto& var : kVariants) {
        ModelConfig c = small_config(var.rule, var.act_bits, var.heads);
        auto model = random_model(c);
        const auto ids = random_ids(13, c.vocab_size, 4);
        const int64_t V = c.vocab_size;
        // Whole prompt in chunks of 5 (three chunks, the last partial), all logits kept.
        Session batched(model, 5);
        std::vector<float> all(ids.size() * V);
        auto last = batched.forward(ids, all);
        // One token at a time.
        Session single(model, 5);
        for (size_t t = 0; t < ids.size(); ++t) {
            auto logits = single.forward_token(ids[t]);
            for (int64_t n = 0; n < V; ++n)
                ASSERT_EQ(logits[n], all[t * V + n]) << var.rule << " token " << t << " id " << n;
        }
        for (int64_t n = 0; n < V; ++n) ASSERT_EQ(last[n], all[(ids.size() - 1) * V + n]);
        EXPECT_EQ(batched.position(), 13);
        for (int64_t l = 0; l < c.num_layers; ++l) {
            auto a = batched.state(l), b = single.state(l);
            for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]);
        }
    }
}

TEST(Session, ChunkSizeDoesNotChangeLogits) {
    ModelConfig c = small_config("delta", 8, 2);
    auto model = random_model(c);
    const auto ids = random_ids(20, c.vocab_size, 7);
    Session a(model, 64), b(model, 3);
    auto la = a.forward(ids);
    auto lb = b.forward(ids);
    for (int64_t n = 0; n < c.vocab_size; ++n) ASSERT_EQ(la[n], lb[n]);
}

TEST(Session, StateCarriesMemoryAndResetForgetsIt) {
    for (const char* rule : {"reconstruct", "delta"}) {
        ModelConfig c = small_config(rule, 8);
        auto model = random_model(c);
        const auto prefix = random_ids(12, c.vocab_size, 9);
        Session fresh(model), primed(model);
        auto cold_logits = fresh.forward_token(5);
        std::vector<float> cold_copy(cold_logits.begin(), cold_logits.end());
        primed.forward(prefix);
        double norm = 0;
        for (float w : primed.state(0)) norm += std::fabs(w);
        EXPECT_GT(norm, 0.0) << rule << ": the TTT state learned nothing";
        auto warm = primed.forward_token(5);
        double diff = 0;
        for (int64_t n = 0; n < c.vocab_size; ++n) diff += std::fabs(warm[n] - cold_copy[n]);
        EXPECT_GT(diff, 1e-3) << rule << ": the prefix did not change the next logits";
        // After reset a session is indistinguishable from a new one.
        primed.reset();
        EXPECT_EQ(primed.position(), 0);
        auto again = primed.forward_token(5);
        for (int64_t n = 0; n < c.vocab_size; ++n) ASSERT_EQ(again[n], cold_copy[n]) << rule;
        // forward(a) then forward(b) continues: equals forward(a + b).
        Session split(model), whole(model);
        split.forward(std::span(prefix).first(7));
        auto ls = split.forward(std::span(prefix).subspan(7));
        auto lw = whole.forward(prefix);
        for (int64_t n = 0; n < c.vocab_size; ++n) ASSERT_EQ(ls[n], lw[n]) << rule;
    }
}

TEST(Session, BadIdsAreErrorsAndLeaveStateAlone) {
    ModelConfig c = small_config("reconstruct", 8);
    Session s(random_model(c));
    s.forward_token(3);
    std::vector<float> before(s.state(0).begin(), s.state(0).end());
    const std::vector<int32_t> bad = {1, 2, static_cast<int32_t>(c.vocab_size)};
    EXPECT_THROW(s.forward(bad), Error);
    EXPECT_THROW(s.forward_token(-1), Error);
    EXPECT_THROW(s.forward({}), Error);
    std::vector<float> small(3);
    const std::vector<int32_t> ok = {1, 2};
    EXPECT_THROW(s.forward(ok, small), Error);
    EXPECT_EQ(s.position(), 1);
    auto after = s.state(0);
    for (size_t i = 0; i < before.size(); ++i) ASSERT_EQ(after[i], before[i]);
    EXPECT_THROW(s.state(c.num_layers), Error);
    EXPECT_THROW(Session(nullptr), Error);
    EXPECT_THROW(Session(random_model(c), 0), Error);
}

TEST(Session, SessionsOfOneModelAreIndependent) {
    ModelConfig c = small_config("delta", 8, 2);
    auto model = random_model(c);
    const auto ids = random_ids(9, c.vocab_size, 3);
    Session ref(model);
    auto expected = ref.forward(ids);
    std::vector<float> exp(expected.begin(), expected.end());
    // Two threads, each with its own session over the same model.
    std::vector<float> got[2];
    std::thread threads[2];
    for (int i = 0; i < 2; ++i) {
        threads[i] = std::thread([&, i] {
            Session s(model);
            auto l = s.forward(ids);
            got[i].assign(l.begin(), l.end());
        });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < 2; ++i) EXPECT_EQ(got[i], exp);
}

// Valid UTF-8 (no stray continuation bytes, no truncated sequence); U+FFFD counts as valid.
bool valid_utf8(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        const size_t n = c < 0x80         ? 1
                         : (c >> 5) == 6  ? 2
                         : (c >> 4) == 14 ? 3
                         : (c >> 3) == 30 ? 4
                                          : 0;
        if (n == 0 || i + n > s.size()) return false;
        for (size_t k = 1; k < n; ++k)
            if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
        i += n;
    }
    return true;
}

TEST(Generate, TextStreamsWholeCharactersAndMatchesDecode) {
    const std::string text = "héllo wörld 日本語 🙂 the fox runs. " + std::string(40, 'a');
    TokenizerTrainOptions topt;
    topt.vocab_size = 280;
    topt.min_frequency = 1;
    topt.threads = 1;
    auto tok = std::make_shared<const Tokenizer>(Tokenizer::train_from_text(text, topt));
    ModelConfig c = small_config("delta", 8, 2);
    c.vocab_size = tok->vocab_size();
    Session s(Model::from_weights(ModelWeights::random(c, 4), tok));
    GenerateOptions opt;
    opt.max_new_tokens = 200;
    opt.stop_at_end_of_text = false;
    opt.sampling.temperature = 3.0f;  // nearly uniform: many raw bytes of multi-byte characters
    opt.sampling.top_k = 0;
    opt.sampling.top_p = 1.0f;
    std::string streamed;
    int pieces = 0, held = 0;  // held: tokens whose bytes ended inside a character
    auto r = s.generate_text("日本", opt, [&](std::string_view piece) {
        held += piece.empty();
        EXPECT_TRUE(valid_utf8(piece)) << "a piece splits a character";
        streamed += piece;
        ++pieces;
        return true;
    });
    ASSERT_EQ(r.tokens.size(), 200u);
    std::vector<uint32_t> ids(r.tokens.begin(), r.tokens.end());
    EXPECT_EQ(streamed, tok->decode(ids));
    EXPECT_GE(pieces, 200);
    EXPECT_GT(held, 0) << "no token ended inside a character: the test proves nothing";
    // Without a tokenizer it is an error.
    Session plain(random_model(small_config("delta", 8)));
    EXPECT_THROW(plain.generate_text("x", opt, {}), Error);
}

// ---- TTT state files ----

std::string temp_path(const std::string& name) {
    return (std::filesystem::temp_directory_path() /
            ("bitttt_model_test_" + std::to_string(::getpid()) + "_" + name))
        .string();
}

std::vector<char> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

void write_bytes(const std::string& path, const std::vector<char>& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TEST(StateFile, SaveLoadResumesExactly) {
    for (const char* rule : {"reconstruct", "delta"}) {
        ModelConfig c = small_config(rule, 8, rule[0] == 'd' ? 2 : 1);
        auto model = random_model(c);
        const auto ids = random_ids(10, c.vocab_size, 12);
        const std::string path = temp_path(std::string(rule) + ".tttstate");
        Session a(model);
        a.forward(ids);
        a.save_state(path);
        auto expected = a.forward_token(7);
        std::vector<float> exp(expected.begin(), expected.end());
        Session b(model);
        b.load_state(path);
        EXPECT_EQ(b.position(), 10);
        auto got = b.forward_token(7);
        for (int64_t n = 0; n < c.vocab_size; ++n) ASSERT_EQ(got[n], exp[n]) << rule;
        // The file is the header plus W in row-major order.
        auto bytes = read_bytes(path);
        ASSERT_EQ(bytes.size(), 64 + 4 * c.num_layers * c.ttt_dim * c.head_dim());
        EXPECT_EQ(std::string(bytes.data(), 8), "TTTSTATE");
        std::remove(path.c_str());
    }
}

TEST(StateFile, NeverLoadsIntoAnotherModel) {
    ModelConfig c = small_config("delta", 8, 2);
    const std::string path = temp_path("other.tttstate");
    Session a(random_model(c, 1));
    a.forward(random_ids(6, c.vocab_size, 1));
    a.save_state(path);
    // Same config, different weights.
    Session b(random_model(c, 2));
    b.forward_token(4);
    std::vector<float> before(b.state(1).begin(), b.state(1).end());
    try {
        b.load_state(path);
        FAIL() << "a state loaded into a different model";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("different model"), std::string::npos) << e.what();
    }
    EXPECT_EQ(b.position(), 1);
    auto after = b.state(1);
    for (size_t i = 0; i < before.size(); ++i) ASSERT_EQ(after[i], before[i]);
    // Different shape and different rule.
    ModelConfig wide = small_config("delta", 8, 3);
    EXPECT_THROW(Session(random_model(wide, 1)).load_state(path), Error);
    EXPECT_THROW(Session(random_model(small_config("reconstruct", 8), 1)).load_state(path), Error);
    std::remove(path.c_str());
}

TEST(StateFile, DamagedFilesAreClearErrors) {
    ModelConfig c = small_config("reconstruct", 8);
    auto model = random_model(c);
    const std::string path = temp_path("good.tttstate"), bad = temp_path("bad.tttstate");
    Session s(model);
    s.forward(random_ids(5, c.vocab_size, 2));
    s.save_state(path);
    const auto good = read_bytes(path);
    auto expect_error = [&](const std::vector<char>& bytes, const std::string& what) {
        write_bytes(bad, bytes);
        Session t(model);
        try {
            t.load_state(bad);
            ADD_FAILURE() << "loaded a file with " << what;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
        }
    };
    expect_error(std::vector<char>(good.begin(), good.end() - 4), "truncated");
    expect_error(std::vector<char>(good.begin(), good.begin() + 20), "not a TTT state file");
    auto longer = good;
    longer.push_back(0);
    expect_error(longer, "trailing data");
    auto flipped = good;
    flipped[100] = static_cast<char>(flipped[100] ^ 0x40);
    expect_error(flipped, "corrupt");
    auto magic = good;
    magic[0] = 'X';
    expect_error(magic, "bad magic");
    auto version = good;
    version[8] = 9;
    expect_error(version, "version");
    EXPECT_THROW(s.load_state(temp_path("missing.tttstate")), Error);
    EXPECT_THROW(s.save_state("/nonexistent-dir/x.tttstate"), Error);
    std::remove(path.c_str());
    std::remove(bad.c_str());
}

TEST(Session, ThreadCountIsRestoredAndDoesNotChangeLogits) {
    // Small layers run on one thread inside forward; the caller's setting must survive, and the
    // results must not depend on it.
    ModelConfig c = small_config("delta", 8, 2);
    auto model = random_model(c);
    const auto ids = random_ids(30, c.vocab_size, 5);
    set_num_threads(1);
    Session one(model);
    one.forward(ids);
    auto la = one.forward(ids);  // twice: a state that has already learned something
    std::vector<float> a(la.begin(), la.end());
    set_num_threads(2);
    Session two(model);
    two.forward(ids);
    auto b = two.forward(ids);
    EXPECT_EQ(num_threads(), 2);
    for (int64_t n = 0; n < c.vocab_size; ++n) ASSERT_EQ(a[n], b[n]);
    set_num_threads(0);
}

// ---- generation ----

TEST(Generate, GreedyFollowsArgmaxAndFeedsTokensBack) {
    ModelConfig c = small_config("delta", 8);
    auto model = random_model(c, 3);
    const std::vector<int32_t> prompt = {4, 8, 15};
    GenerateOptions opt;
    opt.max_new_tokens = 10;
    opt.stop_at_end_of_text = false;
    opt.sampling.temperature = 0;
    Session s(model);
    std::vector<int32_t> streamed;
    auto r = s.generate(prompt, opt, [&](int32_t id) {
        streamed.push_back(id);
        return true;
    });
    EXPECT_EQ(r.stop, StopReason::kTokenLimit);
    ASSERT_EQ(r.tokens.size(), 10u);
    EXPECT_EQ(streamed, r.tokens);
    // The same chain by hand: argmax of each step's logits, fed back.
    Session manual(model);
    auto logits = manual.forward(prompt);
    for (int32_t id : r.tokens) {
        int32_t best = 0;
        for (int64_t n = 1; n < c.vocab_size; ++n)
            if (logits[n] > logits[best]) best = static_cast<int32_t>(n);
        ASSERT_EQ(id, best);
        logits = manual.forward_token(id);
    }
    EXPECT_EQ(s.position(), manual.position());
}

TEST(Generate, StopsAtEndOfTextAndOnCallback) {
    ModelConfig c = small_config("reconstruct", 8);
    // lm_head = 0: every logit is 0, so greedy picks the lowest id, <|endoftext|> (0).
    ModelWeights w = ModelWeights::random(c, 2);
    float* head = const_cast<float*>(w.lm_head);
    for (int64_t i = 0; i < c.vocab_size * c.hidden_dim; ++i) head[i] = 0.0f;
    w.lm_head_bf16 = nullptr;  // link() makes the bf16 copy the forward reads again
    w.link();
    Session s(Model::from_weights(std::move(w)));
    GenerateOptions opt;
    opt.sampling.temperature = 0;
    auto r = s.generate(std::vector<int32_t>{1, 2}, opt);
    EXPECT_EQ(r.stop, StopReason::kEndOfText);
    EXPECT_TRUE(r.tokens.empty());
    // Without the stop it emits id 0 until the limit.
    opt.stop_at_end_of_text = false;
    opt.max_new_tokens = 4;
    r = s.generate(std::vector<int32_t>{1}, opt);
    EXPECT_EQ(r.tokens, (std::vector<int32_t>{0, 0, 0, 0}));
    // A callback returning false stops after the token it was given.
    int calls = 0;
    r = s.generate(std::vector<int32_t>{1}, opt, [&](int32_t) { return ++calls < 2; });
    EXPECT_EQ(r.stop, StopReason::kCallback);
    EXPECT_EQ(r.tokens.size(), 2u);
    Session fresh(s.model_ptr());
    EXPECT_THROW(fresh.generate({}, opt), Error);  // nothing to continue from
}

TEST(Generate, SeededSamplingReproduces) {
    ModelConfig c = small_config("delta", 8, 2);
    auto model = random_model(c, 5);
    GenerateOptions opt;
    opt.max_new_tokens = 20;
    opt.stop_at_end_of_text = false;
    opt.sampling.temperature = 1.5f;
    opt.sampling.top_k = 0;
    opt.sampling.top_p = 1.0f;
    const std::vector<int32_t> prompt = {3};
    Session a(model), b(model), d(model);
    auto ra = a.generate(prompt, opt);
    auto rb = b.generate(prompt, opt);
    opt.sampling.seed = 43;
    auto rd = d.generate(prompt, opt);
    EXPECT_EQ(ra.tokens, rb.tokens);
    EXPECT_NE(ra.tokens, rd.tokens);
}

}  // namespace
}  // namespace bitttt
