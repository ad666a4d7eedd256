// Training from Python through the C++ trainer (src/train/trainer.hpp): the same loop, files and
// checkpoints as `bitttt train`. The GIL is released while it works; Ctrl-C during run() saves a
// checkpoint and raises KeyboardInterrupt (the trainer's own SIGINT handling, installed only for
// the duration of run() on the main thread, then Python's handler is put back).
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <atomic>
#include <csignal>
#include <memory>
#include <stdexcept>
#include <string>

#include "bindings.hpp"
#include "bitttt/model.hpp"
#include "bitttt/tokenizer.hpp"
#include "core/error.hpp"
#include "model/config.hpp"
#include "model/gpu_model.hpp"
#include "train/trainer.hpp"

namespace bitttt::python {
namespace {

using train::Trainer;
using train::TrainOptions;
using train::TrainOutcome;

const char* outcome_name(TrainOutcome o) {
    switch (o) {
        case TrainOutcome::kFinished:
            return "finished";
        case TrainOutcome::kStopped:
            return "stopped";
        case TrainOutcome::kInterrupted:
            return "interrupted";
    }
    return "?";
}

// The Python Trainer: the C++ one, used by one thread at a time (the GIL is released while it
// works, so a second thread gets a clear error instead of racing on the weights).
struct PyTrainer {
    std::unique_ptr<Trainer> trainer;
    std::atomic<bool> busy{false};
};

struct Busy {
    PyTrainer& t;
    explicit Busy(PyTrainer& trainer) : t(trainer) {
        if (t.busy.exchange(true))
            throw std::runtime_error("Trainer is busy: another thread is using it");
    }
    ~Busy() { t.busy = false; }
    Trainer& operator*() const { return *t.trainer; }
};

bool on_main_thread() {
    nb::module_ threading = nb::module_::import_("threading");
    return threading.attr("current_thread")().is(threading.attr("main_thread")());
}

std::string run(PyTrainer& self) {
    Busy trainer(self);
    const bool own_sigint = on_main_thread();
    struct sigaction python_handler {};
    if (own_sigint) sigaction(SIGINT, nullptr, &python_handler);
    TrainOutcome outcome;
    {
        nb::gil_scoped_release unlocked;
        if (own_sigint) Trainer::handle_sigint();
        try {
            outcome = (*trainer).run();
        } catch (...) {
            if (own_sigint) sigaction(SIGINT, &python_handler, nullptr);
            throw;
        }
        if (own_sigint) sigaction(SIGINT, &python_handler, nullptr);
    }
    if (outcome == TrainOutcome::kInterrupted) {
        PyErr_SetString(PyExc_KeyboardInterrupt, "training interrupted: checkpoint saved");
        throw nb::python_error();
    }
    return outcome_name(outcome);
}

// device -> the trainer's "cpu" / "cuda" (Model.load's spellings: 'cuda:0' is GPU 0 too). Without a
// CUDA build or a GPU this raises the engine's RuntimeError naming device='cuda' before any data
// work (the C++ trainer would name its command-line flag, --device cuda).
std::string trainer_device(const std::string& device) {
    if (parse_device(device) == Device::kCpu) return "cpu";
    require_gpu("device='cuda'");
    return "cuda";
}

}  // namespace

void bind_train(nb::module_& m) {
    nb::class_<PyTrainer>(
        m, "Trainer",
        "The C++ training loop (DESIGN.md §2.4): next-token cross-entropy, "
        "AdamW, warmup + cosine schedule, gradient clipping, validation, "
        "metrics.jsonl, atomic checkpoints that resume bit for bit, and the final "
        "export to out_dir/model/ and out_dir/model.bitt.")
        .def(
            "__init__",
            [](PyTrainer* self, const Path& data, const Path& out_dir,
               const std::optional<ModelConfig>& config, const std::optional<Path>& tokenizer,
               const std::optional<Path>& val_data, std::optional<int64_t> steps,
               int64_t batch_size, int64_t context_len, float lr, float min_lr,
               int64_t warmup_steps, float grad_clip, float weight_decay, int64_t save_interval,
               int64_t eval_interval, int64_t eval_batches, uint64_t seed,
               const std::optional<Path>& resume, int64_t stop_at_step, bool progress,
               bool export_model, const std::string& device, const std::string& gpu_precision,
               const std::string& gpu_optimizer_state, const std::string& gpu_grad_precision,
               const std::string& cpu_precision) {
                TrainOptions o;
                check(cpu_precision == "fp32" || cpu_precision == "bf16",
                      ErrorKind::kInvalidArgument,
                      "cpu_precision must be 'fp32' or 'bf16', got '{}'", cpu_precision);
                o.cpu_precision = cpu_precision;
                o.device = trainer_device(device);
                check(gpu_precision == "bf16" || gpu_precision == "fp32",
                      ErrorKind::kInvalidArgument,
                      "gpu_precision must be 'bf16' or 'fp32', got '{}'", gpu_precision);
                o.gpu_precision = gpu_precision;
                check(gpu_optimizer_state == "fp32" || gpu_optimizer_state == "bf16" ||
                          gpu_optimizer_state == "int8",
                      ErrorKind::kInvalidArgument,
                      "gpu_optimizer_state must be 'fp32', 'bf16' or 'int8', got '{}'",
                      gpu_optimizer_state);
                o.gpu_optimizer_state = gpu_optimizer_state;
                check(gpu_grad_precision == "fp32" ||
                          (gpu_grad_precision == "bf16" && gpu_precision == "bf16"),
                      ErrorKind::kInvalidArgument,
                      "gpu_grad_precision must be 'fp32' or 'bf16' (with gpu_precision 'bf16'), "
                      "got '{}'",
                      gpu_grad_precision);
                o.gpu_grad_precision = gpu_grad_precision;
                if (config) o.model = *config;
                o.data = data.string();
                o.out_dir = out_dir.string();
                if (tokenizer) o.tokenizer = tokenizer->string();
                if (val_data) o.val_data = val_data->string();
                // Without steps, a resumed run keeps the checkpoint's total.
                o.steps_explicit = steps.has_value();
                if (steps) o.steps = *steps;
                o.batch_size = batch_size;
                o.context_len = context_len;
                o.lr = lr;
                o.min_lr = min_lr;
                o.warmup_steps = warmup_steps;
                o.grad_clip = grad_clip;
                o.adamw.weight_decay = weight_decay;
                o.save_interval = save_interval;
                o.eval_interval = eval_interval;
                o.eval_batches = eval_batches;
                o.seed = seed;
                if (resume) o.resume = resume->string();
                o.stop_at_step = stop_at_step;
                o.progress = progress;
                o.export_model = export_model;
                std::unique_ptr<Trainer> trainer;
                {
                    nb::gil_scoped_release unlocked;
                    trainer = std::make_unique<Trainer>(std::move(o));
                }
                new (self) PyTrainer{std::move(trainer)};
            },
            nb::arg("data"), nb::arg("out_dir") = "out", nb::kw_only(),
            nb::arg("config") = nb::none(), nb::arg("tokenizer") = nb::none(),
            nb::arg("val_data") = nb::none(), nb::arg("steps") = nb::none(),
            nb::arg("batch_size") = 16, nb::arg("context_len") = 128, nb::arg("lr") = 3e-4,
            nb::arg("min_lr") = 1e-5, nb::arg("warmup_steps") = 100, nb::arg("grad_clip") = 1.0,
            nb::arg("weight_decay") = 0.1, nb::arg("save_interval") = 500,
            nb::arg("eval_interval") = 100, nb::arg("eval_batches") = 8, nb::arg("seed") = 1337,
            nb::arg("resume") = nb::none(), nb::arg("stop_at_step") = 0,
            nb::arg("progress") = false, nb::arg("export_model") = true, nb::arg("device") = "cpu",
            nb::arg("gpu_precision") = "bf16", nb::arg("gpu_optimizer_state") = "fp32",
            nb::arg("gpu_grad_precision") = "fp32", nb::arg("cpu_precision") = "fp32",
            "Prepares training on `data` (UTF-8 text, plain or .gz; documents separated by "
            "<|endoftext|> lines): the tokenizer (the tokenizer.json given, else byte-level when "
            "config.vocab_size <= 257, else one trained on the data), the token cache, the model "
            "(config, default ModelConfig(); its vocab_size is the tokenizer's) and the "
            "optimizer. steps defaults to 1000 (or, with resume, the checkpoint's total). resume: "
            "a "
            "checkpoint to continue from. device='cuda' trains on GPU 0 (the same model, "
            "checkpoints and exports; a checkpoint resumes on either device) with the products "
            "in gpu_precision 'bf16' (tensor cores) or 'fp32', and the AdamW moments in "
            "gpu_optimizer_state 'fp32', 'bf16' (half the optimizer memory) or 'int8' (a "
            "quarter; checkpoints stay fp32), the gradients in gpu_grad_precision 'fp32' or "
            "'bf16' (half their memory; with gpu_precision 'bf16'); RuntimeError without a CUDA "
            "build "
            "or a GPU. On the CPU, cpu_precision 'bf16' runs lm_head and the backward products "
            "with bf16 operands and fp32 sums (default 'fp32'). ValueError names a bad option.")
        .def("run", &run,
             "Trains until `steps` (or stop_at_step) and returns 'finished' or 'stopped'; "
             "Ctrl-C saves a checkpoint and raises KeyboardInterrupt.")
        .def(
            "step",
            [](PyTrainer& self) {
                Busy t(self);
                train::StepMetrics sm;
                {
                    nb::gil_scoped_release unlocked;
                    sm = (*t).step();
                }
                nb::dict d;
                d["step"] = sm.step;
                d["loss"] = sm.loss;
                d["lr"] = sm.lr;
                d["grad_norm"] = sm.grad_norm;
                d["tokens_per_s"] = sm.tokens_per_s;
                return d;
            },
            nb::sig("def step(self) -> dict[str, float]"),
            "One optimizer step on the next batch; returns {step, loss, lr, grad_norm, "
            "tokens_per_s}.")
        .def(
            "validation_loss",
            [](PyTrainer& self) {
                Busy t(self);
                nb::gil_scoped_release unlocked;
                return (*t).validation_loss();
            },
            "Mean loss over the validation batches (the same windows every time).")
        .def(
            "save_checkpoint",
            [](PyTrainer& self) {
                Busy t(self);
                nb::gil_scoped_release unlocked;
                (*t).save_checkpoint();
            },
            "Writes out_dir/checkpoint.safetensors (atomically).")
        .def(
            "export_model",
            [](PyTrainer& self) {
                Busy t(self);
                nb::gil_scoped_release unlocked;
                (*t).export_model();
            },
            "Writes out_dir/model/ (config.json, model.safetensors, tokenizer.json) and "
            "out_dir/model.bitt.")
        .def_prop_ro(
            "steps_done", [](PyTrainer& self) { return (*Busy(self)).steps_done(); },
            "Optimizer steps done so far.")
        .def_prop_ro(
            "losses", [](PyTrainer& self) { return (*Busy(self)).losses(); },
            "The training loss of every step so far.")
        .def_prop_ro(
            "config", [](PyTrainer& self) { return (*Busy(self)).options().model; },
            "The model's ModelConfig (vocab_size from the tokenizer).")
        .def_prop_ro(
            "tokenizer", [](PyTrainer& self) { return (*Busy(self)).tokenizer(); },
            "The Tokenizer in use.")
        .def_prop_ro(
            "out_dir", [](PyTrainer& self) { return (*Busy(self)).options().out_dir; },
            "Where checkpoints, metrics and the exported model go.");
}

}  // namespace bitttt::python
