#!/usr/bin/env python3
"""Train the PyTorch baselines on the same tokens as `bitttt train` (issue 8).

    python3 bench/torch_train.py --model attention --data train.txt.gz --val-data valid.txt.gz \
        --cache-dir OUT/cache --tokenizer OUT/model/tokenizer.json --out runs/attn \
        --steps 5000 --batch-size 64 --time-budget 540

--model reconstruct | delta : the Bit-TTT model of DESIGN.md §2 (torch_models.BitTTTModel)
--model attention           : the same-size Llama with causal attention, no quantization

The loop follows DESIGN.md §2.4 and src/train/trainer.cpp: random windows of context_len + 1
tokens, AdamW (β 0.9/0.95, eps 1e-8, weight decay on matrices only), linear warmup then cosine
decay to min_lr over --steps, global-norm clipping, bf16 autocast on the GPU (fp32 master weights).
--time-budget S stops a call after S seconds with a checkpoint; `--resume OUT/checkpoint.pt`
continues it exactly (weights, AdamW moments, step, sampler state).

Validation: the held-out tokens in consecutive windows of context_len (each window starts from an
empty TTT state / attention context), every token scored once: the same number as
`bitttt eval MODEL VAL --reset-every context_len` on the same tokens. Reported in nats/token and
bits/byte = nats/token / ln 2 · tokens / bytes of the validation text (so vocabularies compare;
when the validation split is the last 5% of the training tokens, bytes/token is that of the whole
training text). Output in OUT: metrics.jsonl, checkpoint.pt, result.json, and model/: for the
Bit-TTT rules a model directory of our format (config.json, model.safetensors with fp32 master
weights, tokenizer.json) that `bitttt eval`/`generate` load; for attention model.safetensors (bf16)
and attention_config.json.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_data  # noqa: E402
from torch_models import (AttentionConfig, AttentionLlama, BitTTTConfig, BitTTTModel,  # noqa: E402
                          compile_blocks, matrix_params, save_model_dir)

# Options that decide the optimization trajectory: restored from a checkpoint on --resume.
TRAJECTORY = ["model", "vocab_size", "dim", "layers", "ttt_dim", "ttt_heads", "inner_lr",
              "mlp_dim", "act_bits", "heads", "chunk", "batch_size", "context_len", "lr", "min_lr",
              "warmup_steps", "grad_clip", "weight_decay", "seed", "steps"]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=["reconstruct", "delta", "attention"], default="reconstruct")
    p.add_argument("--out", default="runs/torch")
    d = p.add_argument_group("data (the tokens of `bitttt train`)")
    d.add_argument("--data", help="training text (.txt or .gz)")
    d.add_argument("--val-data", help="held-out text; default: the last 5%% of the training tokens")
    d.add_argument("--cache-dir", help="a `bitttt train` token cache (its OUT/cache)")
    d.add_argument("--train-tokens", help="a .tokens file of that cache (instead of --data)")
    d.add_argument("--val-tokens", help="a .tokens file for validation")
    d.add_argument("--tokenizer", help="tokenizer.json: tokenizes when no cache matches; exported")
    m = p.add_argument_group("model")
    m.add_argument("--vocab-size", type=int, default=0, help="0: the tokenizer's")
    m.add_argument("--dim", type=int, default=256)
    m.add_argument("--layers", type=int, default=8)
    m.add_argument("--ttt-dim", type=int, default=0, help="0: dim/4")
    m.add_argument("--ttt-heads", type=int, default=1)
    m.add_argument("--inner-lr", type=float, default=0.1)
    m.add_argument("--mlp-dim", type=int, default=0, help="0: 4·dim")
    m.add_argument("--act-bits", type=int, default=8, choices=[0, 8])
    m.add_argument("--heads", type=int, default=0, help="attention heads (0: dim/64)")
    m.add_argument("--chunk", type=int, default=16, help="tokens per chunk of the TTT scan")
    t = p.add_argument_group("training")
    t.add_argument("--steps", type=int, default=None, help="schedule length (default 1000)")
    t.add_argument("--time-budget", type=float, default=0, help="stop this call after S seconds")
    t.add_argument("--stop-at-step", type=int, default=0,
                   help="save a checkpoint and stop after this step (time slicing)")
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--context-len", type=int, default=128)
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--min-lr", type=float, default=1e-5)
    t.add_argument("--warmup-steps", type=int, default=100)
    t.add_argument("--grad-clip", type=float, default=1.0)
    t.add_argument("--weight-decay", type=float, default=0.1)
    t.add_argument("--eval-interval", type=int, default=500, help="0: only at the end")
    t.add_argument("--eval-tokens", type=int, default=65536,
                   help="validation tokens for the periodic evaluations (the final one uses all)")
    t.add_argument("--save-interval", type=int, default=500)
    t.add_argument("--seed", type=int, default=1337)
    t.add_argument("--resume", help="checkpoint.pt to continue from")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda")
    t.add_argument("--dtype", choices=["auto", "bf16", "fp32"], default="auto",
                   help="autocast dtype (auto: bf16 on cuda, fp32 on cpu)")
    t.add_argument("--compile", action="store_true", help="torch.compile every block")
    t.add_argument("--no-export", action="store_true")
    t.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def learning_rate(step, total, warmup, max_lr, min_lr):
    """src/train/optimizer.cpp: linear warmup to max_lr, cosine to min_lr at the last step."""
    if step < warmup:
        return max_lr * (step + 1) / warmup
    span = total - 1 - warmup
    if span <= 0:
        return max_lr
    if step >= total - 1:
        return min_lr
    progress = (step - warmup) / span
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_model(a):
    if a.model == "attention":
        heads = a.heads or max(1, a.dim // 64)
        return AttentionLlama(AttentionConfig(vocab_size=a.vocab_size, hidden_dim=a.dim,
                                              num_layers=a.layers, num_heads=heads,
                                              mlp_dim=a.mlp_dim))
    c = BitTTTConfig(vocab_size=a.vocab_size, hidden_dim=a.dim, num_layers=a.layers,
                     inner_lr=a.inner_lr, ttt_dim=a.ttt_dim, ttt_rule=a.model,
                     ttt_heads=a.ttt_heads, mlp_dim=a.mlp_dim, act_bits=a.act_bits)
    return BitTTTModel(c, chunk=a.chunk)


def make_optimizer(model, a, device):
    """AdamW with weight decay on matrices only (embed, linear weights), as the C++ trainer."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": a.weight_decay},
              {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.95), eps=1e-8,
                             fused=device.type == "cuda")


def atomic_save(obj, path):
    """torch.save to a temporary file, fsync, rename: a crash never harms the previous file."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def text_bytes(path):
    return len(torch_data.read_text(path).encode("utf-8"))


@torch.no_grad()
def evaluate(model, tokens, T, batch, device, max_tokens=0):
    """Mean nats/token over validation_windows (see the module doc) and the number scored.
    In fp32 (no autocast): the figure should not carry bf16 rounding of the logits."""
    model.eval()
    total, count = 0.0, 0
    windows = list(torch_data.validation_windows(tokens, T, max_tokens))
    for i in range(0, len(windows), batch):
        group = windows[i:i + batch]
        by_len = {}
        for x, y in group:  # the last window may be shorter: batch windows of equal length
            by_len.setdefault(len(x), []).append((x, y))
        for items in by_len.values():
            x = torch.from_numpy(np.stack([w[0] for w in items])).to(device)
            y = torch.from_numpy(np.stack([w[1] for w in items])).to(device)
            logits = model(x)
            total += torch.nn.functional.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1),
                reduction="sum").item()
            count += y.numel()
    model.train()
    return total / count, count


def main(argv=None):
    a = parse_args(argv)
    steps_explicit = a.steps is not None
    ck = None
    if a.resume:
        ck = torch.load(a.resume, map_location="cpu", weights_only=False)
        for key in TRAJECTORY:
            if key == "steps" and steps_explicit:
                continue
            setattr(a, key, ck["args"][key])
        for key in ("data", "val_data", "cache_dir", "train_tokens", "val_tokens", "tokenizer"):
            if getattr(a, key) is None:
                setattr(a, key, ck["args"].get(key))
    if a.steps is None:
        a.steps = 1000
    if min(a.steps, a.batch_size, a.context_len, a.chunk) < 1:
        raise SystemExit("error: --steps, --batch-size, --context-len and --chunk must be positive")
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if a.device == "auto" else a.device))
    use_bf16 = a.dtype == "bf16" or (a.dtype == "auto" and device.type == "cuda")
    torch.set_float32_matmul_precision("high")  # TF32 for the fp32 TTT scan on the GPU

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)

    # ---- data ----
    if not a.vocab_size:
        if not a.tokenizer:
            raise SystemExit("error: give --vocab-size or --tokenizer")
        from tokenizers import Tokenizer
        a.vocab_size = Tokenizer.from_file(a.tokenizer).get_vocab_size()
    train, train_src = torch_data.load_tokens(a.data, a.train_tokens, a.cache_dir, a.tokenizer,
                                              a.vocab_size)
    train_bytes = text_bytes(a.data) if a.data else None
    if a.val_data or a.val_tokens:
        val, val_src = torch_data.load_tokens(a.val_data, a.val_tokens, a.cache_dir, a.tokenizer,
                                              a.vocab_size)
        val_bytes = text_bytes(a.val_data) if a.val_data else None
        bytes_per_token = val_bytes / val.size if val_bytes else None
    else:  # as the C++ trainer: hold out the last 5% (at least one window)
        held = max(train.size // 20, a.context_len + 1)
        if train.size <= held + a.context_len:
            raise SystemExit(f"error: {train.size} tokens are too few to hold out a "
                             f"validation split")
        val, train = train[-held:], train[:-held]
        val_src = "the last 5% of " + train_src
        bytes_per_token = train_bytes / (train.size + val.size) if train_bytes else None
    if not a.quiet:
        print(f"train: {train.size} tokens ({train_src})\nval: {val.size} tokens ({val_src})",
              file=sys.stderr)

    # ---- model, optimizer, state ----
    torch.manual_seed(a.seed)
    model = build_model(a)
    model.init_weights(a.seed)
    model.to(device)
    opt = make_optimizer(model, a, device)
    sampler = torch_data.BatchSampler(train, a.batch_size, a.context_len, a.seed ^ 0x5EEDDA7A)
    step, elapsed = 0, 0.0
    if ck:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sampler.set_state(ck["sampler"])
        step, elapsed = ck["step"], ck["elapsed_s"]
    train_model = compile_blocks(model) if a.compile else model
    n_params = sum(p.numel() for p in model.parameters())
    os.makedirs(a.out, exist_ok=True)
    metrics = open(os.path.join(a.out, "metrics.jsonl"), "a")

    def save():
        atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                     "sampler": sampler.state(), "step": step, "elapsed_s": elapsed,
                     "args": vars(a)}, os.path.join(a.out, "checkpoint.pt"))

    def val_metrics(max_tokens):
        loss, n = evaluate(model, val, a.context_len, max(a.batch_size, 16), device,
                           max_tokens)
        bpb = loss / math.log(2) / bytes_per_token if bytes_per_token else None
        return loss, bpb, n

    if not a.quiet:
        print(f"{a.model}: {n_params / 1e6:.2f} M parameters on {device} "
              f"({'bf16 autocast' if use_bf16 else 'fp32'}{', compiled' if a.compile else ''}); "
              f"steps {step}..{a.steps}", file=sys.stderr)
    call_start = time.time()
    log_every = max(1, a.steps // 50)
    while step < a.steps:
        if (a.time_budget and time.time() - call_start >= a.time_budget) or (
                a.stop_at_step and step >= a.stop_at_step):
            save()
            print(f"stopped at step {step}; checkpoint "
                  f"{os.path.join(a.out, 'checkpoint.pt')} (continue with --resume)",
                  file=sys.stderr)
            return 0
        t0 = time.time()
        lr = learning_rate(step, a.steps, a.warmup_steps, a.lr, a.min_lr)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = sampler.next()
        x = torch.from_numpy(x).to(device, non_blocking=True)
        y = torch.from_numpy(y).to(device, non_blocking=True)
        with autocast():
            loss = train_model(x, y)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_value = loss.item()  # the one host sync per step
        if not math.isfinite(loss_value):
            raise SystemExit(f"error: step {step + 1}: the loss is {loss_value}")
        step += 1
        dt = time.time() - t0
        elapsed += dt
        metrics.write(json.dumps({"step": step, "loss": loss_value, "lr": lr,
                                  "grad_norm": float(norm), "tokens_per_s": x.numel() / dt,
                                  "elapsed_s": elapsed}) + "\n")
        if not a.quiet and (step % log_every == 0 or step == a.steps):
            print(f"step {step}/{a.steps} loss {loss_value:.4f} lr {lr:.2e} "
                  f"| {x.numel() / dt:.0f} tok/s", file=sys.stderr)
        if a.eval_interval and step % a.eval_interval == 0 and step < a.steps:
            loss_v, bpb, _ = val_metrics(a.eval_tokens)
            metrics.write(json.dumps({"step": step, "val_loss": loss_v, "val_bpb": bpb}) + "\n")
            if not a.quiet:
                print(f"step {step}: val {loss_v:.4f} nats/token", file=sys.stderr)
        if a.save_interval and step % a.save_interval == 0:
            save()
        metrics.flush()

    loss_v, bpb, n = val_metrics(0)
    metrics.write(json.dumps({"step": step, "val_loss": loss_v, "val_bpb": bpb}) + "\n")
    metrics.close()
    save()
    result = {"model": a.model, "config": getattr(model, "config").to_json(),
              "parameters": n_params, "matrix_parameters": matrix_params(model),
              "steps": step, "batch_size": a.batch_size, "context_len": a.context_len,
              "tokens_seen": step * a.batch_size * a.context_len, "train_time_s": elapsed,
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "autocast": "bf16" if use_bf16 else "fp32", "compiled": a.compile,
              "val_loss_nats_per_token": loss_v, "val_bits_per_byte": bpb,
              "val_tokens_scored": n, "val_bytes_per_token": bytes_per_token,
              "train_tokens": train_src, "val_tokens": val_src}
    if not a.no_export:
        result["export"] = save_model_dir(model, os.path.join(a.out, "model"), a.tokenizer)
    with open(os.path.join(a.out, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: result[k] for k in ("model", "steps", "tokens_seen",
                                             "val_loss_nats_per_token", "val_bits_per_byte")}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, OSError, KeyError) as e:  # bad files or options: one line, exit 1
        sys.exit(f"error: {e}")
