// Deterministic random numbers, identical on every platform and compiler (the standard library's
// distributions are not), so seeded weights, batches and sampling reproduce bit for bit.
#pragma once

#include <cmath>
#include <cstdint>

namespace bitttt {

// SplitMix64: expands one 64-bit seed into well-mixed words (used to seed Rng).
inline uint64_t splitmix64(uint64_t& state) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// xoshiro256** (Blackman & Vigna): fast, 256-bit state, passes BigCrush.
class Rng {
  public:
    explicit Rng(uint64_t seed = 0) { reseed(seed); }

    void reseed(uint64_t seed) {
        uint64_t sm = seed;
        for (auto& word : s_) word = splitmix64(sm);
    }

    uint64_t next_u64() {
        const uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }

    // Uniform in [0, 1) with 24 random bits (every value exactly representable as float).
    float uniform() { return static_cast<float>(next_u64() >> 40) * 0x1.0p-24f; }
    // Uniform in [0, 1) with 53 random bits.
    double uniform_double() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
    // Uniform integer in [0, n), n > 0 (Lemire's multiply-shift; bias below 2^-32 for n < 2^32).
    uint64_t below(uint64_t n) {
        return static_cast<uint64_t>((static_cast<unsigned __int128>(next_u64()) * n) >> 64);
    }
    // Standard normal by Box-Muller (one value per call; simple and reproducible).
    float normal() {
        double u1 = 1.0 - uniform_double();  // (0, 1]
        double u2 = uniform_double();
        return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) *
                                  std::cos(6.283185307179586 * u2));
    }

    // Full state, for checkpoints that resume bit for bit.
    const uint64_t* state() const { return s_; }
    void set_state(const uint64_t state[4]) {
        for (int i = 0; i < 4; ++i) s_[i] = state[i];
    }

  private:
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    uint64_t s_[4]{};
};

}  // namespace bitttt
