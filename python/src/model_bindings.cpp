// Model: loading (.bitt, model directory, bare safetensors + config), random models, saving.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <optional>
#include <string>

#include "bindings.hpp"
#include "bitttt/tokenizer.hpp"
#include "core/error.hpp"
#include "io/safetensors.hpp"
#include "model/config.hpp"
#include "model/gpu_model.hpp"
#include "model/loader.hpp"
#include "model/weights.hpp"

namespace bitttt::python {
namespace {

// device -> DeviceOptions: 'cpu', or 'cuda' / 'cuda:0' (raises the engine's "CUDA: ..." error
// when this build has no CUDA backend or there is no GPU; the model constructors check again).
DeviceOptions device_options(const std::string& device, int64_t n_gpu_layers,
                             bool dense_bf16 = true, const std::string& lm_head = "bf16") {
    DeviceOptions o;
    o.dense_bf16 = dense_bf16;
    o.lm_head = parse_lm_head(lm_head);
    o.device = parse_device(device);
    check(o.device == Device::kCuda || n_gpu_layers == -1, ErrorKind::kInvalidArgument,
          "n_gpu_layers needs device='cuda'");
    check(n_gpu_layers >= -1, ErrorKind::kInvalidArgument,
          "n_gpu_layers must be -1 (all) or >= 0, got {}", n_gpu_layers);
    o.gpu_layers = n_gpu_layers;
    if (o.device == Device::kCuda) require_gpu("device='cuda'");
    return o;
}

void check_device(const std::string& device) {
    device_options(device, -1);
}

std::shared_ptr<const Tokenizer> share(const std::optional<Tokenizer>& tokenizer,
                                       const ModelConfig& config) {
    if (!tokenizer) return nullptr;
    check(tokenizer->vocab_size() <= config.vocab_size, ErrorKind::kDimensionMismatch,
          "model: the tokenizer has {} tokens, more than the model's vocabulary of {}",
          tokenizer->vocab_size(), config.vocab_size);
    return std::make_shared<const Tokenizer>(*tokenizer);
}

io::DType parse_float_dtype(const std::string& name) {
    if (name == "f32" || name == "F32") return io::DType::kF32;
    if (name == "bf16" || name == "BF16") return io::DType::kBF16;
    if (name == "f16" || name == "F16") return io::DType::kF16;
    fail(ErrorKind::kInvalidArgument, "dtype must be 'f32', 'bf16' or 'f16', got '{}'", name);
}

}  // namespace

void bind_model(nb::module_& m) {
    m.def("check_device", &check_device, nb::arg("device"),
          "Raises unless models can run on `device` ('cpu' always can).");

    nb::class_<PyModel>(m, "Model",
                        "A loaded model: immutable weights (packed ternary) and an optional "
                        "tokenizer, shared by any number of Sessions.")
        .def_static(
            "load",
            [](const Path& path, const std::string& device, int64_t n_gpu_layers, bool dense_bf16,
               const std::string& lm_head) {
                const DeviceOptions placement =
                    device_options(device, n_gpu_layers, dense_bf16, lm_head);
                nb::gil_scoped_release release;
                return PyModel{Model::load(path.string(), placement)};
            },
            nb::arg("path"), nb::arg("device") = "cpu", nb::arg("n_gpu_layers") = -1,
            nb::arg("dense_bf16") = true, nb::arg("lm_head") = "bf16",
            "Loads a .bitt file or a model directory (config.json + model.safetensors [+ "
            "tokenizer.json]). device='cuda' uploads the packed weights to GPU 0 (the first "
            "n_gpu_layers blocks, -1: all; the rest run on the CPU; embedding and lm_head as bf16 "
            "unless dense_bf16=False). lm_head: how the CPU computes the logits, 'bf16' "
            "(default), 'f32' or 'int8' (opt-in: per-row int8 weights and per-token int8 "
            "activations, half the bytes of bf16; the logits change slightly); ValueError for "
            "another value. OSError for a missing file, "
            "ValueError for a malformed one, RuntimeError for device='cuda' without a CUDA build "
            "or a GPU.")
        .def_static(
            "from_safetensors",
            [](const Path& path, const ModelConfig& config,
               const std::optional<Tokenizer>& tokenizer, const std::string& device,
               int64_t n_gpu_layers) {
                const DeviceOptions placement = device_options(device, n_gpu_layers);
                auto shared_tokenizer = share(tokenizer, config);
                nb::gil_scoped_release release;
                return PyModel{Model::from_weights(load_master_safetensors(path.string(), config),
                                                   shared_tokenizer, placement)};
            },
            nb::arg("path"), nb::arg("config"), nb::arg("tokenizer") = nb::none(),
            nb::arg("device") = "cpu", nb::arg("n_gpu_layers") = -1,
            "Loads a model.safetensors of master weights (F32/BF16/F16, tensor names of "
            "ModelConfig.parameter_shapes()) with the given config; BitLinear weights are "
            "quantized and packed.")
        .def_static(
            "random",
            [](const ModelConfig& config, uint64_t seed, const std::optional<Tokenizer>& tokenizer,
               const std::string& device, int64_t n_gpu_layers, bool dense_bf16,
               const std::string& lm_head) {
                const DeviceOptions placement =
                    device_options(device, n_gpu_layers, dense_bf16, lm_head);
                auto shared_tokenizer = share(tokenizer, config);
                nb::gil_scoped_release release;
                return PyModel{Model::from_weights(ModelWeights::random(config, seed),
                                                   shared_tokenizer, placement)};
            },
            nb::arg("config"), nb::arg("seed") = 0, nb::arg("tokenizer") = nb::none(),
            nb::arg("device") = "cpu", nb::arg("n_gpu_layers") = -1, nb::arg("dense_bf16") = true,
            nb::arg("lm_head") = "bf16",
            "A model with random weights (normal, std 1/sqrt(fan_in); norms 1), for tests and "
            "benchmarks; device, n_gpu_layers, dense_bf16 and lm_head as in Model.load.")
        .def(
            "save_bitt",
            [](const PyModel& self, const Path& path, const std::string& dtype) {
                const io::DType float_dtype = parse_float_dtype(dtype);
                const Tokenizer* tok = self.model->tokenizer();
                std::optional<std::string> json;
                if (tok) json = tok->to_json();
                nb::gil_scoped_release release;
                save_bitt(path.string(), self.model->weights(), json, float_dtype);
            },
            nb::arg("path"), nb::arg("dtype") = "f32",
            "Writes the model as one .bitt inference file (packed ternary weights; floating-point "
            "tensors as dtype 'f32', 'bf16' or 'f16').")
        .def(
            "save_dir",
            [](const PyModel& self, const Path& dir, const std::string& dtype) {
                const io::DType float_dtype = parse_float_dtype(dtype);
                const Tokenizer* tok = self.model->tokenizer();
                std::optional<std::string> json;
                if (tok) json = tok->to_json();
                nb::gil_scoped_release release;
                save_model_dir(dir.string(), self.model->weights(), json, float_dtype);
            },
            nb::arg("dir"), nb::arg("dtype") = "f32",
            "Writes a model directory: config.json, model.safetensors (master weights that "
            "quantize back to exactly these ternary weights) and tokenizer.json if any.")
        .def_prop_ro(
            "config", [](const PyModel& self) { return self.model->config(); }, "The ModelConfig.")
        .def_prop_ro(
            "tokenizer",
            [](const PyModel& self) -> std::optional<Tokenizer> {
                const Tokenizer* tok = self.model->tokenizer();
                if (!tok) return std::nullopt;
                return *tok;  // a cheap copy sharing the immutable state
            },
            "The model's Tokenizer, or None.")
        .def_prop_ro(
            "vocab_size", [](const PyModel& self) { return self.model->config().vocab_size; },
            "Logits per token.")
        .def_prop_ro(
            "identity_hash", [](const PyModel& self) { return self.model->identity_hash(); },
            "XXH3-64 of the config and weights: the identity saved TTT states are checked "
            "against.")
        .def_prop_ro(
            "device",
            [](const PyModel& self) {
                return self.model->device_options().device == Device::kCuda ? "cuda" : "cpu";
            },
            "'cpu' or 'cuda' (where the model was placed).")
        .def_prop_ro(
            "n_gpu_layers",
            [](const PyModel& self) { return self.model->device_options().gpu_layers; },
            "Blocks that run on the GPU (0 on the CPU).")
        .def("__repr__", [](const PyModel& self) {
            const ModelConfig& c = self.model->config();
            return "Model(vocab_size=" + std::to_string(c.vocab_size) +
                   ", hidden_dim=" + std::to_string(c.hidden_dim) +
                   ", num_layers=" + std::to_string(c.num_layers) + ", ttt_rule='" +
                   std::string(ttt_rule_name(c.ttt_rule)) + "')";
        });
}

}  // namespace bitttt::python
