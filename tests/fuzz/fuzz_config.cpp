// Fuzz target: config.json (model/config.hpp). An accepted config must survive a round trip
// through to_json() unchanged, and its parameter table must be computable without overflow.
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fuzz_util.hpp"
#include "model/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    bitttt::fuzz::expect_only_bitttt_errors([&] {
        const std::string_view text(reinterpret_cast<const char*>(data), size);
        const auto config = bitttt::ModelConfig::from_json_text(text, "fuzz/config.json");
        const auto again = bitttt::ModelConfig::from_json(config.to_json(), "round trip");
        if (!(again == config)) std::abort();
        (void)bitttt::parameter_count(config);
    });
    return 0;
}
