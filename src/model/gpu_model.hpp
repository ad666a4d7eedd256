// The GPU side of a model (DESIGN.md §5), as the CPU code sees it: no CUDA types, so this header
// compiles in every build. In a build without the CUDA backend the constructors throw
// Error(kUnsupported) "CUDA: ..." (Model::from_weights checks before, so they are never reached).
//
// GpuModel: the device copy of blocks [0, layers) (packed 2-bit codes exactly as on the host, fp32
// norms and step-size projections), the embedding table, and norm_f + lm_head when every block is
// on the GPU. Immutable after construction; shared by the Sessions of the model.
// GpuSession: one Session's device state: the TTT states of those blocks, the scratch activations
// of a chunk of tokens, a stream and the CUDA graph of one decode token.
#pragma once

#include <cstdint>
#include <memory>

#include "bitttt/model.hpp"
#include "model/weights.hpp"

namespace bitttt {

// Throws the kUnsupported "CUDA: <what>: ..." error of a build without CUDA or a machine without a
// GPU; returns otherwise.
void require_gpu(const char* what);

class GpuModel {
  public:
    // Uploads blocks [0, layers) (1 <= layers <= num_layers) of w.
    GpuModel(const ModelWeights& w, int64_t layers, bool dense_bf16);
    ~GpuModel();
    GpuModel(const GpuModel&) = delete;
    GpuModel& operator=(const GpuModel&) = delete;

    int64_t layers() const;
    bool has_head() const;         // norm_f and lm_head are on the GPU (layers == num_layers)
    int64_t device_bytes() const;  // bytes of weights uploaded

    struct Impl;
    const Impl& impl() const { return *impl_; }

  private:
    std::unique_ptr<Impl> impl_;
};

class GpuSession {
  public:
    GpuSession(const GpuModel& model, int64_t max_chunk);
    ~GpuSession();
    GpuSession(const GpuSession&) = delete;
    GpuSession& operator=(const GpuSession&) = delete;

    // Runs n (<= max_chunk) tokens, ids already range-checked, through the embedding and the GPU
    // blocks. With the head on the GPU, writes the last token's logits to `logits` [V] and, if
    // all_logits is not null, every token's to all_logits [n, V]; otherwise writes the hidden
    // states after the last GPU block to host_x [n, D]. Returns once the results are on the host.
    void forward(const int32_t* ids, int64_t n, float* host_x, float* logits, float* all_logits);

    // The TTT states of the GPU blocks, layer after layer in the .tttstate order.
    void download_states(float* host) const;
    void upload_states(const float* host);
    void zero_states();

    struct Impl;

  private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace bitttt
