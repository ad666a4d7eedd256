// The TTT state file (.tttstate, DESIGN.md §3): the W of every layer, with a header naming the
// model so a state is never loaded into another one.
//
// Layout (little-endian), a 64-byte header then the payload:
//     0  char[8]  magic "TTTSTATE"
//     8  u32      format version (1)
//    12  u32      TTT rule (0 reconstruct, 1 delta)
//    16  u64      model identity: Model::identity_hash() (XXH3-64 of config and weights)
//    24  u64      num_layers
//    32  u64      heads
//    40  u64      head_dim (Dh)
//    48  u64      position (tokens read when the state was saved)
//    56  u64      XXH3-64 of the payload (catches corruption)
//    64  f32[num_layers * heads * Dh * Dh]: per layer, per head, W row-major (W[i][j] at i*Dh+j)
// The file size must be exactly 64 + 4 * floats. Writes are atomic (temp file, fsync, rename).
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace bitttt {

inline constexpr char kTttStateMagic[8] = {'T', 'T', 'T', 'S', 'T', 'A', 'T', 'E'};
inline constexpr uint32_t kTttStateVersion = 1;
inline constexpr int64_t kTttStateHeaderBytes = 64;

struct TttStateHeader {
    uint32_t rule = 0;
    uint64_t model_hash = 0;
    uint64_t num_layers = 0;
    uint64_t heads = 0;
    uint64_t head_dim = 0;
    uint64_t position = 0;
};

// Writes header + states (num_layers * heads * head_dim^2 floats) to path atomically.
void save_ttt_state(const std::string& path, const TttStateHeader& header,
                    std::span<const float> states);

// Reads path and checks it against `expected` (every field but position must match): wrong
// magic, version, model, shape, size or payload checksum are errors naming the file. On
// success fills `states` (exactly the expected size) and returns the position it stored.
uint64_t load_ttt_state(const std::string& path, const TttStateHeader& expected,
                        std::span<float> states);

}  // namespace bitttt
