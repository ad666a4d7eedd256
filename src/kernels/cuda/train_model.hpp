// The training model on the GPU (DESIGN.md §2, §2.4, §5): train::TrainModel's forward and backward
// with every buffer in device memory, plus the optimizer step (global gradient norm, clipping and
// AdamW) so that a training step needs no host round trip beyond its loss and gradient norm.
//
// Same parameter table, flat layout (train::ParamLayout) and formulas as the CPU model, so the
// parameter, gradient and AdamW moment buffers copy 1:1 between the two: a run moves between CPU
// and GPU by resuming a checkpoint (the Trainer does the copies).
//
// Precision of the products (TrainPrecision):
//   kFp32  every product in fp32 (cuBLAS SGEMM, no TF32) on the fake-quantized values, like the
//          CPU: for the gradient checks against TrainModel<float>.
//   kBf16  (training default) tensor-core products with fp32 accumulation. BitLinear forward:
//          integer codes of activations (|c| <= 127) times ternary codes, both exact in bf16, the
//          fp32 sums of at most 2^24 / 127 terms exact too, then one rescale γ/127 · β per output
//          (DESIGN.md §2.1): the same values as fp32 up to the order of float rounding. BitLinear
//          backward: dout rounded to bf16 (dinp = β · bf16(dout) · codes_W; dW = (bf16(γ/127 ·
//          dout))ᵀ · codes_x), the usual mixed-precision gradient. lm_head: bf16 weights and
//          normed inputs, logits and their gradient (bf16) from the fused cross-entropy. The small
//          ttt.lr projection of the delta rule stays fp32.
// Plain C++ (no CUDA types): includes compile without nvcc; built only with the CUDA backend.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/device.hpp"
#include "model/config.hpp"
#include "train/model.hpp"
#include "train/optimizer.hpp"

namespace bitttt::cuda {

enum class TrainPrecision { kFp32, kBf16 };

// Storage of the AdamW moments on the GPU. kBf16 (opt-in) halves the optimizer state: each step
// runs in fp32 and rounds the new moments to bf16 stochastically (train_ops.hpp,
// train_adamw_bf16_moments). kInt8 (opt-in) quarters it: one byte per moment in blocks of 256 with
// an fp32 absmax scale per block, a 4-bit-exponent float code (m signed, √v unsigned), rounded
// stochastically (moment_code.hpp, train_lean_ops.hpp). upload/download still take fp32 (converted
// on the host, rounded to nearest), so checkpoints keep the fp32 format and move between devices
// and settings.
enum class OptimizerState { kFp32, kBf16, kInt8 };

// Storage of the gradient buffer. kBf16 (opt-in, bf16 products only): every BitLinear and lm_head
// weight gradient is written by its one cuBLAS product as bf16 from the fp32 accumulation (one
// rounding, the precision its bf16 operands already have); the atomically accumulated ones
// (embedding, norm weights, ttt.lr) are summed in fp32 and rounded once. The gradient norm and
// AdamW read them widened to fp32.
enum class GradPrecision { kFp32, kBf16 };

// GpuMemoryOptions::int8_forward: int8 forward products where they are faster.
inline constexpr int kInt8ForwardAuto = -1;
// GpuMemoryOptions::overlap_wgrad: on where it was measured faster (hidden_dim >= 1024).
inline constexpr int kOverlapAuto = -1;

// Memory settings, none of which changes the training math except bf16/int8 moments and bf16
// gradients. Defaults: fp32 moments and gradients, the MLP products kept, the cheap activations
// recomputed (memory_plan).
struct GpuMemoryOptions {
    OptimizerState moments = OptimizerState::kFp32;
    // The MLP branch's inputs are not kept per layer but recomputed before each layer's
    // backward: the SwiGLU inputs (gate and up products, 2·M floats per token and layer, the
    // largest activations kept; two more products per layer, about +1/5 of the layers' product
    // FLOPs) and the branch's residual input h = x + TTT branch (D floats per token and layer;
    // one more product of the TTT output, Dt x D), the same values (same cuBLAS calls and
    // kernels on the same inputs), so the same training math.
    bool recompute_mlp = false;
    // Keep every layer's normed/quantized product inputs, normalized TTT inputs and SwiGLU
    // codes instead of recomputing them before its backward (the default recomputes them: the
    // same values, 0.8 ms (9%) more per step at the default config on an H100, and 0.05-0.7 GB
    // less at the VRAM table's configs). With the bf16 products also every layer's ternary codes
    // (2 bytes per BitLinear weight), so that the backward does not quantize each layer again.
    bool keep_activations = false;
    GradPrecision grads = GradPrecision::kFp32;
    // The forward BitLinear products as int8 tensor-core products of the codes (int8_gemm.hpp):
    // the same values bit for bit as the bf16 products (the codes and their sums are exact in
    // both), at up to twice the rate. A mask of the products that may: 1 the TTT projections
    // (down/up; q, k, v, o), 2 gate/up, 4 down; 0 none (the bf16 products); kInt8ForwardAuto
    // (the default): all of them where hidden_dim >= 1024, none below (on an H100: 3.7% (delta
    // 2.5%) faster steps at D=1024; no gain at D=256, whose K=256 products are bound by writing
    // their outputs, bench/RESULTS.md). Adds int8 copies of one layer's weight codes and of one
    // product input (N x max(D, ttt_dim, mlp_dim) bytes). Taken with the bf16 products, act_bits
    // 8, quantized weights and D, ttt_dim, mlp_dim multiples of 16. BITTTT_CUDA_INT8_FORWARD in
    // the environment (a mask, 0 = none) narrows it for comparisons.
    int int8_forward = kInt8ForwardAuto;
    // 1 on, 0 off, kOverlapAuto (default) on where hidden_dim >= 1024 (measured faster there;
    // not measured below). Taken with the bf16 products and kept activations (the throughput
    // setting; not with the memory-lean ones, where its cuBLAS state cost ~0.06 GB): the
    // backward's weight-gradient products (dW += doutᵀ · x of every BitLinear and lm_head) run on
    // a second stream with its own cuBLAS handle and workspace, beside the activation-gradient
    // chain (SwiGLU/RMSNorm backward, the TTT scan backward), with events for their inputs and
    // for the buffers they read. Every gradient buffer gets the same products in the same order:
    // the same bits. Costs a second cuBLAS workspace and a second bf16 buffer of the scaled dout
    // (N x max(D, ttt_dim); these buffers were N x mlp_dim before, so the plan shrinks). The main
    // stream runs at the device's highest priority. In the environment (comparisons):
    // BITTTT_CUDA_OVERLAP 0 off, 2 without the priority; BITTTT_CUDA_OVERLAP_SMS the SM count the
    // large products aim at (default 96: cuBLAS's kernels otherwise hold every SM, and the main
    // stream's kernels wait; 0: all).
    int overlap_wgrad = kOverlapAuto;
    // Opt-in, CHANGES THE TRAINING MATH (bf16 products only): the activation-gradient product
    // whose consumer is an elementwise kernel writes bf16 instead of fp32, as PyTorch's bf16
    // autocast does: the down projection's dx (the SwiGLU backward's dout) is rounded to bf16
    // once (the SwiGLU backward then writes bf16 gradients anyway). Halves that product's
    // output and the SwiGLU backward's read of it. BITTTT_CUDA_BF16_DX=1 in the environment
    // turns it on (benchmarks).
    bool bf16_dx = false;
};

// Device memory by purpose, in bytes (GpuTrainModel::memory_plan).
struct MemoryItem {
    std::string name;
    int64_t bytes = 0;
};

class GpuTrainModel {
  public:
    // Allocates parameters, gradients and AdamW moments on device 0 (throws Error "CUDA: ..."
    // without a GPU). Contents start at zero; upload the parameters before the first forward.
    GpuTrainModel(const ModelConfig& config, TrainPrecision precision,
                  GpuMemoryOptions memory = {});
    ~GpuTrainModel();
    GpuTrainModel(const GpuTrainModel&) = delete;
    GpuTrainModel& operator=(const GpuTrainModel&) = delete;

    const ModelConfig& config() const;
    const train::ParamLayout& layout() const;
    TrainPrecision precision() const;
    // Off: BitLinear weights are used as they are (an exact fp model, for gradient checks).
    void set_quantize_weights(bool on);

    // Parameter-shaped buffers (layout().total floats, padding included), synchronous copies of
    // fp32 values (bf16 gradients and bf16/int8 moments are converted on the host: upload rounds
    // to nearest, download returns the stored values exactly).
    enum class Buffer { kParams, kGrads, kAdamM, kAdamV };
    void upload(Buffer which, const float* host);
    void download(Buffer which, float* host) const;

    // Forward over inputs [B, T] (host ids, checked against the vocabulary); with targets returns
    // the mean loss (waits for the GPU) and leaves the gradient of the logits for backward();
    // without, leaves the logits (download_logits) and returns 0.
    double forward(const int32_t* inputs, const int32_t* targets, int64_t B, int64_t T);
    void download_logits(float* host) const;  // [B·T, V] after a forward without targets
    void zero_grad();
    // Adds the gradient of the last forward's mean loss to the gradient buffer (asynchronous).
    void backward();

    struct StepResult {
        double loss = 0, grad_norm = 0;
    };
    // One optimizer step (as Trainer::step on the CPU): forward, zero_grad, backward, global
    // gradient norm, clipping to grad_clip and AdamW at learning rate lr and 1-based step t. One
    // synchronization, at the end, for the loss and the norm. When either is not finite the
    // parameters and moments are left unchanged (the caller reports).
    StepResult train_step(const int32_t* inputs, const int32_t* targets, int64_t B, int64_t T,
                          float lr, float grad_clip, int64_t t, const train::AdamWConfig& adamw);

    // Phase timing for benchmarks: when on, train_step records device events between its phases
    // (weight quantization, layers without the scan, TTT scan forward/backward, lm_head,
    // optimizer) and phase_ms() returns the milliseconds summed per phase since it was turned on.
    // With BITTTT_CUDA_PROFILE=1 in the environment it times every op instead (an event after
    // each kernel and product; products labelled by shape), for a per-kernel breakdown.
    void set_phase_timing(bool on);
    std::vector<std::pair<std::string, double>> phase_ms() const;

    // Device bytes this model holds now (parameters, moments, activations, workspaces, cuBLAS's
    // workspace).
    int64_t allocated_bytes() const;
    // Where the bytes of a model training on batches [B, T] go, computed on the host exactly as
    // the model carves its buffers (no GPU needed): parameters, gradients, moments, the one
    // layer's quantized weights, saved activations, TTT scan checkpoints, the recompute scratch,
    // logits, backward buffers, workspaces. Its sum equals allocated_bytes() after a step at
    // [B, T]. Memory layout (defaults): per layer the model keeps only what the backward
    // cannot recompute cheaply (the residual stream before each branch, the TTT input f before
    // its L2 norm, the quantized TTT output, the SwiGLU inputs, the scan checkpoints); the normed
    // and quantized inputs of the products, the normalized TTT inputs and the SwiGLU output codes
    // are recomputed into one scratch set by the same kernels (identical values), and the
    // ternary codes exist for one layer at a time.
    static std::vector<MemoryItem> memory_plan(const ModelConfig& config, TrainPrecision precision,
                                               GpuMemoryOptions memory, int64_t B, int64_t T);
    GpuMemoryOptions memory_options() const;
    // Whether the forward runs some of its BitLinear products in int8 (GpuMemoryOptions::
    // int8_forward, the shapes, the environment and set_quantize_weights allowing).
    bool int8_forward_active() const;
    const Stream& stream() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace bitttt::cuda
