// Session: forward (logits as NumPy arrays viewing the session's buffer), generation as an
// iterator of text pieces or with a callback, the TTT state. The GIL is released while C++ runs;
// a session is used by one thread at a time, which a `busy` flag enforces with a clear error.
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "bitttt/tokenizer.hpp"
#include "core/error.hpp"
#include "generate_steps.hpp"
#include "model/config.hpp"
#include "model/sampling.hpp"

namespace bitttt::python {
namespace {

struct PySession {
    Session session;
    std::atomic<bool> busy{false};

    PySession(std::shared_ptr<const Model> model, int64_t max_chunk)
        : session(std::move(model), max_chunk) {}
    // The logits of the last token read (empty after construction, reset or load_state): what
    // generate() continues from when the prompt is empty.
    std::span<const float> last_logits() const { return session.last_logits(); }
};

void acquire(PySession& s) {
    if (s.busy.exchange(true))
        throw std::runtime_error(
            "Session is busy: another thread is using it, or a generate() iterator is still "
            "open (exhaust it or call its close())");
}

// Holds the session for the duration of one call.
struct BusyGuard {
    PySession& s;
    explicit BusyGuard(PySession& session) : s(session) { acquire(s); }
    ~BusyGuard() { s.busy = false; }
};

// A read-only view of floats owned by `owner` (kept alive by the array).
using LogitsView = nb::ndarray<nb::numpy, const float, nb::ndim<1>, nb::c_contig>;
using FloatArray = nb::ndarray<nb::numpy, float, nb::c_contig>;

// A fresh array (owned by a capsule) holding a copy of `data` with `shape`.
FloatArray new_array(std::span<const float> data, std::initializer_list<size_t> shape) {
    float* copy = new float[std::max<size_t>(data.size(), 1)];
    std::copy(data.begin(), data.end(), copy);
    nb::capsule owner(copy, [](void* p) noexcept { delete[] static_cast<float*>(p); });
    return FloatArray(copy, shape, owner);
}

nb::object logits_result(PySession& self, std::span<const float> logits, bool copy) {
    if (copy) return nb::cast(new_array(logits, {logits.size()}));
    return nb::cast(LogitsView(logits.data(), {logits.size()}, nb::find(&self)));
}

std::vector<int32_t> prompt_ids(const Session& session, nb::handle prompt) {
    if (nb::isinstance<nb::str>(prompt)) {
        const Tokenizer* tok = session.model().tokenizer();
        check(tok != nullptr, ErrorKind::kInvalidArgument,
              "prompt: the model has no tokenizer; give the prompt as a list of token ids");
        std::vector<int32_t> ids;
        for (uint32_t id : tok->encode(nb::cast<std::string>(prompt)))
            ids.push_back(static_cast<int32_t>(id));
        return ids;
    }
    std::vector<int32_t> ids;
    if (!nb::try_cast(prompt, ids))
        throw nb::type_error("prompt must be a str or a sequence of int token ids");
    return ids;
}

GenerateOptions generate_options(int64_t max_new_tokens, bool stop_at_end_of_text,
                                 float temperature, int64_t top_k, float top_p,
                                 float repeat_penalty, int64_t repeat_last_n, uint64_t seed) {
    check(max_new_tokens >= 0, ErrorKind::kInvalidArgument,
          "generate: max_new_tokens must be >= 0, got {}", max_new_tokens);
    GenerateOptions o;
    o.max_new_tokens = max_new_tokens;
    o.stop_at_end_of_text = stop_at_end_of_text;
    o.sampling = {temperature, top_k, top_p, repeat_penalty, repeat_last_n, seed};
    // Checked now (by the sampler's own rules) so that an iterator fails at the call, not at
    // its first piece.
    Sampler(1).set_options(o.sampling);
    return o;
}

bool truthy_or_none(nb::handle r) {
    if (r.is_none()) return true;
    int truth = PyObject_IsTrue(r.ptr());
    if (truth < 0) throw nb::python_error();
    return truth != 0;
}

// The Python generate() iterator; holds the session's busy flag until generation ends.
struct PyGenerateIterator {
    PySession* owner;
    GenerateSteps steps;
    bool holding = false;
    // next() from two threads at once would run the session twice at once (Python generators
    // refuse the same way).
    std::atomic<bool> stepping{false};

    PyGenerateIterator(PySession& s, std::vector<int32_t> prompt, const GenerateOptions& options,
                       StreamingDecoder decoder)
        : owner(&s),
          steps(s.session, std::move(prompt), options, std::move(decoder), s.last_logits()) {
        acquire(s);
        holding = true;
    }
    ~PyGenerateIterator() { end(); }
    // From Python: not while another thread is inside next().
    void close() {
        if (stepping)
            throw std::runtime_error("GenerateIterator is already running in another thread");
        end();
    }
    void end() {
        steps.close();
        if (holding) owner->busy = false;
        holding = false;
    }
    // The next piece, or nullopt (and the session freed) at the end.
    std::optional<std::string> next_piece() {
        if (stepping.exchange(true))
            throw std::runtime_error("GenerateIterator is already running in another thread");
        struct Done {
            std::atomic<bool>& flag;
            ~Done() { flag = false; }
        } done{stepping};
        std::optional<std::string> piece;
        try {
            nb::gil_scoped_release unlocked;
            piece = steps.next();
        } catch (...) {
            end();
            throw;
        }
        if (!piece) end();
        return piece;
    }
    std::string next() {
        std::optional<std::string> piece = next_piece();
        if (!piece) throw nb::stop_iteration();
        return *piece;
    }
};

const char* stop_name(StopReason r) {
    switch (r) {
        case StopReason::kEndOfText:
            return "end_of_text";
        case StopReason::kTokenLimit:
            return "token_limit";
        case StopReason::kCallback:
            return "callback";
    }
    return "?";
}

constexpr const char* kSamplingDoc =
    " Sampling: temperature (0: greedy), top_k (0: all), top_p (1: all), repeat_penalty (> 1 "
    "discourages the last repeat_last_n tokens), seed. Generation stops after max_new_tokens or "
    "when <|endoftext|> is sampled (if stop_at_end_of_text; it is not emitted).";

}  // namespace

void bind_session(nb::module_& m) {
    // Docstrings must outlive the module definition.
    static const std::string generate_doc =
        std::string(
            "Continues the prompt (a str, encoded with the model's tokenizer, or a list "
            "of ids; empty: continue from the last forward). Without a callback, returns "
            "a GenerateIterator of text pieces; with one, calls callback(piece) for each "
            "piece (return False to stop) and returns the GenerateResult.") +
        kSamplingDoc;
    static const std::string generate_tokens_doc =
        std::string(
            "Like generate() but with token ids: calls callback(id) for each new token "
            "(return False to stop) and returns the GenerateResult (works without a "
            "tokenizer).") +
        kSamplingDoc;
    nb::class_<GenerateResult>(m, "GenerateResult", "What a generation produced.")
        .def_ro("tokens", &GenerateResult::tokens, "The generated ids (without the prompt).")
        .def_prop_ro(
            "stop_reason", [](const GenerateResult& r) { return stop_name(r.stop); },
            "'end_of_text', 'token_limit' or 'callback' (the callback returned False, or the "
            "iterator was closed).")
        .def_ro("prompt_seconds", &GenerateResult::prompt_seconds, "Time spent on the prompt.")
        .def_ro("generate_seconds", &GenerateResult::generate_seconds,
                "Time spent sampling and decoding the new tokens.")
        .def("__repr__", [](const GenerateResult& r) {
            return "GenerateResult(" + std::to_string(r.tokens.size()) + " tokens, stop_reason='" +
                   stop_name(r.stop) + "')";
        });

    nb::class_<PyGenerateIterator>(
        m, "GenerateIterator",
        "Iterator of the text pieces of a generation (each a whole number of UTF-8 characters). "
        "Tokens are generated only as pieces are asked for; close() (or leaving a `with` block, "
        "or dropping the iterator) stops generation, the session keeping the tokens sampled so "
        "far. The session cannot be used while the iterator is open.")
        .def(
            "__iter__", [](nb::handle self) { return nb::borrow(self); },
            nb::sig("def __iter__(self) -> GenerateIterator"), "The iterator itself.")
        .def("__next__", &PyGenerateIterator::next, "The next text piece.")
        .def("close", &PyGenerateIterator::close, "Stops generation and frees the session.")
        .def(
            "__enter__", [](nb::handle self) { return nb::borrow(self); },
            nb::sig("def __enter__(self) -> GenerateIterator"), "The iterator itself.")
        .def(
            "__exit__",
            [](PyGenerateIterator& it, nb::handle, nb::handle, nb::handle) { it.close(); },
            nb::arg("exc_type").none(), nb::arg("exc_value").none(), nb::arg("traceback").none(),
            "close().")
        .def_prop_ro(
            "result", [](const PyGenerateIterator& it) { return it.steps.result(); },
            "The GenerateResult once generation has ended, else None.");

    nb::class_<PySession>(m, "Session",
                          "A conversation with a model: the TTT memory W of every layer, the "
                          "position and scratch buffers. Used by one thread at a time.")
        .def(
            "__init__",
            [](PySession* self, const PyModel& model, int64_t max_chunk) {
                new (self) PySession(model.model, max_chunk);
            },
            nb::arg("model"), nb::arg("max_chunk") = 64,
            "A fresh session (W = 0) over the model; max_chunk prompt tokens are processed "
            "together (scratch buffers are sized for it).")
        .def(
            "forward",
            [](PySession& self, const std::vector<int32_t>& ids, bool all_logits, bool copy) {
                BusyGuard busy(self);
                if (all_logits) {
                    const size_t V = static_cast<size_t>(self.session.model().config().vocab_size);
                    // Allocated here, filled without the GIL, handed to NumPy without a copy.
                    float* out = new float[std::max<size_t>(ids.size() * V, 1)];
                    nb::capsule owner(out,
                                      [](void* p) noexcept { delete[] static_cast<float*>(p); });
                    {
                        nb::gil_scoped_release unlocked;
                        self.session.forward(ids, std::span<float>(out, ids.size() * V));
                    }
                    return nb::cast(FloatArray(out, {ids.size(), V}, owner));
                }
                std::span<const float> logits;
                {
                    nb::gil_scoped_release unlocked;
                    logits = self.session.forward(ids);
                }
                return logits_result(self, logits, copy);
            },
            nb::arg("ids"), nb::arg("all_logits") = false, nb::arg("copy") = false,
            nb::sig(
                "def forward(self, ids: collections.abc.Sequence[int], all_logits: bool = False, "
                "copy: bool = False) -> numpy.typing.NDArray[numpy.float32]"),
            "Feeds token ids (continuing from the current state) and returns the logits of the "
            "last one: a read-only float32 array of shape (vocab_size,) that views the "
            "session's buffer without a copy and is OVERWRITTEN by the next forward / "
            "forward_token / generate call (copy=True returns an independent array). "
            "all_logits=True returns a new (len(ids), vocab_size) array of every token's logits.")
        .def(
            "forward_token",
            [](PySession& self, int32_t id, bool copy) {
                BusyGuard busy(self);
                std::span<const float> logits;
                {
                    nb::gil_scoped_release unlocked;
                    logits = self.session.forward_token(id);
                }
                return logits_result(self, logits, copy);
            },
            nb::arg("id"), nb::arg("copy") = false,
            nb::sig("def forward_token(self, id: int, copy: bool = False) -> "
                    "numpy.typing.NDArray[numpy.float32]"),
            "forward([id]): one decode step; the same view semantics as forward().")
        .def(
            "generate",
            [](PySession& self, nb::handle prompt, int64_t max_new_tokens, float temperature,
               int64_t top_k, float top_p, float repeat_penalty, int64_t repeat_last_n,
               uint64_t seed, bool stop_at_end_of_text, nb::object callback) -> nb::object {
                const Tokenizer* tok = self.session.model().tokenizer();
                check(tok != nullptr, ErrorKind::kInvalidArgument,
                      "generate: the model has no tokenizer to make text; use generate_tokens()");
                GenerateOptions options =
                    generate_options(max_new_tokens, stop_at_end_of_text, temperature, top_k, top_p,
                                     repeat_penalty, repeat_last_n, seed);
                std::vector<int32_t> ids = prompt_ids(self.session, prompt);
                if (callback.is_none())
                    return nb::cast(new PyGenerateIterator(self, std::move(ids), options,
                                                           tok->streaming_decoder()),
                                    nb::rv_policy::take_ownership);
                BusyGuard busy(self);
                StreamingDecoder decoder = tok->streaming_decoder();
                auto emit = [&](std::string text) {
                    if (text.empty()) return true;
                    nb::gil_scoped_acquire gil;
                    return truthy_or_none(callback(text));
                };
                GenerateResult result;
                {
                    nb::gil_scoped_release unlocked;
                    result = self.session.generate(ids, options, [&](int32_t id) {
                        return emit(decoder.push(static_cast<uint32_t>(id)));
                    });
                    emit(decoder.finish());
                }
                return nb::cast(std::move(result));
            },
            nb::arg("prompt"), nb::arg("max_new_tokens") = 128, nb::kw_only(),
            nb::arg("temperature") = 0.8, nb::arg("top_k") = 40, nb::arg("top_p") = 0.95,
            nb::arg("repeat_penalty") = 1.0, nb::arg("repeat_last_n") = 64, nb::arg("seed") = 42,
            nb::arg("stop_at_end_of_text") = true, nb::arg("callback") = nb::none(),
            nb::keep_alive<0, 1>(),
            nb::sig("def generate(self, prompt: str | collections.abc.Sequence[int], "
                    "max_new_tokens: int = 128, *, temperature: float = 0.8, top_k: int = 40, "
                    "top_p: float = 0.95, repeat_penalty: float = 1.0, repeat_last_n: int = 64, "
                    "seed: int = 42, stop_at_end_of_text: bool = True, "
                    "callback: collections.abc.Callable[[str], bool | None] | None = None) -> "
                    "GenerateIterator | GenerateResult"),
            generate_doc.c_str())
        .def(
            "generate_tokens",
            [](PySession& self, nb::handle prompt, int64_t max_new_tokens, float temperature,
               int64_t top_k, float top_p, float repeat_penalty, int64_t repeat_last_n,
               uint64_t seed, bool stop_at_end_of_text, nb::object callback) {
                GenerateOptions options =
                    generate_options(max_new_tokens, stop_at_end_of_text, temperature, top_k, top_p,
                                     repeat_penalty, repeat_last_n, seed);
                std::vector<int32_t> ids = prompt_ids(self.session, prompt);
                BusyGuard busy(self);
                TokenCallback on_token;
                if (!callback.is_none()) {
                    on_token = [&](int32_t id) {
                        nb::gil_scoped_acquire gil;
                        return truthy_or_none(callback(id));
                    };
                }
                nb::gil_scoped_release unlocked;
                return self.session.generate(ids, options, on_token);
            },
            nb::arg("prompt"), nb::arg("max_new_tokens") = 128, nb::kw_only(),
            nb::arg("temperature") = 0.8, nb::arg("top_k") = 40, nb::arg("top_p") = 0.95,
            nb::arg("repeat_penalty") = 1.0, nb::arg("repeat_last_n") = 64, nb::arg("seed") = 42,
            nb::arg("stop_at_end_of_text") = true, nb::arg("callback") = nb::none(),
            nb::sig("def generate_tokens(self, prompt: str | collections.abc.Sequence[int], "
                    "max_new_tokens: int = 128, *, temperature: float = 0.8, top_k: int = 40, "
                    "top_p: float = 0.95, repeat_penalty: float = 1.0, repeat_last_n: int = 64, "
                    "seed: int = 42, stop_at_end_of_text: bool = True, "
                    "callback: collections.abc.Callable[[int], bool | None] | None = None) -> "
                    "GenerateResult"),
            generate_tokens_doc.c_str())
        .def(
            "reset",
            [](PySession& self) {
                BusyGuard busy(self);
                self.session.reset();
            },
            "Forgets everything read: every W back to 0, position 0.")
        .def_prop_ro(
            "position", [](PySession& self) { return self.session.position(); },
            "Tokens read since the last reset (or as loaded from a state file).")
        .def(
            "save_state",
            [](PySession& self, const Path& path) {
                BusyGuard busy(self);
                nb::gil_scoped_release unlocked;
                self.session.save_state(path.string());
            },
            nb::arg("path"),
            "Writes the TTT memory of every layer to a .tttstate file (atomically).")
        .def(
            "load_state",
            [](PySession& self, const Path& path) {
                BusyGuard busy(self);
                {
                    nb::gil_scoped_release unlocked;
                    self.session.load_state(path.string());
                }
            },
            nb::arg("path"),
            "Reads a .tttstate file saved from this same model (checked by identity hash); on "
            "error the session is unchanged.")
        .def(
            "state",
            [](PySession& self, int64_t layer) {
                BusyGuard busy(self);
                const ModelConfig& c = self.session.model().config();
                const size_t h = static_cast<size_t>(c.ttt_heads);
                const size_t d = static_cast<size_t>(c.head_dim());
                return new_array(self.session.state(layer), {h, d, d});
            },
            nb::arg("layer"),
            nb::sig("def state(self, layer: int) -> numpy.typing.NDArray[numpy.float32]"),
            "A copy of layer's TTT state W, shape (ttt_heads, head_dim, head_dim).")
        .def_prop_ro(
            "model", [](PySession& self) { return PyModel{self.session.model_ptr()}; },
            "The Model this session reads.");
}

}  // namespace bitttt::python
