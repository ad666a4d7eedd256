// `bitttt train`: trains a Bit-TTT model on text (DESIGN.md §2.4; src/train/trainer.hpp).
#include <fmt/format.h>

#include <cstdlib>
#include <memory>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "core/threads.hpp"
#include "train/trainer.hpp"

namespace bitttt::cli {

void register_train(CLI::App& app) {
    auto* cmd = app.add_subcommand("train", "Train a Bit-TTT model on text (CPU)");
    auto o = std::make_shared<train::TrainOptions>();
    auto rule = std::make_shared<std::string>("reconstruct");
    auto threads = std::make_shared<int>(0);
    auto quiet = std::make_shared<bool>(false);
    cmd->add_option("--data", o->data,
                    "Training text: UTF-8, plain or .gz, documents separated "
                    "by <|endoftext|> lines");
    cmd->add_option("--val-data", o->val_data,
                    "Held-out text for the validation loss (default: last 5% of --data)");
    cmd->add_option("--tokenizer", o->tokenizer,
                    "tokenizer.json to use (default: byte-level when --vocab-size <= 257, else one "
                    "of --vocab-size tokens trained on --data)");
    cmd->add_option("--vocab-size", o->model.vocab_size, "Vocabulary size (without --tokenizer)")
        ->capture_default_str();
    cmd->add_option("--dim", o->model.hidden_dim, "Hidden size D")->capture_default_str();
    cmd->add_option("--layers", o->model.num_layers, "Number of layers L")->capture_default_str();
    cmd->add_option("--ttt-rule", *rule, "TTT rule: reconstruct or delta")->capture_default_str();
    cmd->add_option("--ttt-dim", o->model.ttt_dim, "TTT state width Dt (default D/4)");
    cmd->add_option("--ttt-heads", o->model.ttt_heads, "Heads of the delta rule")
        ->capture_default_str();
    cmd->add_option("--inner-lr", o->model.inner_lr, "TTT step size eta")->capture_default_str();
    cmd->add_option("--mlp-dim", o->model.mlp_dim, "SwiGLU width (default 4D)");
    cmd->add_option("--act-bits", o->model.act_bits, "BitLinear activation bits: 8 or 0")
        ->capture_default_str();
    cmd->add_option("--context-len", o->context_len, "Tokens per training sequence")
        ->capture_default_str();
    cmd->add_option("--batch-size", o->batch_size, "Sequences per step")->capture_default_str();
    cmd->add_option("--steps", o->steps, "Optimizer steps in all")->capture_default_str();
    cmd->add_option("--lr", o->lr, "Peak learning rate")->capture_default_str();
    cmd->add_option("--min-lr", o->min_lr, "Learning rate at the end of the cosine decay")
        ->capture_default_str();
    cmd->add_option("--warmup-steps", o->warmup_steps, "Linear warmup steps")
        ->capture_default_str();
    cmd->add_option("--weight-decay", o->adamw.weight_decay,
                    "AdamW weight decay (matrices only: embeddings and linear weights)")
        ->capture_default_str();
    cmd->add_option("--save-interval", o->save_interval, "Steps between checkpoints (0: end only)")
        ->capture_default_str();
    cmd->add_option("--eval-interval", o->eval_interval,
                    "Steps between validation losses (0: end only)")
        ->capture_default_str();
    cmd->add_option("--eval-batches", o->eval_batches, "Batches per validation loss")
        ->capture_default_str();
    cmd->add_option("--seed", o->seed, "Seed of the initial weights and the batches")
        ->capture_default_str();
    cmd->add_option("--threads", *threads, "CPU threads (0: all cores)")->capture_default_str();
    cmd->add_option("--device", o->device, "cpu or cuda (train on the GPU)")->capture_default_str();
    cmd->add_option("--cpu-precision", o->cpu_precision,
                    "Products on the CPU: fp32, or bf16 (lm_head and the backward products with "
                    "bf16 operands and fp32 sums; AVX-512 BF16 where available)")
        ->capture_default_str();
    cmd->add_option("--gpu-precision", o->gpu_precision,
                    "Products on the GPU: bf16 (tensor cores) or fp32")
        ->capture_default_str();
    cmd->add_option("--gpu-optimizer-state", o->gpu_optimizer_state,
                    "AdamW moments on the GPU: fp32, bf16 (half the optimizer memory) or int8 "
                    "(a quarter: 8-bit codes scaled per block of 256), rounded stochastically; "
                    "checkpoints stay fp32")
        ->capture_default_str();
    cmd->add_option("--gpu-grad-precision", o->gpu_grad_precision,
                    "Gradients on the GPU: fp32, or bf16 (half their memory; rounded once from "
                    "the fp32 sums; needs --gpu-precision bf16)")
        ->capture_default_str();
    cmd->add_flag("--gpu-recompute-mlp", o->gpu_recompute_mlp,
                  "Recompute the MLP's inputs (gate/up products, the branch input) in the "
                  "backward instead of keeping them (less GPU memory, more time per step, the "
                  "same math)");
    cmd->add_flag("--gpu-bf16-dx", o->gpu_bf16_dx,
                  "Opt-in, changes the training math: the backward's down-projection input "
                  "gradient in bf16, as bf16 autocast does (--gpu-precision bf16)");
    cmd->add_option("--gpu-activations", o->gpu_activations,
                    "Activations the GPU backward can recompute: keep (~9% faster steps), "
                    "recompute (less GPU memory), or auto (keep them if everything fits in 90% "
                    "of the GPU's free memory); the same math either way")
        ->capture_default_str();
    cmd->add_option("--out", o->out_dir, "Output directory (metrics, checkpoint, model)")
        ->capture_default_str();
    cmd->add_option("--resume", o->resume,
                    "Checkpoint to resume from (its model and optimizer settings are used)");
    cmd->add_option("--stop-at", o->stop_at_step,
                    "Save a checkpoint and stop after this step (resume later with --resume)");
    cmd->add_flag("--quiet", *quiet, "No progress output");
    auto dump = std::make_shared<std::string>();
    cmd->add_option("--dump-gradient", *dump,
                    "Write the gradient of the first batch at the initial weights to this "
                    "safetensors file and exit (for reference implementations)")
        ->group("Testing");
    cmd->callback([cmd, o, rule, threads, quiet, dump] {
        set_num_threads(*threads);
        train::TrainOptions options = *o;
        options.model.ttt_rule = parse_ttt_rule(*rule);
        options.steps_explicit = cmd->count("--steps") > 0;
        options.progress = !*quiet;
        if (options.resume.empty()) options.model.resolve_and_validate("command line");
        if (!dump->empty()) {
            options.progress = false;
            train::Trainer dumper(std::move(options));
            dumper.dump_gradient(*dump);
            return;
        }
        train::TrainOutcome outcome;
        {
            train::Trainer trainer(std::move(options));
            train::Trainer::handle_sigint();
            outcome = trainer.run();
        }
        // Ctrl-C: the checkpoint is saved; the conventional exit status of an interrupted program.
        if (outcome == train::TrainOutcome::kInterrupted) std::exit(130);
    });
}

}  // namespace bitttt::cli
