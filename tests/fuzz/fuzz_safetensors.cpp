// Fuzz target: the safetensors reader (io/safetensors.hpp) on arbitrary bytes; every tensor of an
// accepted file is converted to fp32 (reads every byte the header claims).
#include <cstdint>
#include <span>
#include <vector>

#include "fuzz_util.hpp"
#include "io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    bitttt::fuzz::expect_only_bitttt_errors([&] {
        auto view = bitttt::io::SafetensorsView::parse(std::span(data, size), "fuzz.safetensors");
        std::vector<float> out;
        for (const auto& t : view.tensors()) {
            // The header's shape must agree with the bytes the view hands out.
            const size_t want = static_cast<size_t>(t.numel) * bitttt::io::dtype_size(t.dtype);
            if (t.data.size() != want || t.data.data() < data || t.data.data() + want > data + size)
                std::abort();
            if (t.dtype == bitttt::io::DType::kU8 || t.numel > (1 << 20)) continue;
            out.resize(static_cast<size_t>(t.numel));
            bitttt::io::tensor_to_f32(t, out.data(), "fuzz.safetensors");
            (void)view.find(t.name);
        }
    });
    return 0;
}
