// The C++ inference API (DESIGN.md §4): a Model (immutable weights + optional tokenizer, shared
// between threads) and Sessions over it (the TTT state of every layer, scratch buffers, the
// position; one per conversation, used by one thread at a time).
//
//     auto model = bitttt::Model::load("model.bitt");
//     bitttt::Session session(model);
//     auto logits = session.forward(prompt_ids);           // logits of the last token
//     session.generate(prompt_ids, options, [](int32_t id) { ...; return true; });
//     session.save_state("memory.tttstate");              // the TTT memory W of every layer
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bitttt {

struct ModelConfig;
class ModelWeights;
class Tokenizer;

enum class Device { kCpu, kCuda };

// How the CPU computes the logits, lm_head(RMSNorm(x)) with lm_head [V, D] (the file's fp32 or
// bf16 weights; nothing in the file changes):
//  - kBf16 (default): the weights rounded to bf16 once at load (kernels/cpu/bf16_matmul.hpp).
//  - kF32: the fp32 weights as loaded (twice the bytes per token).
//  - kInt8 (opt-in; the logits change): per-row absmax int8 weights quantized once at load and
//    the final RMSNorm output quantized per token to int8, int32 sums (kernels/cpu/
//    int8_matmul.hpp): half the bytes of bf16. On the shipped default model the logits stay
//    within ~1e-2 of the fp32 ones (bench/RESULTS.md gives the measured loss and greedy tokens).
// It applies where the CPU computes lm_head: kCpu, or kCuda with some blocks on the CPU (with
// every block on the GPU, lm_head runs there; see dense_bf16).
enum class LmHead { kBf16, kF32, kInt8 };
// "bf16", "f32" (also "fp32") or "int8" -> LmHead; an Error naming the value otherwise.
LmHead parse_lm_head(std::string_view name);
std::string_view lm_head_name(LmHead head);

// Where a model runs (DESIGN.md §5). With kCuda the packed 2-bit weights of the first gpu_layers
// blocks are uploaded to GPU 0 once, at load (never dequantized), and the Sessions of the model run
// those blocks there; the other blocks run on the CPU (hybrid inference for models larger than
// GPU memory). The embedding table goes to the GPU when at least one block does (the token
// stream starts there); norm_f and lm_head go only when every block does, otherwise the CPU
// computes the logits from the hidden state downloaded after block gpu_layers - 1.
struct DeviceOptions {
    Device device = Device::kCpu;
    int64_t gpu_layers = -1;  // with kCuda: -1 (or >= num_layers) all, 0 none (pure CPU)
    // Embedding and lm_head on the GPU as bf16 (half the bytes; logits within ~1e-2 relative of
    // the fp32 ones); false keeps them fp32 (the CPU's logits within float rounding).
    bool dense_bf16 = true;
    // The CPU's lm_head (above). kF32 / kInt8 with every block on the GPU are an Error.
    LmHead lm_head = LmHead::kBf16;
};
// "cpu" or "cuda" (also "cuda:0") -> Device; an Error naming the value otherwise.
Device parse_device(std::string_view name);

class Model {
  public:
    // Loads a .bitt file or a model directory (config.json + model.safetensors [+ tokenizer.json]).
    // With options.device == kCuda: an Error (kUnsupported, message starting "CUDA:") when this
    // build has no CUDA backend or there is no GPU.
    static std::shared_ptr<const Model> load(const std::string& path,
                                             const DeviceOptions& options = {});
    // Wraps weights already in memory (random models for tests and benchmarks).
    static std::shared_ptr<const Model> from_weights(
        ModelWeights weights, std::shared_ptr<const Tokenizer> tokenizer = nullptr,
        const DeviceOptions& options = {});

    // The placement: device, and gpu_layers resolved to [0, num_layers] (0 for kCpu).
    const DeviceOptions& device_options() const;

    const ModelConfig& config() const;
    const ModelWeights& weights() const;
    const Tokenizer* tokenizer() const;  // null when the model has none

    // XXH3-64 of the config and every tensor (packed codes and scales for BitLinear tensors): the
    // identity a saved TTT state is checked against. Computed on first use (thread-safe).
    uint64_t identity_hash() const;

    ~Model();
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    struct Impl;  // internal (model.cpp); Sessions read the device copy of the weights from it
    const Impl& impl() const { return *impl_; }

  private:
    Model();
    std::unique_ptr<Impl> impl_;
};

struct SamplingOptions {
    float temperature = 0.8f;     // 0: greedy (argmax)
    int64_t top_k = 40;           // keep the k most likely tokens; 0: all
    float top_p = 0.95f;          // keep the smallest set with this much probability; 1: all
    float repeat_penalty = 1.0f;  // > 1 discourages tokens seen in the last repeat_last_n
    int64_t repeat_last_n = 64;
    uint64_t seed = 42;
};

struct GenerateOptions {
    int64_t max_new_tokens = 128;
    bool stop_at_end_of_text = true;  // stop after sampling <|endoftext|> (id 0), not emitting it
    SamplingOptions sampling;
};

enum class StopReason { kEndOfText, kTokenLimit, kCallback };

struct GenerateResult {
    std::vector<int32_t> tokens;  // the generated ids (without the prompt)
    StopReason stop = StopReason::kTokenLimit;
    double prompt_seconds = 0;    // time spent on the prompt
    double generate_seconds = 0;  // time spent sampling and decoding the new tokens
};

// Called with each generated token; return false to stop.
using TokenCallback = std::function<bool(int32_t id)>;
// Called with each piece of generated text (complete UTF-8; possibly empty while a character's
// bytes are still arriving); return false to stop.
using TextCallback = std::function<bool(std::string_view piece)>;

class Session {
  public:
    // max_chunk: prompt tokens processed together (the scratch buffers are sized for it once;
    // longer prompts go in several chunks).
    explicit Session(std::shared_ptr<const Model> model, int64_t max_chunk = 64);
    ~Session();
    Session(Session&&) noexcept;
    Session& operator=(Session&&) noexcept;

    // Feeds ids, in order, continuing from the current state, and returns the logits of the last
    // token (vocab_size floats, valid until the next call). The projections are batched over the
    // prompt; the TTT recurrence runs token after token. If all_logits is not empty it receives
    // the logits of every token (ids.size() * vocab_size floats). Ids out of range are an error
    // (checked before the state changes).
    std::span<const float> forward(std::span<const int32_t> ids, std::span<float> all_logits = {});
    // One token (decode): the same logits forward({id}) gives; allocates nothing.
    std::span<const float> forward_token(int32_t id);
    // The logits of the last token read (what forward returned), or an empty span when no token
    // was read since construction, reset() or load_state().
    std::span<const float> last_logits() const;

    // Feeds the prompt (if any), then samples up to max_new_tokens tokens, feeding each back.
    // With an empty prompt, sampling starts from the logits of the last forward call (an error
    // if there was none since the last reset).
    GenerateResult generate(std::span<const int32_t> prompt, const GenerateOptions& options,
                            const TokenCallback& on_token = {});

    // Text in, text out (needs the model's tokenizer): encodes the prompt, generates as above and
    // streams the new text in pieces that never split a UTF-8 character (bytes of a character
    // that spans tokens are held until it is complete). The pieces together equal the
    // tokenizer's decode of result.tokens.
    GenerateResult generate_text(std::string_view prompt, const GenerateOptions& options,
                                 const TextCallback& on_text);

    // Forgets everything read: every W back to 0, position 0.
    void reset();
    int64_t position() const;  // tokens read since the last reset (or as loaded from a state)

    // The TTT memory as a file (.tttstate, ttt_state_file.hpp): atomic write; load checks that
    // the file belongs to this model (identity_hash) and is intact, and leaves the session
    // unchanged when it is not.
    void save_state(const std::string& path) const;
    void load_state(const std::string& path);

    // W of layer l: heads x Dh x Dh floats, each head row-major (W[i][j] at i * Dh + j).
    std::span<const float> state(int64_t layer) const;
    std::span<float> mutable_state(int64_t layer);

    const Model& model() const;
    const std::shared_ptr<const Model>& model_ptr() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace bitttt
