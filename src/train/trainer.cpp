#include "train/trainer.hpp"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/atomic_file.hpp"
#include "model/loader.hpp"
#include "model/weights.hpp"
#include "train/checkpoint.hpp"
#include "train/data.hpp"
#if BITTTT_HAS_CUDA
#include "kernels/cuda/train_model.hpp"
#endif

namespace bitttt::train {
namespace fs = std::filesystem;

namespace {

volatile std::sig_atomic_t g_interrupted = 0;

extern "C" void on_sigint(int) {
    g_interrupted = 1;
    std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C ends the process at once
}

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::string format_duration(double s) {
    // Beyond ~30,000 years an ETA means nothing (and the cast to int64 would overflow).
    if (!std::isfinite(s) || s < 0 || s > 1e12) return "?";
    const int64_t t = std::llround(s);
    if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t / 60) % 60);
    if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
    return fmt::format("{}s", t);
}

nlohmann::json options_json(const TrainOptions& o) {
    return {{"steps", o.steps},
            {"batch_size", o.batch_size},
            {"context_len", o.context_len},
            {"lr", o.lr},
            {"min_lr", o.min_lr},
            {"warmup_steps", o.warmup_steps},
            {"grad_clip", o.grad_clip},
            {"beta1", o.adamw.beta1},
            {"beta2", o.adamw.beta2},
            {"eps", o.adamw.eps},
            {"weight_decay", o.adamw.weight_decay},
            {"eval_batches", o.eval_batches},
            {"seed", o.seed},
            {"data", o.data},
            {"val_data", o.val_data}};
}

// Restores the options that decide the optimization trajectory from a checkpoint's state.
void restore_options(TrainOptions& o, const nlohmann::json& j, bool keep_steps,
                     const std::string& source) {
    try {
        if (!keep_steps) o.steps = j.at("steps").get<int64_t>();
        o.batch_size = j.at("batch_size").get<int64_t>();
        o.context_len = j.at("context_len").get<int64_t>();
        o.lr = j.at("lr").get<float>();
        o.min_lr = j.at("min_lr").get<float>();
        o.warmup_steps = j.at("warmup_steps").get<int64_t>();
        o.grad_clip = j.at("grad_clip").get<float>();
        o.adamw.beta1 = j.at("beta1").get<float>();
        o.adamw.beta2 = j.at("beta2").get<float>();
        o.adamw.eps = j.at("eps").get<float>();
        o.adamw.weight_decay = j.at("weight_decay").get<float>();
        o.eval_batches = j.at("eval_batches").get<int64_t>();
        o.seed = j.at("seed").get<uint64_t>();
        if (o.data.empty()) o.data = j.at("data").get<std::string>();
        if (o.val_data.empty()) o.val_data = j.at("val_data").get<std::string>();
    } catch (const nlohmann::json::exception& e) {
        fail(ErrorKind::kFormat, "{}: bad training state: {}", source, e.what());
    }
}

void check_options(const TrainOptions& o) {
    auto positive = [](int64_t v, const char* name) {
        check(v > 0, ErrorKind::kInvalidArgument, "--{} must be positive, got {}", name, v);
    };
    positive(o.steps, "steps");
    positive(o.batch_size, "batch-size");
    positive(o.context_len, "context-len");
    positive(o.eval_batches, "eval-batches");
    check(o.batch_size * o.context_len <= (int64_t{1} << 24), ErrorKind::kInvalidArgument,
          "batch-size x context-len = {} tokens per step is too large",
          o.batch_size * o.context_len);
    check(
        o.warmup_steps >= 0 && o.save_interval >= 0 && o.eval_interval >= 0 && o.stop_at_step >= 0,
        ErrorKind::kInvalidArgument,
        "--warmup-steps, --save-interval, --eval-interval and --stop-at must be >= 0");
    check(std::isfinite(o.lr) && o.lr > 0 && std::isfinite(o.min_lr) && o.min_lr >= 0 &&
              o.min_lr <= o.lr,
          ErrorKind::kInvalidArgument, "need 0 <= --min-lr <= --lr and --lr > 0 (got {} and {})",
          o.min_lr, o.lr);
    check(std::isfinite(o.grad_clip) && o.grad_clip > 0, ErrorKind::kInvalidArgument,
          "gradient clipping must be positive");
    check(std::isfinite(o.adamw.weight_decay) && o.adamw.weight_decay >= 0 &&
              o.adamw.weight_decay < 1,
          ErrorKind::kInvalidArgument, "--weight-decay must be in [0, 1), got {}",
          o.adamw.weight_decay);
    check(!o.data.empty(), ErrorKind::kInvalidArgument, "no training data (--data)");
    check(o.device == "cpu" || o.device == "cuda", ErrorKind::kInvalidArgument,
          "--device '{}' is unknown (expected cpu or cuda)", o.device);
    check(o.cpu_precision == "fp32" || o.cpu_precision == "bf16", ErrorKind::kInvalidArgument,
          "--cpu-precision '{}' is unknown (expected fp32 or bf16)", o.cpu_precision);
    check(o.gpu_precision == "bf16" || o.gpu_precision == "fp32", ErrorKind::kInvalidArgument,
          "--gpu-precision '{}' is unknown (expected bf16 or fp32)", o.gpu_precision);
    check(o.gpu_optimizer_state == "fp32" || o.gpu_optimizer_state == "bf16" ||
              o.gpu_optimizer_state == "int8",
          ErrorKind::kInvalidArgument,
          "--gpu-optimizer-state '{}' is unknown (expected fp32, bf16 or int8)",
          o.gpu_optimizer_state);
    check(o.gpu_grad_precision == "fp32" || o.gpu_grad_precision == "bf16",
          ErrorKind::kInvalidArgument,
          "--gpu-grad-precision '{}' is unknown (expected fp32 or bf16)", o.gpu_grad_precision);
    check(o.gpu_grad_precision == "fp32" || o.gpu_precision == "bf16", ErrorKind::kInvalidArgument,
          "--gpu-grad-precision bf16 needs --gpu-precision bf16 (the fp32 products write fp32 "
          "gradients)");
    check(o.gpu_activations == "auto" || o.gpu_activations == "keep" ||
              o.gpu_activations == "recompute",
          ErrorKind::kInvalidArgument,
          "--gpu-activations '{}' is unknown (expected auto, keep or recompute)",
          o.gpu_activations);
#if !BITTTT_HAS_CUDA
    check(o.device != "cuda", ErrorKind::kUnsupported,
          "--device cuda: this build has no CUDA backend (build with a CUDA compiler and "
          "-DBITTTT_CUDA=ON); use --device cpu");
#endif
}

}  // namespace

#if BITTTT_HAS_CUDA
struct Trainer::Gpu {
    cuda::GpuTrainModel model;
};
#else
struct Trainer::Gpu {};
#endif

void Trainer::handle_sigint() {
    g_interrupted = 0;
    std::signal(SIGINT, on_sigint);
}

Trainer::Trainer(TrainOptions options) : options_(std::move(options)) {
    std::optional<Checkpoint> ck;
    if (!options_.resume.empty()) {
        ck = read_checkpoint(options_.resume);
        const nlohmann::json& st = ck->state;
        check(st.contains("options") && st.contains("step") && st.contains("rng"),
              ErrorKind::kFormat, "{}: incomplete training state", options_.resume);
        restore_options(options_, st.at("options"), options_.steps_explicit, options_.resume);
        options_.model = ck->config;
        tokenizer_ = Tokenizer::from_json(ck->tokenizer_json, options_.resume + ": tokenizer");
    }
    check_options(options_);
#if BITTTT_HAS_CUDA
    // Fail before the data work when there is no GPU.
    if (options_.device == "cuda") cuda::require_device("--device cuda");
#endif
    fs::create_directories(options_.out_dir);

    if (!tokenizer_) {
        if (!options_.tokenizer.empty()) {
            tokenizer_ = Tokenizer::load(options_.tokenizer);
        } else if (options_.model.vocab_size <= 257) {
            tokenizer_ = byte_level_tokenizer();
        } else {
            // No tokenizer given: train one of the requested size on the training text.
            TokenizerTrainOptions to;
            to.vocab_size = static_cast<uint32_t>(options_.model.vocab_size);
            if (options_.progress)
                fmt::print(stderr, "training a {}-token tokenizer on {}\n", to.vocab_size,
                           options_.data);
            tokenizer_ = Tokenizer::train({options_.data}, to);
            tokenizer_->save((fs::path(options_.out_dir) / "tokenizer.json").string());
        }
        options_.model.vocab_size = tokenizer_->vocab_size();
        options_.model.resolve_and_validate("model options");
    }

    const std::string cache = (fs::path(options_.out_dir) / "cache").string();
    train_tokens_ = load_corpus(options_.data, *tokenizer_, cache).tokens;
    if (!options_.val_data.empty()) {
        val_tokens_ = load_corpus(options_.val_data, *tokenizer_, cache).tokens;
    } else {
        // Hold out the last 5% of the training tokens (at least one window).
        const size_t n = train_tokens_.size();
        const size_t held = std::max<size_t>(n / 20, static_cast<size_t>(options_.context_len + 1));
        check(n > held + static_cast<size_t>(options_.context_len), ErrorKind::kInvalidArgument,
              "{}: {} tokens are too few to hold out a validation split (give --val-data)",
              options_.data, n);
        val_tokens_.assign(train_tokens_.end() - static_cast<std::ptrdiff_t>(held),
                           train_tokens_.end());
        train_tokens_.resize(n - held);
    }
    check(val_tokens_.size() > static_cast<size_t>(options_.context_len),
          ErrorKind::kInvalidArgument, "the validation data has {} tokens, fewer than {}",
          val_tokens_.size(), options_.context_len + 1);

    model_ = std::make_unique<TrainModel<float>>(options_.model);
    model_->bf16_products = options_.cpu_precision == "bf16";
    if (model_->bf16_products && !model_->bf16_in_use() && options_.device == "cpu")
        std::fprintf(
            stderr, "note: --cpu-precision bf16: this CPU lacks AVX512_BF16, products stay fp32\n");
    adam_m_.resize(static_cast<size_t>(model_->layout().total));
    adam_v_.resize(static_cast<size_t>(model_->layout().total));
    sampler_ = std::make_unique<BatchSampler>(train_tokens_, options_.batch_size,
                                              options_.context_len, options_.seed ^ 0x5eedda7aull);
    if (ck) {
        const ParamLayout& layout = model_->layout();
        ck->copy_tensors(layout, "param", model_->params.data());
        ck->copy_tensors(layout, "adam_m", adam_m_.data());
        ck->copy_tensors(layout, "adam_v", adam_v_.data());
        try {
            step_ = ck->state.at("step").get<int64_t>();
            uint64_t rng[4];
            for (int i = 0; i < 4; ++i)
                rng[i] = std::stoull(ck->state.at("rng").at(i).get<std::string>(), nullptr, 16);
            sampler_->rng().set_state(rng);
            elapsed_s_ = ck->state.value("elapsed_s", 0.0);
        } catch (const std::exception& e) {
            fail(ErrorKind::kFormat, "{}: bad training state: {}", options_.resume, e.what());
        }
        check(step_ >= 0, ErrorKind::kFormat, "{}: negative step", options_.resume);
    } else {
        model_->init_random(options_.seed);
    }
#if BITTTT_HAS_CUDA
    if (options_.device == "cuda") {
        using cuda::GpuTrainModel;
        const auto precision = options_.gpu_precision == "fp32" ? cuda::TrainPrecision::kFp32
                                                                : cuda::TrainPrecision::kBf16;
        const auto state = options_.gpu_optimizer_state == "bf16"   ? cuda::OptimizerState::kBf16
                           : options_.gpu_optimizer_state == "int8" ? cuda::OptimizerState::kInt8
                                                                    : cuda::OptimizerState::kFp32;
        cuda::GpuMemoryOptions memory{state, options_.gpu_recompute_mlp,
                                      options_.gpu_activations == "keep"};
        if (options_.gpu_grad_precision == "bf16") memory.grads = cuda::GradPrecision::kBf16;
        memory.bf16_dx = options_.gpu_bf16_dx;
        auto plan_bytes = [&](const cuda::GpuMemoryOptions& m) {
            int64_t bytes = 0;
            for (const auto& item : GpuTrainModel::memory_plan(
                     options_.model, precision, m, options_.batch_size, options_.context_len))
                bytes += item.bytes;
            return bytes;
        };
        cuda::require_device("GPU training");
        const cuda::DeviceInfo device = cuda::device_info();
        if (options_.gpu_activations == "auto") {
            cuda::GpuMemoryOptions kept = memory;
            kept.keep_activations = true;
            memory.keep_activations =
                static_cast<double>(plan_bytes(kept)) <= 0.9 * double(device.free_bytes);
        }
        // Say up front what the run needs and stop with advice when it cannot fit, instead of
        // failing in an allocation halfway through building the model.
        const int64_t need = plan_bytes(memory);
        constexpr double kGB = 1e9;
        check(need <= device.free_bytes, ErrorKind::kUnsupported,
              "GPU training needs {:.2f} GB on {} but {:.2f} GB are free: try "
              "--gpu-activations recompute, --gpu-optimizer-state int8 --gpu-grad-precision bf16 "
              "--gpu-recompute-mlp, or a smaller --batch-size",
              double(need) / kGB, device.name, double(device.free_bytes) / kGB);
        if (options_.progress)
            fmt::print(stderr,
                       "GPU: {}, training state {:.2f} GB of {:.2f} GB free (activations {})\n",
                       device.name, double(need) / kGB, double(device.free_bytes) / kGB,
                       memory.keep_activations ? "kept" : "recomputed");
        gpu_.reset(new Gpu{GpuTrainModel(options_.model, precision, memory)});
        gpu_->model.upload(GpuTrainModel::Buffer::kParams, model_->params.data());
        gpu_->model.upload(GpuTrainModel::Buffer::kAdamM, adam_m_.data());
        gpu_->model.upload(GpuTrainModel::Buffer::kAdamV, adam_v_.data());
    }
#endif
    const size_t tokens = static_cast<size_t>(options_.batch_size * options_.context_len);
    inputs_.resize(tokens);
    targets_.resize(tokens);
}

Trainer::~Trainer() = default;

void Trainer::report_non_finite(double loss, double norm) const {
    TrainModel<float>& m = *model_;
    const ParamLayout& layout = m.layout();
    if (!std::isfinite(loss)) {
        for (size_t i = 0; i < layout.specs.size(); ++i)
            for (int64_t j = 0; j < layout.specs[i].numel(); ++j)
                check(std::isfinite(m.param(i)[j]), ErrorKind::kInternal,
                      "step {}: the loss is {} (parameter {} is not finite)", step_ + 1, loss,
                      layout.specs[i].name);
        fail(ErrorKind::kInternal, "step {}: the loss is {} (the activations overflowed)",
             step_ + 1, loss);
    }
    if (!std::isfinite(norm)) {
        for (size_t i = 0; i < layout.specs.size(); ++i) {
            const double n = global_norm(m.grad(i), layout.specs[i].numel());
            check(std::isfinite(n), ErrorKind::kInternal,
                  "step {}: non-finite gradient in {} (layer {})", step_ + 1, layout.specs[i].name,
                  layout.specs[i].layer < 0 ? std::string("-")
                                            : std::to_string(layout.specs[i].layer));
        }
    }
}

void Trainer::pull_from_gpu() const {
#if BITTTT_HAS_CUDA
    if (!gpu_) return;
    using cuda::GpuTrainModel;
    gpu_->model.download(GpuTrainModel::Buffer::kParams, model_->params.data());
    gpu_->model.download(GpuTrainModel::Buffer::kAdamM, adam_m_.data());
    gpu_->model.download(GpuTrainModel::Buffer::kAdamV, adam_v_.data());
#endif
}

StepMetrics Trainer::step() {
    const double t0 = now_s();
    TrainModel<float>& m = *model_;
    const ParamLayout& layout = m.layout();
    const int64_t B = options_.batch_size, T = options_.context_len;
    const float lr =
        learning_rate(step_, options_.steps, options_.warmup_steps, options_.lr, options_.min_lr);
    sampler_->next(inputs_.data(), targets_.data());
#if BITTTT_HAS_CUDA
    if (gpu_) {
        // Forward, backward, norm, clipping and AdamW on the GPU; AdamW leaves everything as it
        // was when the loss or the norm is not finite.
        const auto r = gpu_->model.train_step(inputs_.data(), targets_.data(), B, T, lr,
                                              options_.grad_clip, step_ + 1, options_.adamw);
        if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm)) {
            gpu_->model.download(cuda::GpuTrainModel::Buffer::kParams, m.params.data());
            gpu_->model.download(cuda::GpuTrainModel::Buffer::kGrads, m.grads.data());
            report_non_finite(r.loss, r.grad_norm);
        }
        ++step_;
        losses_.push_back(r.loss);
        const double dt = now_s() - t0;
        elapsed_s_ += dt;
        return {step_, r.loss, r.grad_norm, static_cast<double>(B * T) / dt, lr};
    }
#endif
    const double loss = m.forward(inputs_.data(), targets_.data(), B, T);
    if (!std::isfinite(loss)) report_non_finite(loss, 0.0);
    m.zero_grad();
    m.backward();
    const double norm = global_norm(m.grads.data(), layout.total);
    if (!std::isfinite(norm)) report_non_finite(loss, norm);
    // Global-norm clipping folded into AdamW's gradient scale.
    const float scale =
        norm > options_.grad_clip ? static_cast<float>(options_.grad_clip / norm) : 1.0f;
    for (size_t i = 0; i < layout.specs.size(); ++i) {
        const int64_t off = layout.offsets[i];
        adamw_update(m.param(i), m.grad(i), adam_m_.data() + off, adam_v_.data() + off,
                     layout.specs[i].numel(), lr, scale, step_ + 1, layout.specs[i].weight_decay(),
                     options_.adamw);
    }
    ++step_;
    losses_.push_back(loss);
    const double dt = now_s() - t0;
    elapsed_s_ += dt;
    return {step_, loss, norm, static_cast<double>(B * T) / dt, lr};
}

double Trainer::validation_loss() {
    const int64_t B = options_.batch_size, T = options_.context_len;
    const size_t starts = val_tokens_.size() - static_cast<size_t>(T);  // windows of T+1
    double total = 0;
    size_t window = 0;
    for (int64_t b = 0; b < options_.eval_batches; ++b) {
        for (int64_t r = 0; r < B; ++r, ++window) {
            // Consecutive windows, wrapping around when the split is short.
            const size_t s = (window * static_cast<size_t>(T)) % starts;
            for (int64_t t = 0; t < T; ++t) {
                inputs_[r * T + t] = val_tokens_[s + t];
                targets_[r * T + t] = val_tokens_[s + t + 1];
            }
        }
#if BITTTT_HAS_CUDA
        if (gpu_) {
            total += gpu_->model.forward(inputs_.data(), targets_.data(), B, T);
            continue;
        }
#endif
        total += model_->forward(inputs_.data(), targets_.data(), B, T);
    }
    return total / static_cast<double>(options_.eval_batches);
}

void Trainer::save_checkpoint() const {
    pull_from_gpu();
    const uint64_t* s = sampler_->rng().state();
    nlohmann::json state = {{"step", step_},
                            {"rng",
                             {fmt::format("{:016x}", s[0]), fmt::format("{:016x}", s[1]),
                              fmt::format("{:016x}", s[2]), fmt::format("{:016x}", s[3])}},
                            {"elapsed_s", elapsed_s_},
                            {"options", options_json(options_)}};
    CheckpointToWrite c;
    c.layout = &model_->layout();
    c.config = &model_->config();
    c.params = model_->params.data();
    c.adam_m = adam_m_.data();
    c.adam_v = adam_v_.data();
    c.state = std::move(state);
    c.tokenizer_json = tokenizer_->to_json();
    train::save_checkpoint((fs::path(options_.out_dir) / "checkpoint.safetensors").string(), c);
}

void Trainer::dump_gradient(const std::string& path) {
    TrainModel<float>& m = *model_;
    const ParamLayout& layout = m.layout();
    const int64_t B = options_.batch_size, T = options_.context_len;
    sampler_->next(inputs_.data(), targets_.data());
    double loss = 0;
#if BITTTT_HAS_CUDA
    if (gpu_) {
        loss = gpu_->model.forward(inputs_.data(), targets_.data(), B, T);
        gpu_->model.zero_grad();
        gpu_->model.backward();
        gpu_->model.download(cuda::GpuTrainModel::Buffer::kParams, m.params.data());
        gpu_->model.download(cuda::GpuTrainModel::Buffer::kGrads, m.grads.data());
    }
#endif
    if (!gpu_) {
        loss = m.forward(inputs_.data(), targets_.data(), B, T);
        m.zero_grad();
        m.backward();
    }
    std::vector<float> ids[2];
    for (int i = 0; i < 2; ++i)
        for (int32_t id : i == 0 ? inputs_ : targets_) ids[i].push_back(static_cast<float>(id));
    std::vector<io::TensorToWrite> tensors;
    auto add = [&](std::string name, std::vector<int64_t> shape, const float* data, int64_t n) {
        io::TensorToWrite t;
        t.name = std::move(name);
        t.shape = std::move(shape);
        t.bytes = {reinterpret_cast<const uint8_t*>(data), static_cast<size_t>(n) * sizeof(float)};
        tensors.push_back(std::move(t));
    };
    for (size_t i = 0; i < layout.specs.size(); ++i) {
        const ParamSpec& s = layout.specs[i];
        add("param." + s.name, s.shape, m.param(i), s.numel());
        add("grad." + s.name, s.shape, m.grad(i), s.numel());
    }
    add("inputs", {B, T}, ids[0].data(), B * T);
    add("targets", {B, T}, ids[1].data(), B * T);
    io::write_safetensors(
        path, std::move(tensors),
        {{"config", m.config().to_json().dump()}, {"loss", fmt::format("{:.17g}", loss)}});
}

void Trainer::export_model() const {
    pull_from_gpu();
    const fs::path out(options_.out_dir);
    const ParamLayout& layout = model_->layout();
    auto lookup = [&](const ParamSpec& s) -> const float* {
        return model_->params.data() + layout.offsets[static_cast<size_t>(layout.index_of(s.name))];
    };
    const fs::path dir = out / "model";
    fs::create_directories(dir);
    io::write_file_atomic((dir / "config.json").string(),
                          model_->config().to_json().dump(2) + "\n");
    save_safetensors_master((dir / "model.safetensors").string(), model_->config(), lookup);
    tokenizer_->save((dir / "tokenizer.json").string());
    save_bitt((out / "model.bitt").string(), ModelWeights::from_master(model_->config(), lookup),
              tokenizer_->to_json());
}

TrainOutcome Trainer::run() {
    const fs::path out(options_.out_dir);
    errno = 0;
    std::ofstream metrics(out / "metrics.jsonl", std::ios::app);
    check(metrics.good(), ErrorKind::kIo, "{}: cannot open for writing: {}",
          (out / "metrics.jsonl").string(), errno ? std::strerror(errno) : "unknown error");
    const bool tty = isatty(STDERR_FILENO);
    const int64_t line_every = std::max<int64_t>(1, options_.steps / 20);
    const int64_t first_step = step_;
    const double run_start = now_s();
    double last_val = NAN;
    auto evaluate = [&] {
        last_val = validation_loss();
        metrics << nlohmann::json{{"step", step_}, {"val_loss", last_val}}.dump() << "\n";
        metrics.flush();
    };
    while (step_ < options_.steps) {
        if (g_interrupted) {
            save_checkpoint();
            if (options_.progress)
                fmt::print(stderr, "\ninterrupted: checkpoint saved at step {} in {}\n", step_,
                           (out / "checkpoint.safetensors").string());
            return TrainOutcome::kInterrupted;
        }
        const StepMetrics sm = step();
        metrics << nlohmann::json{{"step", sm.step},
                                  {"loss", sm.loss},
                                  {"lr", sm.lr},
                                  {"grad_norm", sm.grad_norm},
                                  {"tokens_per_s", sm.tokens_per_s},
                                  {"elapsed_s", elapsed_s_}}
                       .dump()
                << "\n";
        metrics.flush();
        if (options_.eval_interval > 0 && step_ % options_.eval_interval == 0) evaluate();
        if (options_.progress && (tty || step_ % line_every == 0 || step_ == options_.steps)) {
            const double per_step = (now_s() - run_start) / static_cast<double>(step_ - first_step);
            const int width = 24;
            const int filled = static_cast<int>(width * step_ / options_.steps);
            fmt::print(
                stderr, "{}step {}/{} [{}{}] loss {:.4f}{} | {:.0f} tok/s | ETA {}{}",
                tty ? "\r" : "", step_, options_.steps, std::string(filled, '#'),
                std::string(width - filled, '.'), sm.loss,
                std::isnan(last_val) ? std::string() : fmt::format(" (val {:.4f})", last_val),
                sm.tokens_per_s,
                format_duration(per_step * static_cast<double>(options_.steps - step_)),
                tty ? "   " : "\n");
        }
        if (options_.save_interval > 0 && step_ % options_.save_interval == 0) save_checkpoint();
        if (options_.stop_at_step > 0 && step_ >= options_.stop_at_step && step_ < options_.steps) {
            save_checkpoint();
            if (options_.progress)
                fmt::print(stderr, "\nstopped at step {} (checkpoint saved)\n", step_);
            return TrainOutcome::kStopped;
        }
    }
    if (options_.eval_interval == 0 || step_ % options_.eval_interval != 0) evaluate();
    if (options_.progress && tty) fmt::print(stderr, "\n");
    save_checkpoint();
    if (options_.export_model) export_model();
    if (options_.progress)
        fmt::print(stderr, "done: {} steps, validation loss {:.4f}; model in {}\n", step_, last_val,
                   (out / "model").string());
    return TrainOutcome::kFinished;
}

}  // namespace bitttt::train
