// bitttt::Tokenizer: encoding (added tokens -> pre-tokenizer -> cached BPE), decoding and
// streaming decoding.
#include "bitttt/tokenizer.hpp"

#include <omp.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include "core/threads.hpp"
#include "io/atomic_file.hpp"
#include "tokenizer/byte_level.hpp"
#include "tokenizer/tokenizer_impl.hpp"
#include "tokenizer/utf8.hpp"

namespace bitttt {

namespace {

// Pre-tokens up to this many bytes are cached (longer ones are rare and rarely repeat). The cache
// is dropped when it holds too many ids, which bounds its memory per thread (~ tens of MB).
constexpr size_t kCacheMaxWordBytes = 64;
constexpr size_t kCacheMaxIds = size_t{4} << 20;

int resolve_threads(int threads) {
    return threads > 0 ? threads : num_threads();
}

}  // namespace

// ---- added tokens ------------------------------------------------------------------------------

void tok::AddedTokenMatcher::add(const AddedToken* token) {
    by_first_byte_[static_cast<unsigned char>(token->content[0])].push_back(token);
    ++count_;
}

void tok::AddedTokenMatcher::prepare() {
    for (auto& list : by_first_byte_) {
        std::stable_sort(list.begin(), list.end(), [](const AddedToken* a, const AddedToken* b) {
            return a->content.size() > b->content.size();
        });
    }
}

bool tok::AddedTokenMatcher::find(std::string_view text, size_t from, size_t& start,
                                  const AddedToken*& token) const {
    if (count_ == 0) return false;
    for (size_t i = from; i < text.size(); ++i) {
        const auto& list = by_first_byte_[static_cast<unsigned char>(text[i])];
        for (const AddedToken* t : list) {
            if (text.compare(i, t->content.size(), t->content) == 0) {
                start = i;
                token = t;
                return true;
            }
        }
    }
    return false;
}

// ---- Impl --------------------------------------------------------------------------------------

void Tokenizer::Impl::finalize() {
    uint32_t limit = model.id_limit();
    for (const auto& t : added) limit = std::max(limit, t.id + 1);
    decoded.assign(limit, {});
    special.assign(limit, 0);
    exists.assign(limit, 0);
    auto set_token = [&](uint32_t id, const std::string& token) {
        exists[id] = 1;
        decoded[id].clear();
        // The ByteLevel decoder maps a token's characters back to bytes; a token with a
        // character outside the byte alphabet (an added token such as "a b") stays as it is.
        if (decoder != tok::DecoderKind::kByteLevel ||
            !tok::byte_level_decode(decoded[id], token)) {
            decoded[id] = token;
        }
    };
    for (uint32_t id = 0; id < model.id_limit(); ++id) {
        if (const std::string* token = model.id_to_token(id)) set_token(id, *token);
    }
    for (const auto& t : added) {
        set_token(t.id, t.content);
        special[t.id] = t.special;
        (t.normalized ? match_normalized : match_plain).add(&t);
    }
    match_plain.prepare();
    match_normalized.prepare();
}

std::optional<uint32_t> Tokenizer::Impl::token_to_id(std::string_view token) const {
    for (const auto& t : added) {
        if (t.content == token) return t.id;
    }
    return model.token_to_id(token);
}

const std::string* Tokenizer::Impl::id_to_token(uint32_t id) const {
    for (const auto& t : added) {
        if (t.id == id) return &t.content;
    }
    return model.id_to_token(id);
}

std::unique_ptr<tok::EncodeScratch> Tokenizer::Impl::acquire_scratch() const {
    {
        std::lock_guard<std::mutex> lock(pool_mutex_);
        if (!pool_.empty()) {
            auto scratch = std::move(pool_.back());
            pool_.pop_back();
            return scratch;
        }
    }
    return std::make_unique<tok::EncodeScratch>();
}

void Tokenizer::Impl::release_scratch(std::unique_ptr<tok::EncodeScratch> scratch) const {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    pool_.push_back(std::move(scratch));
}

void Tokenizer::Impl::clear_scratch_pool() const {
    std::vector<std::unique_ptr<tok::EncodeScratch>> idle;
    {
        std::lock_guard<std::mutex> lock(pool_mutex_);
        idle.swap(pool_);
    }  // freed outside the lock
}

void Tokenizer::Impl::encode_plain(std::string_view text, std::vector<uint32_t>& out,
                                   tok::EncodeScratch& scratch) const {
    pre_tokenizer.run(text, scratch.pre);
    const bool byte_mapped = pre_tokenizer.byte_mapped();
    for (std::string_view piece : scratch.pre.pieces) {
        if (piece.size() > kCacheMaxWordBytes) {
            model.encode_word(piece, byte_mapped, out, scratch.bpe);
            continue;
        }
        auto it = scratch.cache.find(piece);
        if (it != scratch.cache.end()) {
            const uint32_t* ids = scratch.cache_ids.data() + it->second.first;
            out.insert(out.end(), ids, ids + it->second.second);
            continue;
        }
        const size_t before = out.size();
        model.encode_word(piece, byte_mapped, out, scratch.bpe);
        if (scratch.cache_ids.size() > kCacheMaxIds) {
            scratch.cache.clear();
            scratch.cache_ids.clear();
        }
        scratch.cache.emplace(
            std::string(piece),
            std::pair<uint32_t, uint32_t>(static_cast<uint32_t>(scratch.cache_ids.size()),
                                          static_cast<uint32_t>(out.size() - before)));
        scratch.cache_ids.insert(scratch.cache_ids.end(), out.begin() + before, out.end());
    }
}

// Added tokens are found in two rounds as in the package: first those matched on the raw text
// (normalized = false), then, in the text between them, those matched after normalization (here
// there is no normalizer, so the same text). With allow_special = false a special token's match is
// passed over as if it were text, and the search resumes after it (the package's
// encode_special_tokens).
template <typename OnText, typename OnToken>
void Tokenizer::Impl::split_added(std::string_view text, bool allow_special, OnText&& on_text,
                                  OnToken&& on_token) const {
    auto second_round = [&](std::string_view part) {
        size_t emitted = 0, from = 0, start = 0;
        const tok::AddedToken* token = nullptr;
        while (match_normalized.find(part, from, start, token)) {
            from = start + token->content.size();
            if (!allow_special && token->special) continue;
            if (start > emitted) on_text(part.substr(emitted, start - emitted));
            on_token(token->id);
            emitted = from;
        }
        if (emitted < part.size()) on_text(part.substr(emitted));
    };
    size_t emitted = 0, from = 0, start = 0;
    const tok::AddedToken* token = nullptr;
    while (match_plain.find(text, from, start, token)) {
        from = start + token->content.size();
        if (!allow_special && token->special) continue;
        if (start > emitted) second_round(text.substr(emitted, start - emitted));
        on_token(token->id);
        emitted = from;
    }
    if (emitted < text.size()) second_round(text.substr(emitted));
}

std::vector<uint32_t> Tokenizer::Impl::encode(std::string_view text, bool allow_special,
                                              tok::EncodeScratch& scratch) const {
    std::string_view valid = text;
    if (!tok::utf8_is_valid(text)) {
        scratch.sanitized.clear();
        tok::utf8_append_lossy(scratch.sanitized, text);
        valid = scratch.sanitized;
    }
    std::vector<uint32_t> out;
    out.reserve(valid.size() / 3 + 16);
    split_added(
        valid, allow_special, [&](std::string_view part) { encode_plain(part, out, scratch); },
        [&](uint32_t id) { out.push_back(id); });
    return out;
}

// ---- Tokenizer ---------------------------------------------------------------------------------

Tokenizer Tokenizer::load(const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    check(file.good(), ErrorKind::kIo, "{}: cannot open tokenizer file", path);
    std::ostringstream content;
    content << file.rdbuf();
    check(!file.bad(), ErrorKind::kIo, "{}: read error", path);
    return from_json(content.str(), path);
}

Tokenizer Tokenizer::from_json(std::string_view json, std::string_view origin) {
    return Tokenizer(tok::parse_tokenizer_json(json, origin));
}

std::string Tokenizer::to_json() const {
    return tok::write_tokenizer_json(*impl_);
}

uint64_t Tokenizer::json_hash() const {
    std::call_once(impl_->json_hash_once, [&] {
        const std::string json = to_json();
        impl_->json_hash = XXH3_64bits(json.data(), json.size());
    });
    return impl_->json_hash;
}

void Tokenizer::save(const std::string& path) const {
    // Atomic (a temporary file, flushed to disk, renamed over `path`): a failed or killed save
    // leaves the old file, never half a file, and no temporary file once the error is reported.
    io::write_file_atomic(path, to_json());
}

std::vector<uint32_t> Tokenizer::encode(std::string_view text, bool allow_special) const {
    auto scratch = impl_->acquire_scratch();
    std::vector<uint32_t> ids = impl_->encode(text, allow_special, *scratch);
    impl_->release_scratch(std::move(scratch));
    return ids;
}

std::vector<uint32_t> Tokenizer::encode_parallel(std::string_view text, int threads,
                                                 bool allow_special) const {
    std::string sanitized;
    if (!tok::utf8_is_valid(text)) {
        tok::utf8_append_lossy(sanitized, text);
        text = sanitized;
    }
    // Pieces between added tokens are independent: the pre-tokenizer never looks across them.
    struct Segment {
        std::string_view text;
        uint32_t id;  // the added token's id when text is empty
    };
    std::vector<Segment> segments;
    impl_->split_added(
        text, allow_special,
        [&](std::string_view part) {
            segments.push_back({part, 0});
        },
        [&](uint32_t id) {
            segments.push_back({{}, id});
        });
    std::vector<std::vector<uint32_t>> results(segments.size());
    std::exception_ptr error;
    const int64_t count = static_cast<int64_t>(segments.size());
#pragma omp parallel num_threads(resolve_threads(threads))
    {
        auto scratch = impl_->acquire_scratch();
#pragma omp for schedule(dynamic, 16)
        for (int64_t i = 0; i < count; ++i) {
            try {
                if (segments[i].text.empty()) {
                    results[i].push_back(segments[i].id);
                } else {
                    impl_->encode_plain(segments[i].text, results[i], *scratch);
                }
            } catch (...) {
#pragma omp critical(bitttt_tokenizer_error)
                if (!error) error = std::current_exception();
            }
        }
        impl_->release_scratch(std::move(scratch));
    }
    if (error) std::rethrow_exception(error);
    size_t total = 0;
    for (const auto& r : results) total += r.size();
    std::vector<uint32_t> ids;
    ids.reserve(total);
    for (const auto& r : results) ids.insert(ids.end(), r.begin(), r.end());
    return ids;
}

std::vector<std::vector<uint32_t>> Tokenizer::encode_batch(std::span<const std::string_view> texts,
                                                           int threads, bool allow_special) const {
    std::vector<std::vector<uint32_t>> results(texts.size());
    std::exception_ptr error;
    const int64_t count = static_cast<int64_t>(texts.size());
#pragma omp parallel num_threads(resolve_threads(threads))
    {
        auto scratch = impl_->acquire_scratch();
#pragma omp for schedule(dynamic, 4)
        for (int64_t i = 0; i < count; ++i) {
            try {
                results[i] = impl_->encode(texts[i], allow_special, *scratch);
            } catch (...) {
#pragma omp critical(bitttt_tokenizer_error)
                if (!error) error = std::current_exception();
            }
        }
        impl_->release_scratch(std::move(scratch));
    }
    if (error) std::rethrow_exception(error);
    return results;
}

void Tokenizer::release_caches() const {
    impl_->clear_scratch_pool();
}

std::string Tokenizer::decode(std::span<const uint32_t> ids, bool skip_special) const {
    const Impl& impl = *impl_;
    std::string bytes;
    bool first = true;
    for (uint32_t id : ids) {
        check(id < impl.exists.size() && impl.exists[id], ErrorKind::kInvalidArgument,
              "decode: token id {} is not in the vocabulary (size {})", id, impl.exists.size());
        if (skip_special && impl.special[id]) continue;
        // Without a decoder the package joins the token strings with spaces.
        if (impl.decoder == tok::DecoderKind::kNone && !first) bytes.push_back(' ');
        bytes += impl.decoded[id];
        first = false;
    }
    std::string text;
    text.reserve(bytes.size());
    tok::utf8_append_lossy(text, bytes);
    return text;
}

StreamingDecoder Tokenizer::streaming_decoder(bool skip_special) const {
    return StreamingDecoder(impl_, skip_special);
}

uint32_t Tokenizer::vocab_size() const {
    return static_cast<uint32_t>(impl_->exists.size());
}

std::optional<uint32_t> Tokenizer::token_to_id(std::string_view token) const {
    return impl_->token_to_id(token);
}

std::optional<std::string> Tokenizer::id_to_token(uint32_t id) const {
    const std::string* token = impl_->id_to_token(id);
    return token ? std::optional<std::string>(*token) : std::nullopt;
}

bool Tokenizer::is_special(uint32_t id) const {
    return id < impl_->special.size() && impl_->special[id];
}

// ---- StreamingDecoder --------------------------------------------------------------------------

std::string StreamingDecoder::push(uint32_t id) {
    const Tokenizer::Impl& impl = *impl_;
    check(id < impl.exists.size() && impl.exists[id], ErrorKind::kInvalidArgument,
          "decode: token id {} is not in the vocabulary (size {})", id, impl.exists.size());
    if (skip_special_ && impl.special[id]) return {};
    if (impl.decoder == tok::DecoderKind::kNone && !first_token_) pending_.push_back(' ');
    first_token_ = false;
    pending_ += impl.decoded[id];
    // Everything up to an unfinished character at the end is final: the replacement of invalid
    // bytes never depends on bytes after the first byte that breaks a sequence.
    const size_t settled = tok::utf8_settled_prefix(pending_);
    std::string text;
    tok::utf8_append_lossy(text, std::string_view(pending_).substr(0, settled));
    pending_.erase(0, settled);
    return text;
}

std::string StreamingDecoder::finish() {
    std::string text;
    tok::utf8_append_lossy(text, pending_);
    reset();
    return text;
}

void StreamingDecoder::reset() {
    pending_.clear();
    first_token_ = true;
}

}  // namespace bitttt
