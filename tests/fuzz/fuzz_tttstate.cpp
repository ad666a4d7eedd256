// Fuzz target: the .tttstate reader (model/ttt_state_file.hpp). The first input byte picks what
// the file is checked against and is not part of the file:
//   even: a fixed model (rule 0, identity 0x5EED5EED5EED5EED, 2 layers, 1 head, Dh 2), the seed
//         corpus's files match it, so mutations exercise the checks after the header;
//   odd:  the header the file itself claims (so any num_layers/heads/head_dim, including huge
//         ones whose product overflows, reaches the size arithmetic).
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_util.hpp"
#include "model/ttt_state_file.hpp"

namespace {

uint64_t read_u64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;  // little-endian host (x86-64), as the file format is
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const bool from_file = (data[0] & 1) != 0;
    const uint8_t* file = data + 1;
    const size_t file_size = size - 1;
    bitttt::TttStateHeader expected{0, 0x5EED5EED5EED5EEDull, 2, 1, 2, 0};
    if (from_file) {
        if (file_size < 64) return 0;
        uint32_t rule;
        std::memcpy(&rule, file + 12, 4);
        expected = {rule,
                    read_u64(file + 16),
                    read_u64(file + 24),
                    read_u64(file + 32),
                    read_u64(file + 40),
                    0};
    }
    // The caller's buffer has the size the expected header implies; skip shapes whose buffer
    // would be unreasonable to allocate (the reader must still reject them by file size, which
    // the fixed mode covers) and products that overflow (passed as a small buffer: the reader
    // must notice the mismatch before it writes anything).
    unsigned __int128 floats = static_cast<unsigned __int128>(expected.num_layers) *
                               expected.heads * expected.head_dim * expected.head_dim;
    std::vector<float> states(floats <= (1u << 20) ? static_cast<size_t>(floats) : 8);
    const auto path = bitttt::fuzz::write_scratch("state.tttstate", file, file_size);
    bitttt::fuzz::expect_only_bitttt_errors(
        [&] { (void)bitttt::load_ttt_state(path, expected, states); });
    return 0;
}
