// Fuzz target: the C ABI (include/bitttt.h) driven by a byte program: each step reads an opcode
// and its arguments from the input and calls one entry point with them, on live, destroyed or
// forged handles, with random sizes and counts. Buffers are always as long as the documented
// contract requires for the sizes passed (a shorter buffer is the caller's undefined behaviour),
// except where a wrong count must be rejected before anything is touched. Every call must return
// a listed status (or NULL) with a non-empty bitttt_last_error() on failure.
#include <bitttt.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

struct Input {
    const uint8_t* p;
    size_t n;
    template <typename T>
    T take() {
        T v{};
        const size_t k = n < sizeof(T) ? n : sizeof(T);
        std::memcpy(&v, p, k);
        p += k;
        n -= k;
        return v;
    }
};

void expect_status(int status, const char* what) {
    const bool listed = (status >= 0 && status <= 8) || status == 99;
    if (!listed) {
        std::fprintf(stderr, "fuzz_capi: %s returned unlisted status %d\n", what, status);
        std::abort();
    }
    if (status != 0 && bitttt_last_error()[0] == '\0') {
        std::fprintf(stderr, "fuzz_capi: %s failed (%d) without an error message\n", what, status);
        std::abort();
    }
}

// Hidden sizes worth trying: valid small ones and invalid ones of every kind. The valid ones are
// kept small because building a layer is most of a run's time (its kernels are checked against
// references by the unit tests; here the boundary is under test); their TTT width (a quarter)
// is odd for 12, 20 and 28.
size_t pick_hidden_dim(uint16_t code) {
    static constexpr size_t kSizes[] = {
        0, 1, 3, 4, 8, 12, 16, 20, 28, 6, 16388, 1u << 20, SIZE_MAX, SIZE_MAX / 4 + 1, 20000, 7};
    return kSizes[code % (sizeof(kSizes) / sizeof(kSizes[0]))];
}

// Layers a program may create. Building a layer (random ternary projections) is the costliest
// call; a few layers give every handle state (live, destroyed, several alive) while each run
// stays cheap. Requests with invalid sizes are always made: their rejection is what is checked.
constexpr int kMaxLayers = 4;

bool valid_create(size_t dim, float lr) {
    return dim % 4 == 0 && dim > 0 && dim <= 16384 && std::isfinite(lr) && lr >= 0 && lr <= 2;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Input in{data, size};
    int layers = 0;
    std::vector<void*> handles;  // live and destroyed ones alike
    std::vector<float> buf;
    for (int step = 0; step < 64 && in.n > 0; ++step) {
        const uint8_t op = in.take<uint8_t>();
        void* h = handles.empty() ? nullptr : handles[in.take<uint8_t>() % handles.size()];
        switch (op % 8) {
            case 0: {  // create
                const size_t dim = pick_hidden_dim(in.take<uint16_t>());
                float lr = in.take<float>();
                if (valid_create(dim, lr) && layers == kMaxLayers) break;
                void* m = ttt_create(dim, lr);
                if (m == nullptr && bitttt_last_error()[0] == '\0') std::abort();
                if (m != nullptr) {
                    ++layers;
                    if (!valid_create(dim, lr)) {
                        std::fprintf(stderr, "fuzz_capi: ttt_create(%zu, %g) accepted\n", dim, lr);
                        std::abort();
                    }
                    handles.push_back(m);
                }
                break;
            }
            case 1: {  // forward: seq_len from the input, data from the input (NaN and all)
                const size_t seq = in.take<uint8_t>() % 5;
                const size_t state = h ? ttt_state_size(h) : 0;
                const size_t dim = static_cast<size_t>(std::lround(std::sqrt(double(state)))) * 4;
                const size_t n = seq * (dim ? dim : 1);
                buf.assign(n + 1, 0.0f);
                for (size_t i = 0; i < n && in.n >= 4; i += 7) buf[i] = in.take<float>();
                std::vector<float> out(n + 1);
                expect_status(ttt_forward(h, buf.data(), seq, out.data()), "ttt_forward");
                break;
            }
            case 2: {  // get/set state with a count that may be wrong
                const size_t real = h ? ttt_state_size(h) : 0;
                const uint8_t delta = in.take<uint8_t>();
                const size_t count = delta == 0 ? real : (delta == 1 ? SIZE_MAX : real + delta);
                buf.assign(real + 1, in.take<float>());
                if (count == real) {
                    expect_status(ttt_set_state(h, buf.data(), count), "ttt_set_state");
                    expect_status(ttt_get_state(h, buf.data(), count), "ttt_get_state");
                } else {
                    // Wrong counts: must be rejected before the buffer is read or written.
                    int s = ttt_set_state(h, buf.data(), count);
                    expect_status(s, "ttt_set_state");
                    if (s == 0) std::abort();
                    s = ttt_get_state(h, buf.data(), count);
                    expect_status(s, "ttt_get_state");
                    if (s == 0) std::abort();
                }
                break;
            }
            case 3:
                expect_status(ttt_reset(h), "ttt_reset");
                break;
            case 4:
                ttt_destroy(h);  // stays in the list: later calls use a dead handle
                break;
            case 5: {  // a forged handle value
                void* forged = reinterpret_cast<void*>(in.take<uintptr_t>());
                const int s = ttt_reset(forged);
                expect_status(s, "ttt_reset(forged)");
                (void)ttt_state_size(forged);
                ttt_destroy(forged);
                break;
            }
            case 6:
                expect_status(ttt_forward(h, nullptr, 1, nullptr), "ttt_forward(NULL)");
                expect_status(ttt_get_state(h, nullptr, 4), "ttt_get_state(NULL)");
                break;
            default:
                (void)bitttt_status_name(in.take<int>());
                break;
        }
    }
    for (void* h : handles) ttt_destroy(h);
    return 0;
}
