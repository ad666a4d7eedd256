#include "model/ttt_state_file.hpp"

#include <xxhash.h>

#include <bit>
#include <cstring>
#include <fstream>
#include <vector>

#include "bitttt/model.hpp"
#include "core/error.hpp"
#include "io/atomic_file.hpp"
#include "model/config.hpp"
#include "model/session_impl.hpp"

namespace bitttt {
namespace {

static_assert(std::endian::native == std::endian::little, "state files are little-endian");

// The largest state this reader accepts (a 7B-class model holds 32 x 1024^2 floats = 128 MiB).
constexpr uint64_t kMaxStateFloats = uint64_t{1} << 32;

template <typename T>
void put(uint8_t* dst, T value) {
    std::memcpy(dst, &value, sizeof value);
}
template <typename T>
T get(const uint8_t* src) {
    T value;
    std::memcpy(&value, src, sizeof value);
    return value;
}

const char* rule_name(uint64_t rule) {
    return rule == 1 ? "delta" : "reconstruct";
}

}  // namespace

void save_ttt_state(const std::string& path, const TttStateHeader& h,
                    std::span<const float> states) {
    check(states.size() == h.num_layers * h.heads * h.head_dim * h.head_dim, ErrorKind::kInternal,
          "{}: state size does not match its header", path);
    uint8_t header[kTttStateHeaderBytes] = {};
    std::memcpy(header, kTttStateMagic, sizeof kTttStateMagic);
    put<uint32_t>(header + 8, kTttStateVersion);
    put<uint32_t>(header + 12, h.rule);
    put<uint64_t>(header + 16, h.model_hash);
    put<uint64_t>(header + 24, h.num_layers);
    put<uint64_t>(header + 32, h.heads);
    put<uint64_t>(header + 40, h.head_dim);
    put<uint64_t>(header + 48, h.position);
    put<uint64_t>(header + 56, XXH3_64bits(states.data(), states.size_bytes()));
    io::AtomicFileWriter out(path);
    out.write(header, sizeof header);
    out.write(states.data(), states.size_bytes());
    out.commit();
}

uint64_t load_ttt_state(const std::string& path, const TttStateHeader& e, std::span<float> states) {
    std::ifstream in(path, std::ios::binary);
    check(in.good(), ErrorKind::kIo, "{}: cannot open the state file", path);
    in.seekg(0, std::ios::end);
    const auto size = static_cast<int64_t>(in.tellg());
    in.seekg(0);
    check(size >= kTttStateHeaderBytes, ErrorKind::kFormat,
          "{}: not a TTT state file (only {} bytes)", path, size);
    uint8_t header[kTttStateHeaderBytes];
    in.read(reinterpret_cast<char*>(header), sizeof header);
    check(in.good(), ErrorKind::kIo, "{}: read error", path);
    check(std::memcmp(header, kTttStateMagic, sizeof kTttStateMagic) == 0, ErrorKind::kFormat,
          "{}: not a TTT state file (bad magic)", path);
    const auto version = get<uint32_t>(header + 8);
    check(version == kTttStateVersion, ErrorKind::kFormat,
          "{}: unsupported state file version {} (this build reads {})", path, version,
          kTttStateVersion);
    const auto rule = get<uint32_t>(header + 12);
    const auto layers = get<uint64_t>(header + 24), heads = get<uint64_t>(header + 32),
               dh = get<uint64_t>(header + 40);
    check(rule == e.rule, ErrorKind::kInvalidArgument,
          "{}: the state is for the {} TTT rule, the model uses {}", path, rule_name(rule),
          rule_name(e.rule));
    check(layers == e.num_layers && heads == e.heads && dh == e.head_dim,
          ErrorKind::kInvalidArgument,
          "{}: the state has {} layers x {} heads x {}^2, the model {} x {} x {}^2", path, layers,
          heads, dh, e.num_layers, e.heads, e.head_dim);
    check(get<uint64_t>(header + 16) == e.model_hash, ErrorKind::kInvalidArgument,
          "{}: the state belongs to a different model (identity {:016x}, this model {:016x})", path,
          get<uint64_t>(header + 16), e.model_hash);
    const uint64_t floats = layers * heads * dh * dh;
    check(floats == states.size() && floats <= kMaxStateFloats, ErrorKind::kInternal,
          "{}: state buffer size mismatch", path);
    const int64_t expected_size = kTttStateHeaderBytes + static_cast<int64_t>(floats * 4);
    check(size == expected_size, ErrorKind::kFormat,
          "{}: the file has {} bytes, a state of this shape has {} ({})", path, size, expected_size,
          size < expected_size ? "truncated" : "trailing data");
    std::vector<float> payload(floats);
    in.read(reinterpret_cast<char*>(payload.data()), static_cast<std::streamsize>(floats * 4));
    check(in.good(), ErrorKind::kIo, "{}: read error", path);
    check(XXH3_64bits(payload.data(), floats * 4) == get<uint64_t>(header + 56), ErrorKind::kFormat,
          "{}: the state data is corrupt (checksum mismatch)", path);
    std::memcpy(states.data(), payload.data(), floats * 4);
    return get<uint64_t>(header + 48);
}

namespace {
TttStateHeader header_of(const Model& model) {
    const ModelConfig& c = model.config();
    TttStateHeader h;
    h.rule = c.ttt_rule == TttRule::kDelta ? 1 : 0;
    h.model_hash = model.identity_hash();
    h.num_layers = static_cast<uint64_t>(c.num_layers);
    h.heads = static_cast<uint64_t>(c.ttt_heads);
    h.head_dim = static_cast<uint64_t>(c.head_dim());
    return h;
}
}  // namespace

void Session::save_state(const std::string& path) const {
    TttStateHeader h = header_of(*impl_->model);
    h.position = static_cast<uint64_t>(impl_->position);
    if (impl_->gpu) impl_->download_states();
    save_ttt_state(path, h, impl_->states.span());
}

void Session::load_state(const std::string& path) {
    // load_ttt_state writes the states only once everything has been checked.
    const uint64_t position = load_ttt_state(path, header_of(*impl_->model), impl_->states.span());
    impl_->position = static_cast<int64_t>(position);
    impl_->has_logits = false;
    if (impl_->gpu) {
        impl_->host_states_stale = false;  // the host copy is the truth now
        impl_->device_states_stale = true;
    }
}

}  // namespace bitttt
