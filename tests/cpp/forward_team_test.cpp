// The CPU forward in one thread team (core/team.hpp, model/forward.cpp): the team's primitives,
// and logits and TTT states bit-identical to the per-kernel path (one OpenMP region per kernel)
// at 1, 2 and 3 threads, with the layers split over the team or run by one thread, on odd shapes.
#include <gtest/gtest.h>

#include <omp.h>

#include <atomic>
#include <cstring>
#include <vector>

#include "bitttt/model.hpp"
#include "core/rng.hpp"
#include "core/team.hpp"
#include "core/threads.hpp"
#include "model/config.hpp"
#include "model/session_impl.hpp"
#include "model/weights.hpp"

namespace bitttt {
namespace {

TEST(Team, SharesCoverEveryItemOnceInAlignedUnits) {
    for (int size : {1, 2, 3, 5}) {
        for (int64_t n : {0, 1, 15, 16, 17, 100, 1000}) {
            for (int64_t align : {1, 16}) {
                int64_t next = 0;
                for (int id = 0; id < size; ++id) {
                    const auto [b, e] = Team{id, size, nullptr}.share(n, align);
                    ASSERT_EQ(b, next) << size << " " << n << " " << align;
                    ASSERT_LE(b, e);
                    if (e < n) {
                        ASSERT_EQ(e % align, 0);
                    }
                    next = e;
                }
                ASSERT_EQ(next, n);
            }
        }
    }
}

TEST(Team, BarrierSeparatesRounds) {
    // Each round every thread writes its slot, meets the others, then checks all slots hold this
    // round's value (and meets again before the next round overwrites them).
    constexpr int kRounds = 500;
    for (int threads : {2, 3}) {
        SpinBarrier barrier;
        std::vector<std::atomic<int>> slots(static_cast<size_t>(threads));
        std::atomic<int> bad{0}, team_size{0};
        run_team(threads, barrier, [&](const Team& t) {
            if (t.id == 0) team_size = t.size;
            for (int r = 1; r <= kRounds; ++r) {
                slots[static_cast<size_t>(t.id)].store(r, std::memory_order_relaxed);
                t.sync();
                for (int i = 0; i < t.size; ++i)
                    if (slots[static_cast<size_t>(i)].load(std::memory_order_relaxed) != r) ++bad;
                t.sync();
            }
        });
        EXPECT_EQ(bad.load(), 0);
        EXPECT_EQ(team_size.load(), threads);
    }
}

TEST(Team, KernelsDoNotForkInsideATeam) {
    EXPECT_EQ(kernels_fork_threads(), omp_get_max_threads() > 1);
    EXPECT_FALSE(kernels_fork_threads(false));
    SpinBarrier barrier;
    std::atomic<int> forked{0};
    run_team(2, barrier, [&](const Team&) {
        if (kernels_fork_threads()) ++forked;
    });
    EXPECT_EQ(forked.load(), 0);
}

// Odd shapes: D, Dt and M not multiples of 16 (partial row groups at every share's end), a
// vocabulary not a multiple of 16, heads that do not divide the team.
ModelConfig odd_config(const char* rule, int act_bits, int heads) {
    ModelConfig c;
    c.vocab_size = 301;
    c.hidden_dim = 72;
    c.num_layers = 2;
    c.ttt_dim = 3 * 18;
    c.mlp_dim = 131;
    c.ttt_rule = parse_ttt_rule(rule);
    c.ttt_heads = heads;
    c.inner_lr = 0.5f;
    c.act_bits = act_bits;
    c.resolve_and_validate();
    return c;
}

// Logits of a prompt (all of them, in chunks of 5) then 4 decoded tokens, and the final states.
std::vector<float> run(const std::shared_ptr<const Model>& model) {
    const ModelConfig& c = model->config();
    const int64_t V = c.vocab_size;
    Session s(model, 5);
    std::vector<int32_t> ids;
    for (int i = 0; i < 12; ++i) ids.push_back(static_cast<int32_t>((i * 37 + 11) % V));
    std::vector<float> out(ids.size() * static_cast<size_t>(V));
    s.forward(ids, out);
    for (int i = 0; i < 4; ++i) {
        auto logits = s.forward_token(static_cast<int32_t>((i * 53 + 7) % V));
        out.insert(out.end(), logits.begin(), logits.end());
    }
    for (int64_t l = 0; l < c.num_layers; ++l) {
        auto st = s.state(l);
        out.insert(out.end(), st.begin(), st.end());
    }
    return out;
}

void expect_same_bits(const std::vector<float>& a, const std::vector<float>& b, const char* what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    for (size_t i = 0; i < a.size(); ++i)
        ASSERT_EQ(std::memcmp(&a[i], &b[i], sizeof(float)), 0)
            << what << ": value " << i << ": " << a[i] << " vs " << b[i];
}

TEST(ForwardTeam, SameLogitsAndStatesAsPerKernelPath) {
    struct Variant {
        const char* rule;
        int act_bits;
        int heads;
    };
    const Variant variants[] = {
        {"reconstruct", 8, 1}, {"reconstruct", 0, 1}, {"delta", 8, 3}, {"delta", 0, 1}};
    const bool team_was = cpu_team();
    for (const Variant& v : variants) {
        auto model =
            Model::from_weights(ModelWeights::random(odd_config(v.rule, v.act_bits, v.heads), 5));
        // The reference: one region per kernel, one thread.
        set_cpu_team(false);
        set_num_threads(1);
        const std::vector<float> ref = run(model);
        set_num_threads(2);
        expect_same_bits(ref, run(model), "per-kernel, 2 threads");
        set_cpu_team(true);
        for (int threads : {1, 2, 3}) {
            set_num_threads(threads);
            for (int64_t serial_bytes : {int64_t{0}, int64_t{-1}}) {
                // 0: the layers split over the team; default (1 MiB): these small layers run on
                // the calling thread and only the head is split (the per-kernel path).
                set_serial_layer_bytes(serial_bytes);
                SCOPED_TRACE(testing::Message()
                             << v.rule << " act_bits " << v.act_bits << " heads " << v.heads << ", "
                             << threads << " threads, " << (serial_bytes == 0 ? "split" : "serial")
                             << " layers");
                expect_same_bits(ref, run(model), "team");
            }
        }
        set_serial_layer_bytes(-1);
    }
    set_num_threads(0);
    set_cpu_team(team_was);
}

}  // namespace
}  // namespace bitttt
