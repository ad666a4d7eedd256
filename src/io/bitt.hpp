// .bitt: one self-contained inference file (DESIGN.md §3).
//
//   offset 0   "BITT"                      4 bytes, the magic
//   offset 4   header length N             u64 little-endian
//   offset 12  header                      N bytes of UTF-8 JSON, padded with spaces so that
//                                          12 + N is a multiple of 64
//   offset 12+N body                       a safetensors file (header padded so its data starts at
//                                          a multiple of 64 in the .bitt file)
//
// The header is {"format_version": 1, "config": {...config.json...}, "tokenizer": {...the
// tokenizer.json object...} or null, "ternary": {"layout": "tq2_rg16", "shapes": {NAME:
// [out, in], ...}}, "body_bytes": size of the body, "checksum": {"xxh3_64": "<16 hex digits>"}}
// with XXH3-64 (seed 0) of the body bytes.
//
// BitLinear weights sit in the body packed: NAME is a U8 tensor [packed_rows(out),
// packed_cols(in)/4] holding the bytes of the packed layout of kernels/cpu/ternary.hpp verbatim,
// NAME_scale an F32 [1] tensor with beta; "ternary.shapes" gives each one's logical [out, in].
// Every tensor whose size is a multiple of 64 bytes (all packed weights, and fp32 tensors with
// 16k elements) starts at a 64-byte aligned file offset, so it can be used in place in the
// mapping.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/mapped_file.hpp"
#include "io/safetensors.hpp"
#include "model/config.hpp"

namespace bitttt::io {

inline constexpr char kBittMagic[4] = {'B', 'I', 'T', 'T'};
inline constexpr int kBittFormatVersion = 1;
inline constexpr std::string_view kTernaryLayoutName = "tq2_rg16";
inline constexpr std::size_t kBittAlignment = 64;
// Largest header accepted (a big tokenizer.json is tens of MB).
inline constexpr uint64_t kMaxBittHeaderBytes = uint64_t{256} << 20;

struct BittFile {
    std::shared_ptr<const MappedFile> file;
    ModelConfig config;
    std::optional<std::string> tokenizer_json;  // the "tokenizer" object as JSON text
    std::map<std::string, std::vector<int64_t>> ternary_shapes;
    uint64_t body_offset = 0;
    uint64_t checksum = 0;  // XXH3-64 of the body, as the header states it
    SafetensorsView body;   // points into `file`
};

struct BittReadOptions {
    // Hash the whole body and compare with the header (reads every byte; on by default).
    bool verify_checksum = true;
};

// Maps and validates a .bitt file: magic, header length, header JSON (every key, the config),
// body size and alignment, checksum, and the body as safetensors. Errors name the path.
BittFile read_bitt(const std::string& path, const BittReadOptions& options = {});

// True when the file starts with the .bitt magic (false for missing or short files).
bool has_bitt_magic(const std::string& path);

struct BittToWrite {
    ModelConfig config;
    std::optional<std::string> tokenizer_json;  // must be a JSON object; nullopt -> null
    std::map<std::string, std::vector<int64_t>> ternary_shapes;
    std::vector<TensorToWrite> tensors;
    std::map<std::string, std::string> metadata;  // the body's __metadata__
};

// Writes a .bitt file atomically in one pass (the checksum is patched into the header at the
// end; its text has a fixed width, so the header length does not change).
void write_bitt(const std::string& path, BittToWrite contents);

// XXH3-64 of the bytes as 16 lowercase hex digits.
std::string xxh3_hex(uint64_t hash);

}  // namespace bitttt::io
