// Misuse of the C ABI (include/bitttt.h) from C++: overflowing sizes, use after destroy, forged
// handles, NaN/Inf, concurrent calls and destroy during a call. Nothing may crash or throw.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "bitttt.h"
#include "core/rng.hpp"

namespace {

std::vector<float> random_input(size_t tokens, size_t dim, uint64_t seed) {
    bitttt::Rng rng(seed);
    std::vector<float> v(tokens * dim);
    for (auto& x : v) x = rng.normal();
    return v;
}

std::string last_error() {
    return bitttt_last_error();
}

TEST(CApi, CreateRejectsBadDimensionsAndRates) {
    for (size_t dim :
         {size_t{0}, size_t{1}, size_t{2}, size_t{6}, size_t{65}, size_t{16384 + 4},
          std::numeric_limits<size_t>::max(), std::numeric_limits<size_t>::max() - 3}) {
        EXPECT_EQ(ttt_create(dim, 0.1f), nullptr) << dim;
        EXPECT_NE(last_error().find("hidden_dim"), std::string::npos) << last_error();
    }
    for (float lr : {std::nanf(""), INFINITY, -INFINITY, -0.5f, 2.01f}) {
        EXPECT_EQ(ttt_create(64, lr), nullptr) << lr;
        EXPECT_NE(last_error().find("inner_lr"), std::string::npos) << last_error();
    }
    void* ok = ttt_create(4, 0.0f);  // the smallest layer and a zero rate are valid
    EXPECT_NE(ok, nullptr);
    ttt_destroy(ok);
}

TEST(CApi, OverflowingSequenceLengthsAreRejected) {
    void* m = ttt_create(64, 0.1f);
    ASSERT_NE(m, nullptr);
    float dummy[64] = {};
    const size_t max = std::numeric_limits<size_t>::max();
    // Each of these would wrap seq_len × 64 × 4 bytes; the buffers are never touched.
    for (size_t seq : {max, max / 64, max / 256 + 1, max / 4, size_t{1} << 58}) {
        EXPECT_EQ(ttt_forward(m, dummy, seq, dummy), BITTTT_DIMENSION_MISMATCH) << seq;
        EXPECT_NE(last_error().find("overflows"), std::string::npos) << last_error();
    }
    EXPECT_EQ(ttt_forward(m, dummy, 0, dummy), BITTTT_DIMENSION_MISMATCH);
    EXPECT_EQ(ttt_get_state(m, dummy, max), BITTTT_DIMENSION_MISMATCH);
    EXPECT_EQ(ttt_set_state(m, dummy, 0), BITTTT_DIMENSION_MISMATCH);
    ttt_destroy(m);
}

TEST(CApi, UseAfterDestroyIsDetectedEvenWhenANewLayerExists) {
    void* a = ttt_create(64, 0.1f);
    ASSERT_NE(a, nullptr);
    ttt_destroy(a);
    // Handles are never reused: creating more layers does not revive `a`.
    std::vector<void*> others;
    for (int i = 0; i < 50; ++i) {
        others.push_back(ttt_create(64, 0.1f));
        ASSERT_NE(others.back(), a);
    }
    auto x = random_input(2, 64, 1);
    std::vector<float> y(x.size());
    EXPECT_EQ(ttt_forward(a, x.data(), 2, y.data()), BITTTT_INVALID_HANDLE);
    EXPECT_NE(last_error().find("not a live"), std::string::npos);
    EXPECT_EQ(ttt_reset(a), BITTTT_INVALID_HANDLE);
    EXPECT_EQ(ttt_state_size(a), 0u);
    ttt_destroy(a);  // ignored
    for (void* o : others) ttt_destroy(o);
}

TEST(CApi, ForgedHandlesAreRejected) {
    auto x = random_input(1, 64, 2);
    std::vector<float> y(x.size());
    int local = 0;
    for (void* forged :
         {static_cast<void*>(&local), static_cast<void*>(x.data()),
          reinterpret_cast<void*>(uintptr_t{1}), reinterpret_cast<void*>(~uintptr_t{0})}) {
        EXPECT_EQ(ttt_forward(forged, x.data(), 1, y.data()), BITTTT_INVALID_HANDLE);
        EXPECT_EQ(ttt_state_size(forged), 0u);
        ttt_destroy(forged);  // must not free anything
    }
    EXPECT_EQ(local, 0);
}

TEST(CApi, NonFiniteInputLeavesStateAndOutputUntouched) {
    void* m = ttt_create(32, 0.5f);
    ASSERT_NE(m, nullptr);
    auto x = random_input(5, 32, 3);
    std::vector<float> y(x.size());
    ASSERT_EQ(ttt_forward(m, x.data(), 5, y.data()), BITTTT_OK);
    const size_t n = ttt_state_size(m);
    std::vector<float> before(n), after(n);
    ASSERT_EQ(ttt_get_state(m, before.data(), n), BITTTT_OK);
    for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
        for (size_t pos : {size_t{0}, x.size() / 2, x.size() - 1}) {
            auto xb = x;
            xb[pos] = bad;
            std::vector<float> yb(x.size(), 7.0f);
            EXPECT_EQ(ttt_forward(m, xb.data(), 5, yb.data()), BITTTT_INVALID_ARGUMENT);
            EXPECT_NE(last_error().find("NaN or Inf"), std::string::npos);
            for (float v : yb) ASSERT_EQ(v, 7.0f);
            ASSERT_EQ(ttt_get_state(m, after.data(), n), BITTTT_OK);
            EXPECT_EQ(before, after);
        }
    }
    ttt_destroy(m);
}

TEST(CApi, LastErrorIsPerThread) {
    EXPECT_EQ(ttt_reset(nullptr), BITTTT_NULL_POINTER);
    std::string other_thread;
    std::thread t([&] { other_thread = bitttt_last_error(); });
    t.join();
    EXPECT_EQ(other_thread, "");
    EXPECT_NE(last_error().find("ttt_reset"), std::string::npos);
}

// Concurrent forwards on one handle are serialized: the result equals running the same calls
// one after another (the state after k calls of the same input does not depend on the order).
TEST(CApi, ConcurrentCallsOnOneHandleAreSerialized) {
    const size_t dim = 64, tokens = 16;
    auto x = random_input(tokens, dim, 4);
    void* shared = ttt_create(dim, 0.1f);
    void* serial = ttt_create(dim, 0.1f);
    ASSERT_NE(shared, nullptr);
    ASSERT_NE(serial, nullptr);
    const int threads = 4, calls = 25;
    std::atomic<int> failures{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&] {
            std::vector<float> y(x.size());
            for (int c = 0; c < calls; ++c)
                if (ttt_forward(shared, x.data(), tokens, y.data()) != BITTTT_OK) ++failures;
        });
    }
    for (auto& t : pool) t.join();
    EXPECT_EQ(failures.load(), 0);
    std::vector<float> y(x.size());
    for (int c = 0; c < threads * calls; ++c)
        ASSERT_EQ(ttt_forward(serial, x.data(), tokens, y.data()), BITTTT_OK);
    const size_t n = ttt_state_size(shared);
    std::vector<float> a(n), b(n);
    ttt_get_state(shared, a.data(), n);
    ttt_get_state(serial, b.data(), n);
    EXPECT_EQ(a, b);
    ttt_destroy(shared);
    ttt_destroy(serial);
}

// Destroying a handle while other threads use it: their calls either finish normally or report
// an invalid handle; nothing crashes (run under ASan to see use-after-free if it regressed).
TEST(CApi, DestroyDuringUseIsSafe) {
    const size_t dim = 128, tokens = 64;
    auto x = random_input(tokens, dim, 5);
    for (int round = 0; round < 5; ++round) {
        void* m = ttt_create(dim, 0.1f);
        ASSERT_NE(m, nullptr);
        std::atomic<bool> go{false};
        std::atomic<int> bad{0};
        std::vector<std::thread> pool;
        for (int t = 0; t < 3; ++t) {
            pool.emplace_back([&] {
                std::vector<float> y(x.size());
                while (!go) std::this_thread::yield();
                for (int c = 0; c < 50; ++c) {
                    int s = ttt_forward(m, x.data(), tokens, y.data());
                    if (s != BITTTT_OK && s != BITTTT_INVALID_HANDLE) ++bad;
                }
            });
        }
        go = true;
        ttt_destroy(m);
        for (auto& t : pool) t.join();
        EXPECT_EQ(bad.load(), 0);
        EXPECT_EQ(ttt_reset(m), BITTTT_INVALID_HANDLE);
    }
}

TEST(CApi, LongErrorMessagesAreTruncatedNotOverflowed) {
    // The last error buffer is fixed; a failure inside any call only ever writes a bounded string.
    EXPECT_EQ(bitttt_selftest_exception(1), BITTTT_PANIC);
    EXPECT_LT(std::strlen(bitttt_last_error()), 1024u);
    EXPECT_NE(last_error().find("internal error"), std::string::npos);
}

}  // namespace
