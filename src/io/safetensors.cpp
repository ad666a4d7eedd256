#include "io/safetensors.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "core/error.hpp"
#include "io/atomic_file.hpp"
#include "io/json_text.hpp"

namespace bitttt::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this reader assumes a little-endian host");

namespace {

constexpr std::size_t kMaxDims = 16;

uint64_t load_le64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

// numel = product of dims, or nullopt if it exceeds 2^62 (no real tensor comes close).
std::optional<int64_t> checked_numel(const std::vector<int64_t>& shape) {
    uint64_t n = 1;
    for (int64_t d : shape) {
        if (d < 0) return std::nullopt;
        if (d != 0 && n > (uint64_t{1} << 62) / static_cast<uint64_t>(d)) return std::nullopt;
        n *= static_cast<uint64_t>(d);
    }
    return static_cast<int64_t>(n);
}

std::string shape_text(const std::vector<int64_t>& shape) {
    return fmt::format("[{}]", fmt::join(shape, ", "));
}

// Reads one tensor entry of the header; `data_bytes` is the size of the data section.
TensorView parse_entry(const std::string& name, const nlohmann::json& entry, uint64_t data_bytes,
                       const std::string& src, uint64_t* begin_out, uint64_t* end_out) {
    check(!name.empty(), ErrorKind::kFormat, "{}: a tensor has an empty name", src);
    check(entry.is_object(), ErrorKind::kFormat, "{}: tensor '{}': entry is not a JSON object", src,
          name);
    TensorView t;
    t.name = name;
    bool has_dtype = false, has_shape = false, has_offsets = false;
    uint64_t begin = 0, end = 0;
    for (const auto& [key, value] : entry.items()) {
        if (key == "dtype") {
            check(value.is_string(), ErrorKind::kFormat, "{}: tensor '{}': dtype is not a string",
                  src, name);
            auto dtype = parse_dtype(value.get<std::string>());
            check(dtype.has_value(), ErrorKind::kFormat,
                  "{}: tensor '{}' has dtype {}, which is not supported (F32, BF16, F16, U8)", src,
                  name, value.dump());
            t.dtype = *dtype;
            has_dtype = true;
        } else if (key == "shape") {
            check(value.is_array() && value.size() <= kMaxDims, ErrorKind::kFormat,
                  "{}: tensor '{}': shape must be an array of at most {} dimensions", src, name,
                  kMaxDims);
            for (const auto& d : value) {
                check(d.is_number_unsigned() && d.get<uint64_t>() <= (uint64_t{1} << 62),
                      ErrorKind::kFormat,
                      "{}: tensor '{}': shape {} must hold non-negative integers", src, name,
                      value.dump());
                t.shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
            }
            has_shape = true;
        } else if (key == "data_offsets") {
            check(value.is_array() && value.size() == 2 && value[0].is_number_unsigned() &&
                      value[1].is_number_unsigned(),
                  ErrorKind::kFormat,
                  "{}: tensor '{}': data_offsets must be two non-negative integers, got {}", src,
                  name, value.dump());
            begin = value[0].get<uint64_t>();
            end = value[1].get<uint64_t>();
            has_offsets = true;
        } else {
            fail(ErrorKind::kFormat, "{}: tensor '{}': unknown key '{}'", src, name, key);
        }
    }
    check(has_dtype && has_shape && has_offsets, ErrorKind::kFormat,
          "{}: tensor '{}': missing '{}'", src, name,
          !has_dtype ? "dtype" : (!has_shape ? "shape" : "data_offsets"));
    check(begin <= end, ErrorKind::kFormat,
          "{}: tensor '{}': data_offsets [{}, {}] end before they begin", src, name, begin, end);
    check(end <= data_bytes, ErrorKind::kFormat,
          "{}: tensor '{}': data_offsets [{}, {}] run past the end of the data ({} bytes): "
          "truncated file?",
          src, name, begin, end, data_bytes);
    auto numel = checked_numel(t.shape);
    check(numel.has_value(), ErrorKind::kFormat, "{}: tensor '{}': shape {} is too large", src,
          name, shape_text(t.shape));
    t.numel = *numel;
    uint64_t expected = 0;
    bool overflow = __builtin_mul_overflow(static_cast<uint64_t>(t.numel),
                                           static_cast<uint64_t>(dtype_size(t.dtype)), &expected);
    check(!overflow && expected == end - begin, ErrorKind::kFormat,
          "{}: tensor '{}': {} {} needs {} bytes but data_offsets [{}, {}] hold {}", src, name,
          dtype_name(t.dtype), shape_text(t.shape),
          overflow ? std::string("too many") : std::to_string(expected), begin, end, end - begin);
    *begin_out = begin;
    *end_out = end;
    return t;
}

}  // namespace

std::string_view dtype_name(DType dtype) {
    switch (dtype) {
        case DType::kF32:
            return "F32";
        case DType::kBF16:
            return "BF16";
        case DType::kF16:
            return "F16";
        case DType::kU8:
            return "U8";
    }
    return "?";
}

std::size_t dtype_size(DType dtype) {
    switch (dtype) {
        case DType::kF32:
            return 4;
        case DType::kBF16:
        case DType::kF16:
            return 2;
        case DType::kU8:
            return 1;
    }
    return 1;
}

std::optional<DType> parse_dtype(std::string_view name) {
    for (DType d : {DType::kF32, DType::kBF16, DType::kF16, DType::kU8})
        if (dtype_name(d) == name) return d;
    return std::nullopt;
}

SafetensorsView SafetensorsView::parse(std::span<const uint8_t> bytes, std::string source) {
    SafetensorsView v;
    v.source_ = std::move(source);
    const std::string& src = v.source_;
    check(bytes.size() >= 8, ErrorKind::kFormat,
          "{}: too short for safetensors ({} bytes; the header length alone takes 8)", src,
          bytes.size());
    const uint64_t n = load_le64(bytes.data());
    check(n <= kMaxSafetensorsHeaderBytes, ErrorKind::kFormat,
          "{}: header length {} is too large (limit {} bytes)", src, n, kMaxSafetensorsHeaderBytes);
    check(n <= bytes.size() - 8, ErrorKind::kFormat,
          "{}: header length {} runs past the end of the file ({} bytes): truncated file?", src, n,
          bytes.size());
    const std::string_view text(reinterpret_cast<const char*>(bytes.data() + 8), n);
    const nlohmann::json header = parse_json_checked(text, src + ": header");
    check(header.is_object(), ErrorKind::kFormat, "{}: header is not a JSON object", src);

    v.data_offset_ = 8 + n;
    const uint64_t data_bytes = bytes.size() - v.data_offset_;
    const uint8_t* data = bytes.data() + v.data_offset_;
    struct Range {
        uint64_t begin, end;
        std::size_t index;
    };
    std::vector<Range> ranges;
    for (const auto& [key, value] : header.items()) {
        if (key == "__metadata__") {
            check(value.is_object(), ErrorKind::kFormat,
                  "{}: __metadata__ must be an object of strings", src);
            for (const auto& [mk, mv] : value.items()) {
                check(mv.is_string(), ErrorKind::kFormat,
                      "{}: __metadata__ value of '{}' is not a string", src, mk);
                v.metadata_[mk] = mv.get<std::string>();
            }
            continue;
        }
        uint64_t begin = 0, end = 0;
        TensorView t = parse_entry(key, value, data_bytes, src, &begin, &end);
        t.data = {data + begin, static_cast<std::size_t>(end - begin)};
        ranges.push_back({begin, end, v.tensors_.size()});
        v.tensors_.push_back(std::move(t));
    }

    // The tensors must tile the data section exactly: sorted by offset, each begins where the
    // previous one ended, and the last one ends at the end of the file.
    std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    uint64_t expected = 0;
    const TensorView* previous = nullptr;
    for (const Range& r : ranges) {
        const TensorView& t = v.tensors_[r.index];
        check(r.begin >= expected, ErrorKind::kFormat,
              "{}: tensor '{}' (bytes {}..{}) overlaps tensor '{}'", src, t.name, r.begin, r.end,
              previous ? previous->name : "");
        check(r.begin == expected, ErrorKind::kFormat,
              "{}: {} unused bytes before tensor '{}' (data must be contiguous)", src,
              r.begin - expected, t.name);
        expected = r.end;
        previous = &t;
    }
    check(expected == data_bytes, ErrorKind::kFormat,
          "{}: {} bytes after the last tensor's data (the file is longer than its header says)",
          src, data_bytes - expected);

    std::vector<TensorView> sorted;
    sorted.reserve(ranges.size());
    for (const Range& r : ranges) sorted.push_back(std::move(v.tensors_[r.index]));
    v.tensors_ = std::move(sorted);
    for (std::size_t i = 0; i < v.tensors_.size(); ++i) v.index_[v.tensors_[i].name] = i;
    return v;
}

const TensorView* SafetensorsView::find(std::string_view name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorView& SafetensorsView::at(std::string_view name) const {
    const TensorView* t = find(name);
    check(t != nullptr, ErrorKind::kFormat, "{}: missing tensor '{}'", source_, name);
    return *t;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
    SafetensorsFile f;
    f.file = MappedFile::open(path);
    f.view = SafetensorsView::parse(f.file->bytes(), path);
    return f;
}

// ---- conversions ----

float bf16_to_f32(uint16_t bits) {
    return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

float f16_to_f32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in fp32
        float v = std::ldexp(static_cast<float>(mant), -24);
        return sign ? -v : v;
    }
    if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));  // inf, NaN
    // Normal: rebias the exponent from 15 to 127 and widen the mantissa from 10 to 23 bits.
    return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t f32_to_bf16(float value) {
    uint32_t x = std::bit_cast<uint32_t>(value);
    if ((x & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((x >> 16) | 0x40);  // quiet NaN
    // Round to nearest even on the 16 dropped bits; a carry into the exponent is correct
    // rounding (up to the next binade, or to infinity).
    x += 0x7fff + ((x >> 16) & 1);
    return static_cast<uint16_t>(x >> 16);
}

uint16_t f32_to_f16(float value) {
    uint32_t x = std::bit_cast<uint32_t>(value);
    const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
    x &= 0x7fffffff;
    if (x > 0x7f800000) return sign | 0x7e00;   // NaN (quiet)
    if (x >= 0x477ff000) return sign | 0x7c00;  // >= 65520 rounds to infinity (and inf itself)
    if (x >= 0x38800000) {                      // normal in f16: >= 2^-14
        x += 0xfff + ((x >> 13) & 1);           // round to nearest even on 13 dropped bits
        return sign | static_cast<uint16_t>((x - (112u << 23)) >> 13);
    }
    // Subnormal f16 (or zero): the value is m * 2^-24 with m = round(|v| * 2^24); scaling by a
    // power of two is exact, nearbyint rounds half to even, and m = 1024 is the smallest normal.
    const float m = std::nearbyint(std::bit_cast<float>(x) * 16777216.0f);
    return sign | static_cast<uint16_t>(m);
}

void tensor_to_f32(const TensorView& t, float* out, std::string_view source) {
    const uint8_t* p = t.data.data();
    const std::size_t n = static_cast<std::size_t>(t.numel);
    switch (t.dtype) {
        case DType::kF32:
            if (n) std::memcpy(out, p, n * 4);
            return;
        case DType::kBF16:
        case DType::kF16:
            for (std::size_t i = 0; i < n; ++i) {
                uint16_t h;
                std::memcpy(&h, p + 2 * i, 2);
                out[i] = t.dtype == DType::kBF16 ? bf16_to_f32(h) : f16_to_f32(h);
            }
            return;
        case DType::kU8:
            break;
    }
    fail(ErrorKind::kFormat, "{}: tensor '{}' has dtype {}, expected a floating-point dtype",
         source, t.name, dtype_name(t.dtype));
}

void f32_to_dtype(const float* in, std::size_t n, DType dtype, uint8_t* out) {
    switch (dtype) {
        case DType::kF32:
            if (n) std::memcpy(out, in, n * 4);
            return;
        case DType::kBF16:
        case DType::kF16:
            for (std::size_t i = 0; i < n; ++i) {
                uint16_t h = dtype == DType::kBF16 ? f32_to_bf16(in[i]) : f32_to_f16(in[i]);
                std::memcpy(out + 2 * i, &h, 2);
            }
            return;
        case DType::kU8:
            break;
    }
    fail(ErrorKind::kInvalidArgument, "cannot encode floats as {}", dtype_name(dtype));
}

// ---- writer ----

uint64_t TensorToWrite::byte_size() const {
    auto numel = checked_numel(shape);
    check(numel.has_value(), ErrorKind::kInvalidArgument, "tensor '{}': bad shape {}", name,
          shape_text(shape));
    return static_cast<uint64_t>(*numel) * dtype_size(dtype);
}

SafetensorsLayout layout_safetensors(std::vector<TensorToWrite> tensors,
                                     const std::map<std::string, std::string>& metadata,
                                     std::size_t alignment, uint64_t file_offset) {
    check(alignment >= 1 && (alignment & (alignment - 1)) == 0, ErrorKind::kInvalidArgument,
          "safetensors alignment {} is not a power of two", alignment);
    std::map<std::string_view, int> seen;
    for (const TensorToWrite& t : tensors) {
        check(!t.name.empty() && t.name != "__metadata__", ErrorKind::kInvalidArgument,
              "invalid tensor name '{}'", t.name);
        check(seen.emplace(t.name, 0).second, ErrorKind::kInvalidArgument,
              "tensor '{}' is given twice", t.name);
        check(t.shape.size() <= kMaxDims, ErrorKind::kInvalidArgument,
              "tensor '{}' has too many dimensions", t.name);
        const uint64_t size = t.byte_size();
        check(t.produce || t.bytes.size() == size, ErrorKind::kInvalidArgument,
              "tensor '{}': {} {} needs {} bytes, got {}", t.name, dtype_name(t.dtype),
              shape_text(t.shape), size, t.bytes.size());
    }
    // Aligned sizes first (each keeps the next one aligned), then by element size.
    std::stable_sort(tensors.begin(), tensors.end(),
                     [&](const TensorToWrite& a, const TensorToWrite& b) {
                         auto rank = [&](const TensorToWrite& t) {
                             return t.byte_size() % alignment == 0 ? 0 : 16 - dtype_size(t.dtype);
                         };
                         return rank(a) < rank(b);
                     });
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    SafetensorsLayout layout;
    for (const TensorToWrite& t : tensors) {
        const uint64_t size = t.byte_size();
        header[t.name] = {{"dtype", dtype_name(t.dtype)},
                          {"shape", t.shape},
                          {"data_offsets", {layout.data_bytes, layout.data_bytes + size}}};
        layout.data_bytes += size;
    }
    std::string text;
    try {
        text = header.dump();
    } catch (const nlohmann::json::exception& e) {
        fail(ErrorKind::kInvalidArgument, "safetensors header: {}", e.what());
    }
    const uint64_t unpadded = file_offset + 8 + text.size();
    text.append((alignment - unpadded % alignment) % alignment, ' ');
    const uint64_t n = text.size();
    layout.header.assign(reinterpret_cast<const char*>(&n), 8);
    layout.header += text;
    layout.tensors = std::move(tensors);
    return layout;
}

void write_safetensors(AtomicFileWriter& out, const SafetensorsLayout& layout,
                       const std::function<void(std::span<const uint8_t>)>& on_bytes) {
    auto emit = [&](std::span<const uint8_t> bytes) {
        out.write(bytes);
        if (on_bytes) on_bytes(bytes);
    };
    emit({reinterpret_cast<const uint8_t*>(layout.header.data()), layout.header.size()});
    std::vector<uint8_t> scratch;
    for (const TensorToWrite& t : layout.tensors) {
        if (!t.produce) {
            emit(t.bytes);
            continue;
        }
        scratch.assign(static_cast<std::size_t>(t.byte_size()), 0);
        t.produce(scratch.data());
        emit(scratch);
    }
}

void write_safetensors(const std::string& path, std::vector<TensorToWrite> tensors,
                       const std::map<std::string, std::string>& metadata, std::size_t alignment) {
    SafetensorsLayout layout = layout_safetensors(std::move(tensors), metadata, alignment);
    AtomicFileWriter out(path);
    write_safetensors(out, layout);
    out.commit();
}

}  // namespace bitttt::io
