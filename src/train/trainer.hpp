// The training loop (DESIGN.md §2.4): data, model, AdamW with warmup + cosine schedule and
// global-norm clipping, periodic validation, metrics.jsonl, a progress bar, atomic checkpoints
// that resume bit for bit, Ctrl-C handling, and the final export for inference.
//
// Output directory (--out):
//   metrics.jsonl              one JSON object per step {step, loss, lr, grad_norm, tokens_per_s,
//                              elapsed_s} and per evaluation {step, val_loss}
//   checkpoint.safetensors     the latest checkpoint (checkpoint.hpp)
//   tokenizer.json             the tokenizer trained on the data (when none was given)
//   cache/                     token files of the data (data.hpp)
//   model/                     config.json + model.safetensors + tokenizer.json (a model directory)
//   model.bitt                 the same as one packed inference file
#pragma once

#include <bitttt/tokenizer.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "train/data.hpp"
#include "train/model.hpp"
#include "train/optimizer.hpp"

namespace bitttt::train {

struct TrainOptions {
    ModelConfig model;  // vocab_size is taken from the tokenizer when one is given
    int64_t steps = 1000;
    bool steps_explicit = false;  // on resume: keep `steps` instead of the checkpoint's
    int64_t batch_size = 16;
    int64_t context_len = 128;
    float lr = 3e-4f;
    float min_lr = 1e-5f;
    int64_t warmup_steps = 100;
    float grad_clip = 1.0f;
    AdamWConfig adamw;
    int64_t save_interval = 500;  // steps between checkpoints (0: only at the end)
    int64_t eval_interval = 100;  // steps between validation losses (0: only at the end)
    int64_t eval_batches = 8;     // batches of the validation split per evaluation
    uint64_t seed = 1337;
    std::string data;       // training text (.txt / .gz)
    std::string val_data;   // held-out text; empty: the last 5% of the training tokens
    std::string tokenizer;  // tokenizer.json; empty: byte-level (vocab <= 257) or trained
    std::string out_dir = "out";
    std::string resume;        // checkpoint to resume from
    int64_t stop_at_step = 0;  // > 0: save a checkpoint and stop after this step (time slicing)
    bool progress = true;      // progress bar on stderr
    bool export_model = true;  // write model/ and model.bitt at the end
    // "cpu" or "cuda" (DESIGN.md §5: the same model, parameter layout and checkpoints on the GPU;
    // not part of the checkpoint, so a run can resume on the other device).
    std::string device = "cpu";
    // Products on the CPU: "fp32" (the default: the GPU trainer's reference) or "bf16" (lm_head and
    // the BitLinear backward products with bf16 operands and fp32 sums, AVX-512 BF16 where the
    // CPU has it; TrainModel::bf16_products). Not part of the checkpoint (the parameters and
    // moments stay fp32), so a run resumes in either precision.
    std::string cpu_precision = "fp32";
    // Products on the GPU: "bf16" (tensor cores, fp32 accumulation) or "fp32" (as the CPU).
    std::string gpu_precision = "bf16";
    // AdamW moments on the GPU: "fp32", "bf16" (half the optimizer state) or "int8" (a quarter:
    // blockwise-scaled 8-bit codes), both rounded stochastically; checkpoints stay fp32, so a run
    // resumes with any setting or on the CPU.
    std::string gpu_optimizer_state = "fp32";
    // The gradient buffer on the GPU: "fp32" or "bf16" (half its memory; needs gpu_precision
    // bf16, whose products already round their operands to bf16).
    std::string gpu_grad_precision = "fp32";
    // Recompute the MLP's inputs (gate/up products and the branch input h) in the backward
    // instead of keeping them (less GPU memory, ~5-10% more time per step, the same math).
    bool gpu_recompute_mlp = false;
    // Opt-in, changes the training math: the GPU backward's down-projection dx in bf16
    // (GpuMemoryOptions::bf16_dx; bf16 products only).
    bool gpu_bf16_dx = false;
    // The activations the GPU backward can recompute (normed/quantized product inputs, the
    // normalized TTT inputs, SwiGLU codes): "keep" (~9% faster steps), "recompute" (0.05-0.7 GB
    // less at the VRAM table's configs), or "auto": keep them when the whole training state with
    // them (GpuTrainModel::memory_plan) fits in 90% of the GPU's free memory, else recompute.
    std::string gpu_activations = "auto";
};

enum class TrainOutcome { kFinished, kStopped, kInterrupted };

struct StepMetrics {
    int64_t step = 0;  // steps done after this one
    double loss = 0, grad_norm = 0, tokens_per_s = 0;
    float lr = 0;
};

class Trainer {
  public:
    explicit Trainer(TrainOptions options);
    ~Trainer();

    // Runs until options.steps (or stop_at_step, or SIGINT when handle_sigint() is installed).
    TrainOutcome run();
    // One optimizer step on the next batch. Throws Error naming the step and the tensor when
    // the loss or a gradient is not finite (nothing is updated then).
    StepMetrics step();
    // Mean loss over the validation batches (fixed windows, the same every time).
    double validation_loss();
    void save_checkpoint() const;
    // For reference implementations: the gradient of the loss on the next batch at the current
    // weights (no update) as safetensors: `param.<name>`, `grad.<name>` (F32), `inputs` and
    // `targets` (F32 holding the ids, [B, T]); metadata "config" and "loss".
    void dump_gradient(const std::string& path);
    void export_model() const;

    int64_t steps_done() const { return step_; }
    // The host model; with --device cuda its parameters are refreshed from the GPU only by
    // save_checkpoint(), export_model() and dump_gradient().
    TrainModel<float>& model() { return *model_; }
    bool on_gpu() const { return gpu_ != nullptr; }
    const TrainOptions& options() const { return options_; }
    const Tokenizer& tokenizer() const { return *tokenizer_; }
    const std::vector<double>& losses() const { return losses_; }

    // Ctrl-C: the first SIGINT asks the running loop to save a checkpoint and stop (a second one
    // kills the process as usual).
    static void handle_sigint();

  private:
    struct Gpu;  // the GPU model (defined only when the CUDA backend is built)
    // Copies the GPU's parameters (and moments) into the host model and moments.
    void pull_from_gpu() const;
    // Throws the CPU trainer's errors naming the step and the first non-finite tensor.
    void report_non_finite(double loss, double norm) const;

    TrainOptions options_;
    std::unique_ptr<Gpu> gpu_;
    std::optional<Tokenizer> tokenizer_;
    std::unique_ptr<TrainModel<float>> model_;
    mutable AlignedBuffer<float> adam_m_, adam_v_;  // pulled from the GPU before a save
    std::vector<int32_t> train_tokens_, val_tokens_;
    std::unique_ptr<BatchSampler> sampler_;
    std::vector<int32_t> inputs_, targets_;
    int64_t step_ = 0;
    std::vector<double> losses_;
    double elapsed_s_ = 0;
};

}  // namespace bitttt::train
