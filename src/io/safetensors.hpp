// safetensors (https://github.com/huggingface/safetensors): an 8-byte little-endian header
// length N, N bytes of UTF-8 JSON {name: {dtype, shape, data_offsets: [begin, end]},
// "__metadata__": {string: string}}, then the data section; offsets are relative to the start of
// the data section, and the tensors tile it exactly (no gaps, no overlaps, nothing after them),
// which is what the reference implementation enforces too.
//
// The reader works on any byte span, so the .bitt reader uses it on its body; it validates the
// whole header before anything is used and every error names the source and the problem.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/mapped_file.hpp"

namespace bitttt::io {

class AtomicFileWriter;

enum class DType : uint8_t { kF32, kBF16, kF16, kU8 };
std::string_view dtype_name(DType dtype);  // "F32", "BF16", "F16", "U8"
std::size_t dtype_size(DType dtype);
std::optional<DType> parse_dtype(std::string_view name);

// Headers larger than this are rejected before they are read (the reference uses the same bound).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// One tensor of a parsed file: its bytes point into the span that was parsed.
struct TensorView {
    std::string name;
    DType dtype = DType::kF32;
    std::vector<int64_t> shape;
    int64_t numel = 0;
    std::span<const uint8_t> data;  // numel * dtype_size bytes, any alignment
};

class SafetensorsView {
  public:
    // Parses and validates `bytes` (which must outlive the view); `source` names it in errors.
    static SafetensorsView parse(std::span<const uint8_t> bytes, std::string source);

    const std::vector<TensorView>& tensors() const { return tensors_; }  // in data order
    const TensorView* find(std::string_view name) const;
    const TensorView& at(std::string_view name) const;  // throws Error naming source and name
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    const std::string& source() const { return source_; }
    std::size_t data_offset() const { return data_offset_; }  // start of data within the span

  private:
    std::string source_;
    std::vector<TensorView> tensors_;
    std::map<std::string, std::size_t, std::less<>> index_;
    std::map<std::string, std::string> metadata_;
    std::size_t data_offset_ = 0;
};

// A mapped .safetensors file; `view` points into `file`.
struct SafetensorsFile {
    std::shared_ptr<const MappedFile> file;
    SafetensorsView view;
    static SafetensorsFile open(const std::string& path);
};

// ---- conversions (IEEE binary16 and bfloat16; round to nearest even, NaN stays NaN) ----
float bf16_to_f32(uint16_t bits);
float f16_to_f32(uint16_t bits);
uint16_t f32_to_bf16(float value);
uint16_t f32_to_f16(float value);  // beyond the f16 range gives +-inf
// Converts a floating-point tensor (F32, BF16, F16) to fp32; out has t.numel elements.
// A U8 tensor is an error naming `source` and the tensor.
void tensor_to_f32(const TensorView& t, float* out, std::string_view source);
// Encodes n floats as `dtype` (F32, BF16 or F16) into n * dtype_size(dtype) bytes.
void f32_to_dtype(const float* in, std::size_t n, DType dtype, uint8_t* out);

// ---- writer ----
struct TensorToWrite {
    std::string name;
    DType dtype = DType::kF32;
    std::vector<int64_t> shape;
    // Either the bytes (numel * dtype_size), or a function that writes them into a buffer of
    // that size when the writer gets to this tensor (so a converted copy of a large model never
    // has to exist in memory all at once).
    std::span<const uint8_t> bytes;
    std::function<void(uint8_t* out)> produce;

    uint64_t byte_size() const;  // numel * dtype_size, checked
};

// The header and order of a file before it is written. `alignment` (a power of two) pads the
// header with spaces so the data section starts at a multiple of it counted from the start of the
// enclosing file (`file_offset` is where the safetensors part begins there); tensors whose size
// is a multiple of the alignment come first so that each of them starts aligned, then the rest
// ordered by element size (largest first) so each is aligned to its own element size.
struct SafetensorsLayout {
    std::string header;                  // 8-byte length + JSON + space padding
    std::vector<TensorToWrite> tensors;  // in data order
    uint64_t data_bytes = 0;
    uint64_t total_bytes() const { return header.size() + data_bytes; }
};
SafetensorsLayout layout_safetensors(std::vector<TensorToWrite> tensors,
                                     const std::map<std::string, std::string>& metadata,
                                     std::size_t alignment = 8, uint64_t file_offset = 0);
// Streams a layout to `out`; `on_bytes` (optional) sees every byte written, in order.
void write_safetensors(AtomicFileWriter& out, const SafetensorsLayout& layout,
                       const std::function<void(std::span<const uint8_t>)>& on_bytes = {});
// Writes a complete .safetensors file atomically.
void write_safetensors(const std::string& path, std::vector<TensorToWrite> tensors,
                       const std::map<std::string, std::string>& metadata = {},
                       std::size_t alignment = 8);

}  // namespace bitttt::io
