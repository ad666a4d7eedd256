#include "io/bitt.hpp"

#include <xxhash.h>

#include <cstring>
#include <fstream>

#include "core/error.hpp"
#include "io/atomic_file.hpp"
#include "io/json_text.hpp"

namespace bitttt::io {
namespace {

constexpr std::size_t kPrefixBytes = 12;  // magic + header length

std::string hex_bytes(const uint8_t* p, std::size_t n) {
    std::string s;
    for (std::size_t i = 0; i < n; ++i) s += fmt::format("{:02x}", p[i]);
    return s;
}

std::optional<uint64_t> parse_hex64(const std::string& s) {
    if (s.size() != 16) return std::nullopt;
    uint64_t v = 0;
    for (char c : s) {
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return std::nullopt;
        v = (v << 4) | static_cast<uint64_t>(d);
    }
    return v;
}

// The header's fields, checked one by one; every problem names the file and the key.
void parse_header(const nlohmann::json& h, const std::string& path, BittFile* out,
                  uint64_t* body_bytes) {
    check(h.is_object(), ErrorKind::kFormat, "{}: header is not a JSON object", path);
    for (const char* key :
         {"format_version", "config", "tokenizer", "ternary", "body_bytes", "checksum"})
        check(h.contains(key), ErrorKind::kFormat, "{}: header has no '{}'", path, key);
    for (const auto& [key, value] : h.items()) {
        (void)value;
        check(key == "format_version" || key == "config" || key == "tokenizer" ||
                  key == "ternary" || key == "body_bytes" || key == "checksum",
              ErrorKind::kFormat, "{}: header has unknown key '{}'", path, key);
    }
    const auto& version = h["format_version"];
    check(version.is_number_integer(), ErrorKind::kFormat, "{}: format_version must be an integer",
          path);
    check(version.get<int64_t>() == kBittFormatVersion, ErrorKind::kFormat,
          "{}: unsupported format_version {} (this build reads {})", path, version.dump(),
          kBittFormatVersion);
    out->config = ModelConfig::from_json(h["config"], path + ": config");

    const auto& tok = h["tokenizer"];
    check(tok.is_null() || tok.is_object(), ErrorKind::kFormat,
          "{}: tokenizer must be a JSON object or null", path);
    if (tok.is_object()) out->tokenizer_json = tok.dump();

    const auto& ternary = h["ternary"];
    check(ternary.is_object() && ternary.size() == 2 && ternary.contains("layout") &&
              ternary.contains("shapes"),
          ErrorKind::kFormat, "{}: ternary must be {{\"layout\": ..., \"shapes\": ...}}", path);
    check(
        ternary["layout"].is_string() && ternary["layout"].get<std::string>() == kTernaryLayoutName,
        ErrorKind::kFormat, "{}: unsupported ternary layout {} (this build reads \"{}\")", path,
        ternary["layout"].dump(), kTernaryLayoutName);
    check(ternary["shapes"].is_object(), ErrorKind::kFormat, "{}: ternary.shapes must be an object",
          path);
    for (const auto& [name, shape] : ternary["shapes"].items()) {
        check(shape.is_array() && shape.size() == 2 && shape[0].is_number_unsigned() &&
                  shape[1].is_number_unsigned() && shape[0].get<uint64_t>() <= (1u << 30) &&
                  shape[1].get<uint64_t>() <= (1u << 30),
              ErrorKind::kFormat, "{}: ternary shape of '{}' must be [out, in], got {}", path, name,
              shape.dump());
        out->ternary_shapes[name] = {shape[0].get<int64_t>(), shape[1].get<int64_t>()};
    }

    check(h["body_bytes"].is_number_unsigned(), ErrorKind::kFormat,
          "{}: body_bytes must be a non-negative integer", path);
    *body_bytes = h["body_bytes"].get<uint64_t>();

    const auto& sum = h["checksum"];
    check(
        sum.is_object() && sum.size() == 1 && sum.contains("xxh3_64") && sum["xxh3_64"].is_string(),
        ErrorKind::kFormat, "{}: checksum must be {{\"xxh3_64\": \"<16 hex digits>\"}}", path);
    auto value = parse_hex64(sum["xxh3_64"].get<std::string>());
    check(value.has_value(), ErrorKind::kFormat, "{}: checksum {} is not 16 lowercase hex digits",
          path, sum["xxh3_64"].dump());
    out->checksum = *value;
}

// The header JSON (without padding) for these contents and checksum.
std::string header_text(const BittToWrite& c, const nlohmann::json& tokenizer, uint64_t body_bytes,
                        uint64_t checksum) {
    nlohmann::ordered_json h;
    h["format_version"] = kBittFormatVersion;
    h["config"] = c.config.to_json();
    h["ternary"] = {{"layout", kTernaryLayoutName}, {"shapes", c.ternary_shapes}};
    h["body_bytes"] = body_bytes;
    h["checksum"] = {{"xxh3_64", xxh3_hex(checksum)}};
    h["tokenizer"] = tokenizer;  // last: it is by far the largest part
    return h.dump();
}

}  // namespace

std::string xxh3_hex(uint64_t hash) {
    return fmt::format("{:016x}", hash);
}

bool has_bitt_magic(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    char magic[4] = {};
    return in.read(magic, 4) && std::memcmp(magic, kBittMagic, 4) == 0;
}

BittFile read_bitt(const std::string& path, const BittReadOptions& options) {
    BittFile b;
    b.file = MappedFile::open(path);
    const std::span<const uint8_t> bytes = b.file->bytes();
    check(bytes.size() >= kPrefixBytes, ErrorKind::kFormat,
          "{}: too short for a .bitt file ({} bytes)", path, bytes.size());
    check(std::memcmp(bytes.data(), kBittMagic, 4) == 0, ErrorKind::kFormat,
          "{}: not a .bitt file (magic bytes {}, expected 42495454 \"BITT\")", path,
          hex_bytes(bytes.data(), 4));
    uint64_t n;
    std::memcpy(&n, bytes.data() + 4, 8);
    check(n <= kMaxBittHeaderBytes, ErrorKind::kFormat,
          "{}: header length {} is too large (limit {} bytes)", path, n, kMaxBittHeaderBytes);
    check(n <= bytes.size() - kPrefixBytes, ErrorKind::kFormat,
          "{}: header length {} runs past the end of the file ({} bytes): truncated file?", path, n,
          bytes.size());
    const std::string_view text(reinterpret_cast<const char*>(bytes.data() + kPrefixBytes), n);
    uint64_t body_bytes = 0;
    parse_header(parse_json_checked(text, path + ": header"), path, &b, &body_bytes);

    b.body_offset = kPrefixBytes + n;
    check(b.body_offset % kBittAlignment == 0, ErrorKind::kFormat,
          "{}: body starts at offset {}, which is not a multiple of {}", path, b.body_offset,
          kBittAlignment);
    const uint64_t actual = bytes.size() - b.body_offset;
    check(actual == body_bytes, ErrorKind::kFormat,
          "{}: body has {} bytes but the header says {}: {}", path, actual, body_bytes,
          actual < body_bytes ? "truncated file" : "trailing data");
    const std::span<const uint8_t> body = bytes.subspan(b.body_offset);
    if (options.verify_checksum) {
        const uint64_t hash = XXH3_64bits(body.data(), body.size());
        check(hash == b.checksum, ErrorKind::kFormat,
              "{}: checksum mismatch: the body hashes to xxh3_64 {} but the header says {} "
              "(corrupted file)",
              path, xxh3_hex(hash), xxh3_hex(b.checksum));
    }
    b.body = SafetensorsView::parse(body, path);
    return b;
}

void write_bitt(const std::string& path, BittToWrite c) {
    nlohmann::json tokenizer = nullptr;
    if (c.tokenizer_json) {
        tokenizer = parse_json_checked(*c.tokenizer_json, "tokenizer.json");
        check(tokenizer.is_object(), ErrorKind::kInvalidArgument,
              "tokenizer.json: not a JSON object");
    }
    // The header's length does not depend on the body (body_bytes is known from the layout, and
    // the checksum is fixed-width hex), so the body's offset is known before it is written.
    // Lay the body out for an offset that is a multiple of the alignment; the header is padded
    // to end exactly there.
    SafetensorsLayout body = layout_safetensors(std::move(c.tensors), c.metadata, kBittAlignment,
                                                /*file_offset=*/0);
    std::string header = header_text(c, tokenizer, body.total_bytes(), 0);
    header.append(
        (kBittAlignment - (kPrefixBytes + header.size()) % kBittAlignment) % kBittAlignment, ' ');
    const uint64_t n = header.size();

    AtomicFileWriter out(path);
    out.write(kBittMagic, 4);
    out.write(&n, 8);
    out.write(header);
    XXH3_state_t* state = XXH3_createState();
    check(state != nullptr, ErrorKind::kInternal, "xxhash: out of memory");
    std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> guard(state, XXH3_freeState);
    XXH3_64bits_reset(state);
    write_safetensors(out, body, [&](std::span<const uint8_t> bytes) {
        XXH3_64bits_update(state, bytes.data(), bytes.size());
    });
    std::string final_header =
        header_text(c, tokenizer, body.total_bytes(), XXH3_64bits_digest(state));
    check(final_header.size() <= header.size(), ErrorKind::kInternal,
          "{}: header grew while writing", path);
    final_header.append(header.size() - final_header.size(), ' ');
    out.overwrite(kPrefixBytes, final_header.data(), final_header.size());
    out.commit();
}

}  // namespace bitttt::io
