// tokenizer.json <-> Tokenizer::Impl. Reading is strict: every field is type-checked, and any
// setting that would make the `tokenizers` package encode differently from us is an error that
// names the file and the field.
#include <fmt/format.h>

#include <initializer_list>

#include "core/error.hpp"
#include "tokenizer/tokenizer_impl.hpp"

namespace bitttt::tok {

namespace {

// Reading uses std::map objects (a 50K-key vocabulary parses in O(n log n)); writing uses
// ordered objects to keep the package's field order and the vocabulary in id order.
using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

// Where we are in the file, for error messages: "<origin>: model.merges[12]: ...".
struct Ctx {
    std::string_view origin;
    std::string path;
    Ctx at(std::string_view key) const {
        return {origin, path.empty() ? std::string(key) : fmt::format("{}.{}", path, key)};
    }
    Ctx index(size_t i) const { return {origin, fmt::format("{}[{}]", path, i)}; }
    template <typename... Args>
    [[noreturn]] void fail_format(fmt::format_string<Args...> format, Args&&... args) const {
        fail(ErrorKind::kFormat, "{}: {}: {}", origin, path,
             fmt::format(format, std::forward<Args>(args)...));
    }
    template <typename... Args>
    [[noreturn]] void fail_unsupported(fmt::format_string<Args...> format, Args&&... args) const {
        fail(ErrorKind::kUnsupported, "{}: {}: {}", origin, path,
             fmt::format(format, std::forward<Args>(args)...));
    }
};

const Json* find(const Json& object, std::string_view key) {
    auto it = object.find(key);
    return it == object.end() ? nullptr : &*it;
}

void require_object(const Json& j, const Ctx& ctx) {
    if (!j.is_object()) ctx.fail_format("expected an object, found {}", j.type_name());
}

// Rejects keys we do not know: they could ask for behavior we would silently ignore.
void check_keys(const Json& object, std::initializer_list<std::string_view> known, const Ctx& ctx) {
    for (auto it = object.begin(); it != object.end(); ++it) {
        bool ok = false;
        for (std::string_view k : known) ok = ok || it.key() == k;
        if (!ok) ctx.at(it.key()).fail_unsupported("unknown field");
    }
}

bool get_bool(const Json& object, std::string_view key, bool fallback, const Ctx& ctx) {
    const Json* j = find(object, key);
    if (!j || j->is_null()) return fallback;
    if (!j->is_boolean())
        ctx.at(key).fail_format("expected true or false, found {}", j->type_name());
    return j->get<bool>();
}

std::string get_string(const Json& j, const Ctx& ctx) {
    if (!j.is_string()) ctx.fail_format("expected a string, found {}", j.type_name());
    return j.get<std::string>();
}

uint32_t get_id(const Json& j, const Ctx& ctx) {
    if (!j.is_number_unsigned() || j.get<uint64_t>() >= (1u << 31)) {
        ctx.fail_format("expected a token id (an integer in [0, 2^31)), found {}", j.dump());
    }
    return static_cast<uint32_t>(j.get<uint64_t>());
}

std::string get_type(const Json& object, const Ctx& ctx) {
    require_object(object, ctx);
    const Json* type = find(object, "type");
    if (!type) ctx.fail_format("missing field 'type'");
    return get_string(*type, ctx.at("type"));
}

void parse_normalizer(const Json& j, const Ctx& ctx) {
    if (j.is_null()) return;
    std::string type = get_type(j, ctx);
    if (type == "Sequence") {
        const Json* list = find(j, "normalizers");
        if (list && list->is_array() && list->empty()) return;
    }
    ctx.fail_unsupported("normalizer '{}' is not supported (only null)", type);
}

SplitBehavior parse_behavior(const Json& j, const Ctx& ctx) {
    std::string name = get_string(j, ctx);
    if (name == "Removed") return SplitBehavior::kRemoved;
    if (name == "Isolated") return SplitBehavior::kIsolated;
    if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
    if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
    if (name == "Contiguous") return SplitBehavior::kContiguous;
    ctx.fail_format("unknown split behavior '{}'", name);
}

void parse_pre_tokenizer(const Json& j, const Ctx& ctx, PreTokenizer& pre, int depth = 0) {
    if (j.is_null()) return;
    // Bounds the recursion on hostile files (Sequence inside Sequence ...).
    if (depth > 16) ctx.fail_unsupported("pre-tokenizers nested more than 16 deep");
    std::string type = get_type(j, ctx);
    const std::string what = fmt::format("{}: {}", ctx.origin, ctx.path);
    try {
        if (type == "Sequence") {
            check_keys(j, {"type", "pretokenizers"}, ctx);
            const Json* list = find(j, "pretokenizers");
            if (!list || !list->is_array())
                ctx.at("pretokenizers").fail_format("expected an array");
            for (size_t i = 0; i < list->size(); ++i) {
                parse_pre_tokenizer((*list)[i], ctx.at("pretokenizers").index(i), pre, depth + 1);
            }
        } else if (type == "ByteLevel") {
            check_keys(j, {"type", "add_prefix_space", "trim_offsets", "use_regex"}, ctx);
            // trim_offsets changes offsets only, never ids.
            pre.add_byte_level(get_bool(j, "add_prefix_space", true, ctx),
                               get_bool(j, "use_regex", true, ctx));
        } else if (type == "Split") {
            check_keys(j, {"type", "pattern", "behavior", "invert"}, ctx);
            const Json* pattern = find(j, "pattern");
            if (!pattern || !pattern->is_object() || pattern->size() != 1) {
                ctx.at("pattern").fail_format("expected {{\"Regex\": ...}} or {{\"String\": ...}}");
            }
            std::unique_ptr<Regex> regex;
            if (const Json* r = find(*pattern, "Regex")) {
                regex = std::make_unique<Regex>(get_string(*r, ctx.at("pattern.Regex")),
                                                what + ".pattern");
            } else if (const Json* s = find(*pattern, "String")) {
                std::string literal = get_string(*s, ctx.at("pattern.String"));
                if (literal.empty()) ctx.at("pattern.String").fail_unsupported("empty string");
                regex = std::make_unique<Regex>(Regex::literal(literal, what + ".pattern"));
            } else {
                ctx.at("pattern").fail_format("expected {{\"Regex\": ...}} or {{\"String\": ...}}");
            }
            const Json* behavior = find(j, "behavior");
            if (!behavior) ctx.fail_format("missing field 'behavior'");
            pre.add_split(std::move(regex), parse_behavior(*behavior, ctx.at("behavior")),
                          get_bool(j, "invert", false, ctx));
        } else {
            ctx.fail_unsupported("pre-tokenizer '{}' is not supported", type);
        }
    } catch (const Error& e) {
        // PreTokenizer's own checks (ByteLevel last) do not know the file: add it.
        if (std::string_view(e.what()).starts_with(ctx.origin)) throw;
        fail(e.kind(), "{}: {}: {}", ctx.origin, ctx.path, e.what());
    }
}

DecoderKind parse_decoder(const Json& j, const Ctx& ctx, int depth = 0) {
    if (j.is_null()) return DecoderKind::kNone;
    if (depth > 16) ctx.fail_unsupported("decoders nested more than 16 deep");
    std::string type = get_type(j, ctx);
    if (type == "ByteLevel") return DecoderKind::kByteLevel;
    if (type == "Sequence") {
        const Json* list = find(j, "decoders");
        if (list && list->is_array() && list->size() == 1) {
            return parse_decoder((*list)[0], ctx.at("decoders").index(0), depth + 1);
        }
    }
    ctx.fail_unsupported("decoder '{}' is not supported (only ByteLevel or null)", type);
}

void parse_post_processor(const Json& j, const Ctx& ctx, int depth = 0) {
    if (j.is_null()) return;
    if (depth > 16) ctx.fail_unsupported("post-processors nested more than 16 deep");
    std::string type = get_type(j, ctx);
    // ByteLevel post-processing only trims offsets; anything that adds tokens is unsupported.
    if (type == "ByteLevel") return;
    if (type == "Sequence") {
        const Json* list = find(j, "processors");
        if (list && list->is_array()) {
            for (size_t i = 0; i < list->size(); ++i) {
                parse_post_processor((*list)[i], ctx.at("processors").index(i), depth + 1);
            }
            return;
        }
    }
    ctx.fail_unsupported("post-processor '{}' is not supported (only ByteLevel or null)", type);
}

BpeModel parse_model(const Json& j, const Ctx& ctx) {
    require_object(j, ctx);
    if (const Json* type = find(j, "type")) {
        std::string name = get_string(*type, ctx.at("type"));
        if (name != "BPE")
            ctx.at("type").fail_unsupported("model '{}' is not supported (only BPE)", name);
    }
    check_keys(j,
               {"type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
                "fuse_unk", "byte_fallback", "ignore_merges", "vocab", "merges"},
               ctx);
    if (const Json* d = find(j, "dropout"); d && !d->is_null()) {
        if (!d->is_number() || d->get<double>() != 0.0)
            ctx.at("dropout").fail_unsupported("BPE dropout is not supported");
    }
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
        const Json* v = find(j, key);
        if (v && !v->is_null() && !(v->is_string() && v->get<std::string>().empty())) {
            ctx.at(key).fail_unsupported("not supported (only null)");
        }
    }
    BpeOptions options;
    if (const Json* unk = find(j, "unk_token"); unk && !unk->is_null()) {
        options.unk_token = get_string(*unk, ctx.at("unk_token"));
    }
    options.fuse_unk = get_bool(j, "fuse_unk", false, ctx);
    options.byte_fallback = get_bool(j, "byte_fallback", false, ctx);
    options.ignore_merges = get_bool(j, "ignore_merges", false, ctx);

    const Json* vocab_json = find(j, "vocab");
    if (!vocab_json || !vocab_json->is_object()) ctx.at("vocab").fail_format("expected an object");
    std::vector<std::pair<std::string, uint32_t>> vocab;
    vocab.reserve(vocab_json->size());
    for (auto it = vocab_json->begin(); it != vocab_json->end(); ++it) {
        vocab.emplace_back(it.key(), get_id(it.value(), ctx.at("vocab").at(it.key())));
    }

    std::vector<std::pair<std::string, std::string>> merges;
    if (const Json* merges_json = find(j, "merges"); merges_json && !merges_json->is_null()) {
        if (!merges_json->is_array()) ctx.at("merges").fail_format("expected an array");
        merges.reserve(merges_json->size());
        for (size_t i = 0; i < merges_json->size(); ++i) {
            const Json& m = (*merges_json)[i];
            const Ctx mctx = ctx.at("merges").index(i);
            if (m.is_string()) {
                // Legacy form "left right": exactly one space.
                std::string s = m.get<std::string>();
                size_t space = s.find(' ');
                if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
                    mctx.fail_format("expected \"left right\", found \"{}\"", s);
                }
                merges.emplace_back(s.substr(0, space), s.substr(space + 1));
            } else if (m.is_array() && m.size() == 2) {
                merges.emplace_back(get_string(m[0], mctx.index(0)),
                                    get_string(m[1], mctx.index(1)));
            } else {
                mctx.fail_format("expected \"left right\" or [left, right]");
            }
        }
    }
    return BpeModel(std::move(vocab), std::move(merges), std::move(options),
                    fmt::format("{}", ctx.origin));
}

void parse_added_tokens(const Json& j, const Ctx& ctx, std::vector<AddedToken>& added) {
    if (j.is_null()) return;
    if (!j.is_array()) ctx.fail_format("expected an array");
    for (size_t i = 0; i < j.size(); ++i) {
        const Json& t = j[i];
        const Ctx tctx = ctx.index(i);
        require_object(t, tctx);
        check_keys(t, {"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"},
                   tctx);
        AddedToken token;
        const Json* id = find(t, "id");
        const Json* content = find(t, "content");
        if (!id || !content) tctx.fail_format("needs 'id' and 'content'");
        token.id = get_id(*id, tctx.at("id"));
        if (token.id >= (1u << 24)) tctx.at("id").fail_format("id {} is >= 2^24", token.id);
        token.content = get_string(*content, tctx.at("content"));
        if (token.content.empty()) tctx.at("content").fail_format("empty token");
        for (const char* flag : {"single_word", "lstrip", "rstrip"}) {
            if (get_bool(t, flag, false, tctx)) tctx.at(flag).fail_unsupported("must be false");
        }
        token.special = get_bool(t, "special", false, tctx);
        // The package's default: special tokens are not normalized, others are.
        token.normalized = get_bool(t, "normalized", !token.special, tctx);
        for (const AddedToken& other : added) {
            if (other.id == token.id && other.content != token.content) {
                tctx.at("id").fail_format("id {} is already used by '{}'", token.id, other.content);
            }
        }
        added.push_back(std::move(token));
    }
}

}  // namespace

std::shared_ptr<Tokenizer::Impl> parse_tokenizer_json(std::string_view text,
                                                      std::string_view origin) {
    Json root;
    try {
        root = Json::parse(text.begin(), text.end());
    } catch (const nlohmann::json::exception& e) {
        fail(ErrorKind::kFormat, "{}: invalid JSON: {}", origin, e.what());
    }
    const Ctx ctx{origin, ""};
    if (!root.is_object())
        fail(ErrorKind::kFormat, "{}: expected a JSON object at the top", origin);
    check_keys(root,
               {"version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer",
                "post_processor", "decoder", "model"},
               ctx);
    for (const char* key : {"truncation", "padding"}) {
        const Json* v = find(root, key);
        if (v && !v->is_null()) ctx.at(key).fail_unsupported("not supported (only null)");
    }
    const Json* model = find(root, "model");
    if (!model) fail(ErrorKind::kFormat, "{}: missing field 'model'", origin);
    static const Json kNull = nullptr;
    auto field = [&](const char* key) -> const Json& {
        const Json* v = find(root, key);
        return v ? *v : kNull;
    };

    auto impl = std::make_shared<Tokenizer::Impl>(parse_model(*model, ctx.at("model")));
    parse_added_tokens(field("added_tokens"), ctx.at("added_tokens"), impl->added);
    parse_normalizer(field("normalizer"), ctx.at("normalizer"));
    parse_pre_tokenizer(field("pre_tokenizer"), ctx.at("pre_tokenizer"), impl->pre_tokenizer);
    parse_post_processor(field("post_processor"), ctx.at("post_processor"));
    impl->decoder = parse_decoder(field("decoder"), ctx.at("decoder"));
    impl->normalizer_json = field("normalizer");
    impl->pre_tokenizer_json = field("pre_tokenizer");
    impl->post_processor_json = field("post_processor");
    impl->decoder_json = field("decoder");
    impl->finalize();
    return impl;
}

std::string write_tokenizer_json(const Tokenizer::Impl& impl) {
    OrderedJson root = OrderedJson::object();
    root["version"] = "1.0";
    root["truncation"] = nullptr;
    root["padding"] = nullptr;
    OrderedJson added = OrderedJson::array();
    for (const AddedToken& t : impl.added) {
        added.push_back({{"id", t.id},
                         {"content", t.content},
                         {"single_word", false},
                         {"lstrip", false},
                         {"rstrip", false},
                         {"normalized", t.normalized},
                         {"special", t.special}});
    }
    root["added_tokens"] = std::move(added);
    root["normalizer"] = OrderedJson(impl.normalizer_json);
    root["pre_tokenizer"] = OrderedJson(impl.pre_tokenizer_json);
    root["post_processor"] = OrderedJson(impl.post_processor_json);
    root["decoder"] = OrderedJson(impl.decoder_json);

    const BpeModel& m = impl.model;
    OrderedJson model = OrderedJson::object();
    model["type"] = "BPE";
    model["dropout"] = nullptr;
    model["unk_token"] =
        m.options().unk_token ? OrderedJson(*m.options().unk_token) : OrderedJson(nullptr);
    model["continuing_subword_prefix"] = nullptr;
    model["end_of_word_suffix"] = nullptr;
    model["fuse_unk"] = m.options().fuse_unk;
    model["byte_fallback"] = m.options().byte_fallback;
    model["ignore_merges"] = m.options().ignore_merges;
    // Appended straight to the underlying vector: ordered_json's operator[] searches linearly,
    // which is quadratic over a whole vocabulary. Keys are unique (checked at construction).
    OrderedJson vocab = OrderedJson::object();
    auto& entries =
        static_cast<OrderedJson::object_t::Container&>(vocab.get_ref<OrderedJson::object_t&>());
    for (uint32_t id = 0; id < m.id_limit(); ++id) {
        if (const std::string* token = m.id_to_token(id)) entries.emplace_back(*token, id);
    }
    model["vocab"] = std::move(vocab);
    OrderedJson merges = OrderedJson::array();
    for (const auto& [left, right] : m.merges())
        merges.push_back(OrderedJson::array({left, right}));
    model["merges"] = std::move(merges);
    root["model"] = std::move(model);
    return root.dump(2, ' ', false);
}

}  // namespace bitttt::tok
