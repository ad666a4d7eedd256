#include "cli/model_options.hpp"

#include <charconv>
#include <limits>

#include "core/error.hpp"
#include "core/threads.hpp"
#include "model/config.hpp"
#include "model/weights.hpp"

namespace bitttt::cli {

std::shared_ptr<const Model> open_model(const std::string& spec, const DeviceOptions& device) {
    if (spec == "random" || spec.rfind("random:", 0) == 0) {
        ModelConfig config;
        if (spec.size() > 7)
            config = ModelConfig::load(spec.substr(7));
        else
            config.resolve_and_validate();
        // Quantizing fp32 master weights is exact but slow for big shapes; those get packed codes.
        constexpr int64_t kMasterLimit = int64_t{64} << 20;
        return Model::from_weights(parameter_count(config) <= kMasterLimit
                                       ? ModelWeights::random(config, 1)
                                       : ModelWeights::random_packed(config, 1),
                                   nullptr, device);
    }
    return Model::load(spec, device);
}

DeviceOptions DeviceFlags::options() const {
    DeviceOptions o;
    o.device = parse_device(device);
    check(gpu_layers >= -1, ErrorKind::kInvalidArgument,
          "--n-gpu-layers must be -1 (all) or >= 0, got {}", gpu_layers);
    check(o.device == Device::kCuda || gpu_layers == -1, ErrorKind::kInvalidArgument,
          "--n-gpu-layers needs --device cuda");
    o.gpu_layers = gpu_layers;
    o.dense_bf16 = !dense_f32;
    o.lm_head = parse_lm_head(lm_head);
    return o;
}

void add_device_options(CLI::App* cmd, DeviceFlags& flags) {
    cmd->add_option("--device", flags.device, "Where the model runs: cpu or cuda (GPU 0)")
        ->capture_default_str();
    cmd->add_option("--n-gpu-layers", flags.gpu_layers,
                    "With --device cuda: blocks on the GPU, the rest on the CPU (-1: all; the "
                    "embedding goes with block 0, lm_head only when every block is on the GPU)")
        ->capture_default_str();
    cmd->add_flag("--dense-f32", flags.dense_f32,
                  "With --device cuda: keep embedding and lm_head in fp32 on the GPU (default "
                  "bf16: half the bytes)");
    add_lm_head_option(cmd, flags.lm_head);
}

void add_lm_head_option(CLI::App* cmd, std::string& lm_head) {
    cmd->add_option("--lm-head", lm_head,
                    "How the CPU computes the logits: bf16 (weights rounded to bf16 at load), "
                    "f32, or int8 (per-row int8 weights x per-token int8 activations: half the "
                    "bytes of bf16; the logits change slightly)")
        ->capture_default_str();
}

void add_sampling_options(CLI::App* cmd, SamplingOptions& o) {
    cmd->add_option("--temperature", o.temperature, "Sampling temperature (0: greedy)")
        ->capture_default_str();
    cmd->add_option("--top-k", o.top_k, "Sample from the k most likely tokens (0: all)")
        ->capture_default_str();
    cmd->add_option("--top-p", o.top_p, "Nucleus sampling: smallest set with this probability")
        ->capture_default_str();
    cmd->add_option("--repeat-penalty", o.repeat_penalty,
                    "Penalty for recently seen tokens (1: none)")
        ->capture_default_str();
    cmd->add_option("--repeat-last-n", o.repeat_last_n, "Tokens the repeat penalty looks back")
        ->capture_default_str();
    cmd->add_option("--seed", o.seed, "Random seed of the sampler")->capture_default_str();
}

std::vector<int32_t> parse_ids(const std::string& text) {
    std::vector<int32_t> ids;
    size_t i = 0;
    while (i < text.size()) {
        if (text[i] == ',' || text[i] == ' ' || text[i] == '\n' || text[i] == '\t') {
            ++i;
            continue;
        }
        size_t end = text.find_first_of(", \n\t", i);
        if (end == std::string::npos) end = text.size();
        int64_t v = 0;
        auto [ptr, ec] = std::from_chars(text.data() + i, text.data() + end, v);
        check(ec == std::errc() && ptr == text.data() + end && v >= 0 &&
                  v <= std::numeric_limits<int32_t>::max(),
              ErrorKind::kInvalidArgument, "bad token id '{}'", text.substr(i, end - i));
        ids.push_back(static_cast<int32_t>(v));
        i = end;
    }
    return ids;
}

void apply_threads(int threads) {
    set_num_threads(threads);
}

}  // namespace bitttt::cli
