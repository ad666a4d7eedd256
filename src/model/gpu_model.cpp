// GpuModel: the one upload of a model's GPU blocks (packed codes copied as they are, never
// dequantized), and require_gpu.
#include "model/gpu_model.hpp"

#include <vector>

#include "core/error.hpp"
#include "io/safetensors.hpp"

#if BITTTT_HAS_CUDA
#include "kernels/cuda/device.hpp"
#include "model/gpu_model_impl.hpp"
#endif

namespace bitttt {

#if BITTTT_HAS_CUDA

void require_gpu(const char* what) {
    cuda::require_device(what);
}

namespace {

// Collects fp32 tensors into one host vector (each at a 16-byte aligned offset), uploaded at once;
// the offsets become device pointers after the upload.
class FloatPack {
  public:
    size_t add(const float* data, int64_t n) {
        const size_t at = host_.size();
        host_.insert(host_.end(), data, data + n);
        host_.resize((host_.size() + 3) / 4 * 4, 0.0f);
        return at;
    }
    size_t add_value(float value, int64_t n) {
        std::vector<float> v(static_cast<size_t>(n), value);
        return add(v.data(), n);
    }
    cuda::DeviceBuffer upload() const {
        cuda::DeviceBuffer buffer(std::max<size_t>(host_.size() * sizeof(float), 16));
        buffer.copy_from_host(host_.data(), host_.size() * sizeof(float));
        return buffer;
    }

  private:
    std::vector<float> host_;
};

}  // namespace

GpuModel::GpuModel(const ModelWeights& w, int64_t layers, bool dense_bf16)
    : impl_(std::make_unique<Impl>()) {
    require_gpu("model upload");
    Impl& g = *impl_;
    const ModelConfig& c = w.config;
    check(layers >= 1 && layers <= c.num_layers, ErrorKind::kInvalidArgument,
          "CUDA: model upload: {} GPU layers of {}", layers, c.num_layers);
    g.config = c;
    g.layers = layers;
    g.has_head = layers == c.num_layers;
    const int64_t D = c.hidden_dim, V = c.vocab_size;

    // Packed codes: one buffer, each tensor at its offset (packed sizes are multiples of 64 bytes,
    // so every tensor stays 16-byte aligned as the products need).
    auto ternary_of = [&](const LayerWeights& lw) {
        std::vector<const kernels::TernaryWeights*> list;
        if (c.ttt_rule == TttRule::kReconstruct)
            list = {&lw.ttt_down, &lw.ttt_up};
        else
            list = {&lw.ttt_q, &lw.ttt_k, &lw.ttt_v, &lw.ttt_o};
        list.insert(list.end(), {&lw.gate_proj, &lw.up_proj, &lw.down_proj});
        return list;
    };
    int64_t code_bytes = 0;
    for (int64_t l = 0; l < layers; ++l)
        for (const auto* t : ternary_of(w.layers[static_cast<size_t>(l)]))
            code_bytes += kernels::packed_bytes(t->rows, t->cols);
    g.codes = cuda::DeviceBuffer(static_cast<size_t>(code_bytes));
    FloatPack pack;
    struct LayerOffsets {
        size_t norm1, norm2, lr_w = 0, lr_b = 0;
    };
    std::vector<LayerOffsets> offsets;
    int64_t at = 0;
    for (int64_t l = 0; l < layers; ++l) {
        const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
        GpuLayer gl;
        auto upload_codes = [&](const kernels::TernaryWeights& t) {
            const int64_t bytes = kernels::packed_bytes(t.rows, t.cols);
            g.codes.copy_from_host(t.codes, static_cast<size_t>(bytes), static_cast<size_t>(at));
            kernels::TernaryWeights d = t;
            d.codes = g.codes.as<uint8_t>() + at;
            at += bytes;
            return d;
        };
        if (c.ttt_rule == TttRule::kReconstruct) {
            gl.ttt_down = upload_codes(lw.ttt_down);
            gl.ttt_up = upload_codes(lw.ttt_up);
        } else {
            gl.ttt_q = upload_codes(lw.ttt_q);
            gl.ttt_k = upload_codes(lw.ttt_k);
            gl.ttt_v = upload_codes(lw.ttt_v);
            gl.ttt_o = upload_codes(lw.ttt_o);
        }
        gl.gate_proj = upload_codes(lw.gate_proj);
        gl.up_proj = upload_codes(lw.up_proj);
        gl.down_proj = upload_codes(lw.down_proj);
        g.layer.push_back(gl);
        LayerOffsets o;
        o.norm1 = pack.add(lw.norm1, D);
        o.norm2 = pack.add(lw.norm2, D);
        if (c.ttt_rule == TttRule::kDelta) {
            o.lr_w = pack.add(lw.ttt_lr_weight, c.ttt_heads * D);
            o.lr_b = pack.add(lw.ttt_lr_bias, c.ttt_heads);
        }
        offsets.push_back(o);
    }
    const size_t ones = pack.add_value(1.0f, c.ttt_dim);
    const size_t inner_lr = pack.add_value(c.inner_lr, 1);
    const size_t norm_f = g.has_head ? pack.add(w.norm_f, D) : 0;

    // Dense tensors: bf16 when asked (lm_head only if the bf16 GEMV takes its rows: D % 8 == 0).
    g.embed_bf16 = dense_bf16;
    g.head_bf16 = dense_bf16 && g.has_head && D % 8 == 0;
    size_t embed_f32 = 0, head_f32 = 0;
    if (!g.embed_bf16) embed_f32 = pack.add(w.embed, V * D);
    if (g.has_head && !g.head_bf16) head_f32 = pack.add(w.lm_head, V * D);
    const int64_t dense_rows = (g.embed_bf16 ? V : 0) + (g.head_bf16 ? V : 0);
    if (dense_rows > 0) {
        std::vector<uint16_t> host(static_cast<size_t>(dense_rows * D));
        size_t i = 0;
        if (g.embed_bf16)
            for (int64_t j = 0; j < V * D; ++j) host[i++] = io::f32_to_bf16(w.embed[j]);
        if (g.head_bf16)
            for (int64_t j = 0; j < V * D; ++j) host[i++] = io::f32_to_bf16(w.lm_head[j]);
        g.dense = cuda::DeviceBuffer(host.size() * sizeof(uint16_t));
        g.dense.copy_from_host(host.data(), host.size() * sizeof(uint16_t));
    }
    g.floats = pack.upload();

    const float* base = g.floats.as<float>();
    for (int64_t l = 0; l < layers; ++l) {
        GpuLayer& gl = g.layer[static_cast<size_t>(l)];
        const LayerOffsets& o = offsets[static_cast<size_t>(l)];
        gl.norm1 = base + o.norm1;
        gl.norm2 = base + o.norm2;
        if (c.ttt_rule == TttRule::kDelta) {
            gl.lr_weight = base + o.lr_w;
            gl.lr_bias = base + o.lr_b;
        }
    }
    g.ones = base + ones;
    g.inner_lr = base + inner_lr;
    const uint16_t* dense = g.dense.as<uint16_t>();
    g.embed = g.embed_bf16 ? static_cast<const void*>(dense) : base + embed_f32;
    if (g.has_head) {
        g.norm_f = base + norm_f;
        g.lm_head = g.head_bf16 ? static_cast<const void*>(dense + (g.embed_bf16 ? V * D : 0))
                                : base + head_f32;
    }
    g.bytes = static_cast<int64_t>(g.codes.bytes() + g.floats.bytes() + g.dense.bytes());
}

GpuModel::~GpuModel() = default;

int64_t GpuModel::layers() const {
    return impl_->layers;
}
bool GpuModel::has_head() const {
    return impl_->has_head;
}
int64_t GpuModel::device_bytes() const {
    return impl_->bytes;
}

#else  // a build without the CUDA backend

namespace {
[[noreturn]] void no_cuda(const char* what) {
    fail(ErrorKind::kUnsupported,
         "CUDA: {}: this build of bitttt has no CUDA backend (no CUDA compiler was found when it "
         "was built); use the CPU",
         what);
}
}  // namespace

void require_gpu(const char* what) {
    no_cuda(what);
}

struct GpuModel::Impl {};
GpuModel::GpuModel(const ModelWeights&, int64_t, bool) {
    no_cuda("model upload");
}
GpuModel::~GpuModel() = default;
int64_t GpuModel::layers() const {
    return 0;
}
bool GpuModel::has_head() const {
    return false;
}
int64_t GpuModel::device_bytes() const {
    return 0;
}

#endif

}  // namespace bitttt
