// safetensors reader/writer, the mapped file and atomic writes: round trips, hand-written files
// (independent of our writer), every kind of malformed input, and random corruption.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "core/rng.hpp"
#include "io/atomic_file.hpp"
#include "io/json_text.hpp"
#include "io/mapped_file.hpp"
#include "io/safetensors.hpp"
#include "io_test_util.hpp"

namespace bitttt {
namespace {

using io::DType;
using io::SafetensorsFile;
using io::SafetensorsView;
using io::TensorToWrite;
using testing::error_of;
using testing::raw_safetensors;
using testing::read_bytes;
using testing::ScratchDir;
using testing::write_bytes;

template <typename T>
std::span<const uint8_t> as_bytes(const std::vector<T>& v) {
    return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(T)};
}

SafetensorsView parse(const std::vector<uint8_t>& bytes) {
    return SafetensorsView::parse(bytes, "test.safetensors");
}

// ---- mapped file and atomic writes ----

TEST(MappedFile, MapsContentsAndNamesTheFileInErrors) {
    ScratchDir dir;
    write_bytes(dir.file("a.bin"), {1, 2, 3});
    auto f = io::MappedFile::open(dir.file("a.bin"));
    ASSERT_EQ(f->size(), 3u);
    EXPECT_EQ(f->bytes()[2], 3);

    std::string missing = error_of([&] { io::MappedFile::open(dir.file("nope.bin")); });
    EXPECT_NE(missing.find("nope.bin: no such file"), std::string::npos) << missing;
    std::string is_dir = error_of([&] { io::MappedFile::open(dir.path().string()); });
    EXPECT_NE(is_dir.find("is a directory"), std::string::npos) << is_dir;
    write_bytes(dir.file("empty.bin"), {});
    std::string empty = error_of([&] { io::MappedFile::open(dir.file("empty.bin")); });
    EXPECT_NE(empty.find("empty.bin: file is empty"), std::string::npos) << empty;
    ASSERT_EQ(::mkfifo(dir.file("fifo").c_str(), 0600), 0);  // must not block waiting for a writer
    std::string fifo = error_of([&] { io::MappedFile::open(dir.file("fifo")); });
    EXPECT_NE(fifo.find("fifo: not a regular file"), std::string::npos) << fifo;
    if (::geteuid() != 0) {  // root reads anything
        ::chmod(dir.file("a.bin").c_str(), 0);
        std::string denied = error_of([&] { io::MappedFile::open(dir.file("a.bin")); });
        EXPECT_NE(denied.find("a.bin: cannot open"), std::string::npos) << denied;
    }
}

TEST(AtomicFile, ReplacesOnCommitAndKeepsOldFileOtherwise) {
    ScratchDir dir;
    const std::string path = dir.file("ckpt.bin");
    io::write_file_atomic(path, std::string_view("old contents"));
    {
        io::AtomicFileWriter w(path);
        w.write(std::string_view("new, never committed"));
        EXPECT_EQ(io::read_text_file(path), "old contents");  // not visible before commit
    }  // destroyed without commit: the old file stays, the temporary file is gone
    EXPECT_EQ(io::read_text_file(path), "old contents");
    {
        io::AtomicFileWriter w(path);
        w.write(std::string_view("new"));
        w.write_zeros(3);
        w.commit();
    }
    EXPECT_EQ(io::read_text_file(path), std::string("new\0\0\0", 6));
    int entries = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
        (void)e;
        ++entries;
    }
    EXPECT_EQ(entries, 1) << "temporary files left behind";

    std::string bad = error_of([&] { io::write_file_atomic(dir.file("no/such/dir/x"), "x"); });
    EXPECT_NE(bad.find("no/such/dir/x: cannot create temporary file"), std::string::npos) << bad;
    std::string onto_dir = error_of([&] { io::write_file_atomic(dir.path().string(), "x"); });
    EXPECT_NE(onto_dir.find("is a directory"), std::string::npos) << onto_dir;
}

// ---- reading ----

TEST(Safetensors, ReadsAHandWrittenFile) {
    // Written by hand from the format description, not by our writer: F32 [2] then U8 [3],
    // metadata, and a header padded with spaces as the reference writer does.
    std::vector<uint8_t> data(11);
    float f[2] = {1.5f, -2.0f};
    std::memcpy(data.data(), f, 8);
    data[8] = 7, data[9] = 8, data[10] = 9;
    auto bytes = raw_safetensors(
        R"({"__metadata__":{"format":"pt"},"b":{"dtype":"U8","shape":[3],"data_offsets":[8,11]},)"
        R"("a":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}}    )",
        data);
    SafetensorsView v = parse(bytes);
    ASSERT_EQ(v.tensors().size(), 2u);
    EXPECT_EQ(v.tensors()[0].name, "a");  // data order
    EXPECT_EQ(v.metadata().at("format"), "pt");
    const auto& a = v.at("a");
    EXPECT_EQ(a.shape, (std::vector<int64_t>{1, 2}));
    float out[2];
    io::tensor_to_f32(a, out, "x");
    EXPECT_EQ(out[0], 1.5f);
    EXPECT_EQ(out[1], -2.0f);
    EXPECT_EQ(v.at("b").data[2], 9);
    EXPECT_EQ(v.find("c"), nullptr);
    std::string missing = error_of([&] { v.at("c"); });
    EXPECT_NE(missing.find("test.safetensors: missing tensor 'c'"), std::string::npos);
    std::string not_float = error_of([&] { io::tensor_to_f32(v.at("b"), out, "f.st"); });
    EXPECT_NE(not_float.find("f.st: tensor 'b' has dtype U8"), std::string::npos) << not_float;
}

TEST(Safetensors, WriteReadRoundTripAllDtypesAndAlignment) {
    ScratchDir dir;
    Rng rng(1);
    std::vector<float> f32(37);
    for (auto& v : f32) v = rng.normal();
    std::vector<uint16_t> bf16(5), f16(6);
    for (size_t i = 0; i < bf16.size(); ++i) bf16[i] = io::f32_to_bf16(f32[i]);
    for (size_t i = 0; i < f16.size(); ++i) f16[i] = io::f32_to_f16(f32[i]);
    std::vector<uint8_t> u8(64 * 3);
    for (size_t i = 0; i < u8.size(); ++i) u8[i] = static_cast<uint8_t>(i * 7);
    const std::vector<float> scalar = {3.25f};
    std::vector<float> big(64);
    for (auto& v : big) v = rng.normal();
    std::vector<TensorToWrite> ts;
    ts.push_back({"odd.f32", DType::kF32, {37}, as_bytes(f32), {}});
    ts.push_back({"x.bf16", DType::kBF16, {5, 1}, as_bytes(bf16), {}});
    ts.push_back({"x.f16", DType::kF16, {2, 3}, as_bytes(f16), {}});
    ts.push_back({"codes", DType::kU8, {3, 64}, as_bytes(u8), {}});
    ts.push_back({"scalar", DType::kF32, {}, as_bytes(scalar), {}});
    ts.push_back({"empty", DType::kF32, {0, 4}, {}, {}});
    ts.push_back({"produced", DType::kF32, {64}, {}, [&](uint8_t* out) {
                      std::memcpy(out, big.data(), 256);
                  }});
    for (size_t alignment : {size_t{8}, size_t{64}}) {
        const std::string path = dir.file("t" + std::to_string(alignment) + ".safetensors");
        io::write_safetensors(path, ts, {{"k", "v"}, {"utf8", "\xc3\xa9"}}, alignment);
        SafetensorsFile f = SafetensorsFile::open(path);
        EXPECT_EQ(f.view.data_offset() % alignment, 0u);
        EXPECT_EQ(f.view.metadata().at("utf8"), "\xc3\xa9");
        ASSERT_EQ(f.view.tensors().size(), ts.size());
        for (const TensorToWrite& t : ts) {
            const auto& r = f.view.at(t.name);
            EXPECT_EQ(r.dtype, t.dtype) << t.name;
            EXPECT_EQ(r.shape, t.shape) << t.name;
            std::vector<uint8_t> want(t.bytes.begin(), t.bytes.end());
            if (t.produce) want.assign(as_bytes(big).begin(), as_bytes(big).end());
            EXPECT_EQ(std::vector<uint8_t>(r.data.begin(), r.data.end()), want) << t.name;
            // Tensors whose size is a multiple of the alignment start aligned in the file.
            if (r.data.size() % alignment == 0)
                EXPECT_EQ((r.data.data() - f.file->data()) % alignment, 0u) << t.name;
            else  // the rest at least at their element size
                EXPECT_EQ((r.data.data() - f.file->data()) % io::dtype_size(r.dtype), 0u);
        }
    }
    // Writer-side checks name the tensor.
    std::vector<TensorToWrite> dup = {ts[0], ts[0]};
    EXPECT_NE(error_of([&] {
                  io::write_safetensors(dir.file("d"), dup);
              }).find("tensor 'odd.f32' is given twice"),
              std::string::npos);
    std::vector<TensorToWrite> short_bytes = {{"s", DType::kF32, {38}, as_bytes(f32), {}}};
    EXPECT_NE(error_of([&] {
                  io::write_safetensors(dir.file("d"), short_bytes);
              }).find("tensor 's': F32 [38] needs 152 bytes, got 148"),
              std::string::npos);
    EXPECT_FALSE(std::filesystem::exists(dir.file("d")));
}

// ---- hostile input: each case gives an Error naming the source and the problem ----

struct BadCase {
    const char* what;
    std::vector<uint8_t> bytes;
    const char* expected;  // substring of the message
};

std::vector<uint8_t> u64_prefix(uint64_t n, const std::string& rest) {
    std::vector<uint8_t> out = raw_safetensors(rest, {});
    std::memcpy(out.data(), &n, 8);
    return out;
}

TEST(Safetensors, RejectsMalformedFilesWithClearErrors) {
    const std::vector<uint8_t> d8(8, 0);
    auto entry = [](const char* name, const char* dtype, const char* shape, int b, int e) {
        return fmt::format(R"("{}":{{"dtype":"{}","shape":{},"data_offsets":[{},{}]}})", name,
                           dtype, shape, b, e);
    };
    std::vector<BadCase> cases = {
        {"short", {1, 2, 3}, "too short for safetensors (3 bytes"},
        {"huge header", u64_prefix(uint64_t{1} << 63, "{}"),
         "header length 9223372036854775808 is too large"},
        {"header past end", u64_prefix(1000, "{}"),
         "header length 1000 runs past the end of the file"},
        {"bad json", raw_safetensors("{\"a\":", {}), "header: not valid JSON"},
        {"bad utf8", raw_safetensors("{\"\xff\":1}", {}), "header: not valid UTF-8 (byte 2)"},
        {"overlong utf8", raw_safetensors("{\"\xc0\xaf\":1}", {}), "not valid UTF-8"},
        {"not object", raw_safetensors("[1,2]", {}), "header is not a JSON object"},
        {"deep", raw_safetensors(std::string(200, '[') + std::string(200, ']'), {}),
         "nested deeper"},
        {"dtype", raw_safetensors("{" + entry("w", "I64", "[1]", 0, 8) + "}", d8),
         "tensor 'w' has dtype \"I64\", which is not supported"},
        {"past end", raw_safetensors("{" + entry("w", "F32", "[4]", 0, 16) + "}", d8),
         "tensor 'w': data_offsets [0, 16] run past the end of the data (8 bytes)"},
        {"begin>end", raw_safetensors("{" + entry("w", "U8", "[0]", 8, 4) + "}", d8),
         "tensor 'w': data_offsets [8, 4] end before they begin"},
        {"overlap",
         raw_safetensors(
             "{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "F32", "[1]", 4, 8) + "}", d8),
         "tensor 'b' (bytes 4..8) overlaps tensor 'a'"},
        {"gap", raw_safetensors("{" + entry("a", "F32", "[1]", 4, 8) + "}", d8),
         "4 unused bytes before tensor 'a'"},
        {"trailing", raw_safetensors("{" + entry("a", "F32", "[1]", 0, 4) + "}", d8),
         "4 bytes after the last tensor's data"},
        {"size mismatch", raw_safetensors("{" + entry("a", "F16", "[2,3]", 0, 8) + "}", d8),
         "tensor 'a': F16 [2, 3] needs 12 bytes but data_offsets [0, 8] hold 8"},
        {"negative dim", raw_safetensors("{" + entry("a", "U8", "[-8]", 0, 8) + "}", d8),
         "tensor 'a': shape [-8] must hold non-negative integers"},
        {"float dim", raw_safetensors("{" + entry("a", "U8", "[8.0]", 0, 8) + "}", d8),
         "must hold non-negative integers"},
        {"numel overflow",
         raw_safetensors("{" + entry("a", "F32", "[4294967296,4294967296]", 0, 8) + "}", d8),
         "tensor 'a': shape [4294967296, 4294967296] is too large"},
        {"bytes overflow",
         raw_safetensors("{" + entry("a", "F32", "[4611686018427387904]", 0, 8) + "}", d8),
         "needs too many bytes"},
        {"duplicate",
         raw_safetensors(
             "{" + entry("a", "U8", "[8]", 0, 8) + "," + entry("a", "U8", "[8]", 0, 8) + "}", d8),
         "header: duplicate key 'a'"},
        {"missing key", raw_safetensors(R"({"a":{"dtype":"U8","shape":[8]}})", d8),
         "tensor 'a': missing 'data_offsets'"},
        {"unknown key",
         raw_safetensors(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8],"x":1}})", d8),
         "tensor 'a': unknown key 'x'"},
        {"offsets type",
         raw_safetensors(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0]}})", d8),
         "data_offsets must be two non-negative integers"},
        {"metadata", raw_safetensors(R"({"__metadata__":{"k":1}})", {}),
         "__metadata__ value of 'k' is not a string"},
        {"entry type", raw_safetensors(R"({"a":3})", {}), "tensor 'a': entry is not a JSON object"},
    };
    ScratchDir dir;
    for (const BadCase& c : cases) {
        const std::string path = dir.file("bad.safetensors");
        write_bytes(path, c.bytes);
        std::string msg = error_of([&] { SafetensorsFile::open(path); });
        EXPECT_NE(msg.find(path + ": "), std::string::npos) << c.what << ": " << msg;
        EXPECT_NE(msg.find(c.expected), std::string::npos) << c.what << ": " << msg;
    }
}

// A small valid file used by the corruption loops.
std::vector<uint8_t> small_file(const ScratchDir& dir) {
    std::vector<float> a = {1, 2, 3, 4, 5};
    std::vector<uint16_t> b = {1, 2, 3};
    std::vector<uint8_t> c = {9, 8, 7, 6};
    const std::string path = dir.file("small.safetensors");
    io::write_safetensors(path,
                          {{"a", DType::kF32, {5}, as_bytes(a), {}},
                           {"b", DType::kF16, {3}, as_bytes(b), {}},
                           {"c", DType::kU8, {2, 2}, as_bytes(c), {}}},
                          {{"m", "x"}});
    return read_bytes(path);
}

TEST(Safetensors, EveryTruncationIsAnErrorNamingTheFile) {
    ScratchDir dir;
    const std::vector<uint8_t> full = small_file(dir);
    EXPECT_NO_THROW(parse(full));
    const std::string path = dir.file("cut.safetensors");
    for (size_t n = 0; n < full.size(); ++n) {
        write_bytes(path, std::vector<uint8_t>(full.begin(), full.begin() + static_cast<long>(n)));
        std::string msg = error_of([&] { SafetensorsFile::open(path); });
        EXPECT_NE(msg.find(path + ": "), std::string::npos) << "prefix " << n << ": " << msg;
    }
}

TEST(Safetensors, RandomCorruptionGivesErrorsNeverCrashes) {
    ScratchDir dir;
    const std::vector<uint8_t> full = small_file(dir);
    Rng rng(7);
    int errors = 0;
    for (int iter = 0; iter < 4000; ++iter) {
        std::vector<uint8_t> bytes = full;
        const int flips = 1 + static_cast<int>(rng.next_u64() % 3);
        for (int k = 0; k < flips; ++k) {
            size_t at = rng.next_u64() % bytes.size();
            // Mostly printable replacements, so the JSON often stays parseable and the later
            // checks (offsets, shapes, dtypes) get exercised too.
            bytes[at] = iter % 2
                            ? static_cast<uint8_t>(rng.next_u64())
                            : static_cast<uint8_t>("0123456789[]{},:\"FUB "[rng.next_u64() % 21]);
        }
        if (iter % 5 == 0) bytes.resize(rng.next_u64() % bytes.size());
        std::string msg = error_of([&] {
            SafetensorsView v = parse(bytes);
            std::vector<float> out;
            for (const auto& t : v.tensors()) {  // touch every byte a valid view points at
                if (t.dtype == DType::kU8) continue;
                out.resize(static_cast<size_t>(t.numel));
                io::tensor_to_f32(t, out.data(), "x");
            }
        });
        if (!msg.empty()) {
            ++errors;
            EXPECT_EQ(msg.rfind("test.safetensors: ", 0), 0u) << msg;
        }
    }
    EXPECT_GT(errors, 2000);  // most corruptions must be caught
}

// ---- conversions ----

// Nearest f16 to x by search over all finite f16 values (ties to the even code), an independent
// reference for f32_to_f16.
uint16_t nearest_f16(float x) {
    static std::vector<std::pair<double, uint16_t>> table = [] {
        std::vector<std::pair<double, uint16_t>> t;
        for (uint32_t h = 0; h < 0x7c00; ++h)
            t.push_back({io::f16_to_f32(uint16_t(h)), uint16_t(h)});
        return t;
    }();
    const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
    const double a = std::fabs(static_cast<double>(x));
    if (a >= 65520.0) return sign | 0x7c00;  // halfway to the next binade rounds to inf
    auto it = std::lower_bound(table.begin(), table.end(), std::make_pair(a, uint16_t(0)));
    if (it == table.end()) return sign | 0x7bff;
    if (it == table.begin()) return sign | it->second;
    auto lo = it - 1;
    const double dl = a - lo->first, dh = it->first - a;
    if (dl < dh) return sign | lo->second;
    if (dh < dl) return sign | it->second;
    return sign | ((lo->second & 1) ? it->second : lo->second);
}

TEST(Conversions, F16AndBf16MatchReferences) {
    // Decoding: known values.
    EXPECT_EQ(io::f16_to_f32(0x3c00), 1.0f);
    EXPECT_EQ(io::f16_to_f32(0xc000), -2.0f);
    EXPECT_EQ(io::f16_to_f32(0x7bff), 65504.0f);
    EXPECT_EQ(io::f16_to_f32(0x0001), std::ldexp(1.0f, -24));
    EXPECT_TRUE(std::isinf(io::f16_to_f32(0x7c00)));
    EXPECT_TRUE(std::isnan(io::f16_to_f32(0x7e00)));
    EXPECT_EQ(io::bf16_to_f32(0x3f80), 1.0f);
    // Every finite f16 / bf16 survives decode + encode.
    for (uint32_t h = 0; h < 0x10000; ++h) {
        const bool nan16 = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (!nan16) {
            ASSERT_EQ(io::f32_to_f16(io::f16_to_f32(uint16_t(h))), h) << h;
        }
        const bool nan_bf = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        if (!nan_bf) {
            ASSERT_EQ(io::f32_to_bf16(io::bf16_to_f32(uint16_t(h))), h) << h;
        } else {
            ASSERT_TRUE(std::isnan(io::bf16_to_f32(io::f32_to_bf16(io::bf16_to_f32(uint16_t(h))))));
        }
    }
    // Rounding of arbitrary floats against the search reference, including exact ties.
    Rng rng(3);
    std::vector<float> xs = {1.0f + std::ldexp(1.0f, -11),
                             1.0f + 3 * std::ldexp(1.0f, -11),
                             65519.0f,
                             65520.0f,
                             1e10f,
                             std::ldexp(1.0f, -25),
                             std::ldexp(3.0f, -26),
                             std::ldexp(1.0f, -26),
                             -0.0f};
    for (int i = 0; i < 20000; ++i) {
        uint32_t bits = static_cast<uint32_t>(rng.next_u64());
        // Exponents concentrated on the f16 range (2^-26 .. 2^17).
        bits = (bits & 0x807fffff) | ((101u + bits % 44u) << 23);
        xs.push_back(std::bit_cast<float>(bits));
    }
    for (float x : xs) ASSERT_EQ(io::f32_to_f16(x), nearest_f16(x)) << x;
    for (float x : xs) {  // bf16: nearest of the two truncation neighbours, ties to even
        uint32_t b = std::bit_cast<uint32_t>(x);
        uint16_t lo = uint16_t(b >> 16), hi = uint16_t(lo + 1);
        double dl = std::fabs(double(x) - io::bf16_to_f32(lo)),
               dh = std::fabs(double(x) - io::bf16_to_f32(hi));
        uint16_t want = dl < dh ? lo : dh < dl ? hi : ((lo & 1) ? hi : lo);
        ASSERT_EQ(io::f32_to_bf16(x), want) << x;
    }
    EXPECT_TRUE(std::isnan(io::f16_to_f32(io::f32_to_f16(std::nanf("")))));
    EXPECT_TRUE(std::isnan(io::bf16_to_f32(io::f32_to_bf16(std::nanf("")))));
}

TEST(Json, Utf8ValidatorFollowsRfc3629) {
    EXPECT_FALSE(io::find_invalid_utf8("plain \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80").has_value());
    EXPECT_EQ(io::find_invalid_utf8("ab\x80"), 2u);            // lone continuation
    EXPECT_EQ(io::find_invalid_utf8("\xc0\x80"), 0u);          // overlong NUL
    EXPECT_EQ(io::find_invalid_utf8("\xe0\x80\x80"), 0u);      // overlong 3-byte
    EXPECT_EQ(io::find_invalid_utf8("x\xed\xa0\x80"), 1u);     // surrogate U+D800
    EXPECT_EQ(io::find_invalid_utf8("\xf4\x90\x80\x80"), 0u);  // > U+10FFFF
    EXPECT_EQ(io::find_invalid_utf8("\xe2\x82"), 0u);          // truncated
}

}  // namespace
}  // namespace bitttt
