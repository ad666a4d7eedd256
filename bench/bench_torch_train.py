#!/usr/bin/env python3
"""Training throughput and peak memory of the Bit-TTT model in PyTorch (issue 10's baseline).

The model is torch_models.BitTTTModel written as a strong PyTorch user would: the TTT recurrence
in the chunked delta-rule form (DESIGN.md §2.3a, chunk --chunk), bf16 autocast with fp32 master
weights (quantization, norms and the TTT scan in fp32, TF32 allowed), fused AdamW, and either
eager mode or torch.compile of every block. A training step is forward + backward + global-norm
clipping + AdamW on random tokens (vocab --vocab), as `bitttt bench train`.

Runs (each variant in its own try/except, so one failure or OOM does not end the others):
  throughput: D=256 L=8 T=128 at batch 64 and at --large-batch; D=1024 L=24 T=1024 at the first
              batch of --big-batches that fits; both rules; eager and compiled (--modes adds
              compile-cudagraphs: torch.compile(mode="reduce-overhead"), CUDA graphs per block)
  memory:     torch.cuda.max_memory_allocated of a training step at 256/8, 512/12, 1024/24 with
              batch 16, context 128 (eager; the seed's VRAM table: 2, 4, 8 GB)
Prints a table and writes --json. Model FLOPs: 6 per matrix weight per token (lm_head included,
TTT scan excluded); MFU against --peak-tflops (H100 SXM dense bf16: 989). --time-limit skips what
is left (marked "skipped") so a call ends in time; the full run takes ~3-5 min on one H100.

    python3 bench/bench_torch_train.py --json bench_torch_train.json
"""
import argparse
import gc
import json
import os
import sys
import time
import traceback

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models import BitTTTConfig, BitTTTModel, compile_blocks, matrix_params  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default="bench_torch_train.json")
    p.add_argument("--vocab", type=int, default=16384)
    p.add_argument("--chunk", type=int, default=32, help="tokens per chunk of the TTT scan")
    p.add_argument("--big-chunk", type=int, default=64, help="the chunk at context 1024")
    p.add_argument("--large-batch", type=int, default=512)
    p.add_argument("--big-batches", default="16,8,4,2", help="batches tried at D=1024 T=1024")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps (compile happens here)")
    p.add_argument("--steps", type=int, default=8, help="timed steps (the median is reported)")
    p.add_argument("--rules", default="reconstruct,delta")
    p.add_argument("--modes", default="eager,compile",
                   help="eager, compile, compile-cudagraphs (mode='reduce-overhead'; opt-in, "
                        "not yet run on a GPU)")
    p.add_argument("--only", default="", help="comma list of run names to keep (default all)")
    p.add_argument("--time-limit", type=float, default=480, help="seconds; later runs skipped")
    p.add_argument("--peak-tflops", type=float, default=989.0)
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="tiny shapes, for a smoke test on CPU")
    return p.parse_args(argv)


def make_model(D, L, rule, vocab, chunk, device):
    c = BitTTTConfig(vocab_size=vocab, hidden_dim=D, num_layers=L, ttt_rule=rule)
    with torch.device(device):  # parameters made and initialized on the device
        return BitTTTModel(c, chunk=chunk)


def train_steps(D, L, T, B, rule, mode, a, device, chunk):
    """Builds a model, runs warmup + timed steps; returns a result dict (tokens/s, memory)."""
    gc.collect()  # frees the tensors of a failed (OOM) variant
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    model = make_model(D, L, rule, a.vocab, chunk, device)
    cudagraphs = mode == "compile-cudagraphs"
    if mode.startswith("compile"):
        compile_blocks(model, **({"mode": "reduce-overhead"} if cudagraphs else {}))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1,
                            fused=device.type == "cuda")
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randint(0, a.vocab, (B, T), generator=gen).to(device)
    y = torch.randint(0, a.vocab, (B, T), generator=gen).to(device)
    use_bf16 = device.type == "cuda"

    def step():
        if cudagraphs:  # a new iteration: the graphs' previous outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    t0 = time.perf_counter()
    for _ in range(a.warmup):
        loss = step()
    sync()
    warmup_s = time.perf_counter() - t0
    times = []
    for _ in range(a.steps):  # each step synced (the loss is read each step in training too)
        t0 = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - t0)
    dt = sorted(times)[len(times) // 2]  # the median step: robust to a stray slow one
    tokens_per_s = B * T / dt
    flops = 6.0 * matrix_params(model) * tokens_per_s
    result = {"tokens_per_s": tokens_per_s, "step_ms": dt * 1e3, "warmup_s": warmup_s,
              "step_ms_each": [round(t * 1e3, 2) for t in times],
              "model_tflops": flops / 1e12, "mfu": flops / (a.peak_tflops * 1e12),
              "chunk": chunk, "loss": float(loss.detach()), "matrix_params": matrix_params(model),
              "params": sum(p.numel() for p in model.parameters())}
    if device.type == "cuda":
        result["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    del model, opt
    return result


def is_oom(e):
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


def main(argv=None):
    a = parse_args(argv)
    device = torch.device(a.device if a.device != "cuda" or torch.cuda.is_available() else "cpu")
    torch.set_float32_matmul_precision("high")
    rules, modes = a.rules.split(","), a.modes.split(",")
    if not set(rules) <= {"reconstruct", "delta"} or not set(modes) <= {
            "eager", "compile", "compile-cudagraphs"}:
        raise SystemExit(f"error: unknown rule or mode in {a.rules!r} / {a.modes!r}")
    big_batches = [int(b) for b in a.big_batches.split(",")]
    if a.quick:  # shapes small enough for a CPU
        a.vocab = min(a.vocab, 512)
        throughput = [("D64.L2.T32.B4", 64, 2, 32, [4], a.chunk),
                      ("D64.L2.T64.B2", 64, 2, 64, [2], a.big_chunk)]
        memory = [("mem.D64.L2", 64, 2, 32, 4)]
    else:
        throughput = [("D256.L8.T128.B64", 256, 8, 128, [64], a.chunk),
                      (f"D256.L8.T128.B{a.large_batch}", 256, 8, 128, [a.large_batch], a.chunk),
                      ("D1024.L24.T1024", 1024, 24, 1024, big_batches, a.big_chunk)]
        memory = [("mem.D256.L8", 256, 8, 128, 16), ("mem.D512.L12", 512, 12, 128, 16),
                  ("mem.D1024.L24", 1024, 24, 128, 16)]
    only = set(filter(None, a.only.split(",")))
    start = time.perf_counter()
    header = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "vocab": a.vocab, "chunk": a.chunk,
              "big_chunk": a.big_chunk,
              "warmup_steps": a.warmup, "timed_steps": a.steps, "peak_tflops": a.peak_tflops}
    print(json.dumps(header), flush=True)
    results = []

    def record(name, rule, mode, B, T, res):
        row = {"run": name, "rule": rule, "mode": mode, "batch": B, "context": T, **res}
        results.append(row)
        print(json.dumps(row), flush=True)
        with open(a.json, "w") as f:  # rewritten after every run: a killed call keeps the rest
            json.dump({**header, "results": results}, f, indent=1)

    for name, D, L, T, batches, chunk in throughput:
        if only and name not in only:
            continue
        for rule in rules:
            fitting = None  # the eager run picks the batch; compile uses the same
            for mode in modes:
                for B in ([fitting] if fitting else batches):
                    if time.perf_counter() - start > a.time_limit:
                        record(name, rule, mode, B, T, {"skipped": "time limit"})
                        break
                    try:
                        res = train_steps(D, L, T, B, rule, mode, a, device, chunk)
                        fitting = B
                        record(name, rule, mode, B, T, res)
                        break
                    except Exception as e:  # noqa: BLE001 - one variant must not end the run
                        oom = is_oom(e)
                        record(name, rule, mode, B, T,
                               {"error": ("OOM: " if oom else "") + str(e).splitlines()[0][:300]})
                        if not oom:
                            traceback.print_exc()
                            break
    for name, D, L, T, B in memory:
        if only and name not in only:
            continue
        for rule in rules:
            if time.perf_counter() - start > a.time_limit:
                record(name, rule, "eager", B, T, {"skipped": "time limit"})
                continue
            try:
                record(name, rule, "eager", B, T,
                       train_steps(D, L, T, B, rule, "eager", a, device, a.chunk))
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                record(name, rule, "eager", B, T, {"error": str(e).splitlines()[0][:300]})

    print(f"\n{header['device']}, torch {header['torch']}, vocab {a.vocab}, chunk {a.chunk} "
          f"(context 1024: {a.big_chunk}), "
          f"{time.perf_counter() - start:.0f} s")
    print(f"{'run':<22} {'rule':<12} {'mode':<8} {'B':>4} {'tokens/s':>11} {'step ms':>9} "
          f"{'TFLOP/s':>8} {'MFU':>6} {'peak GiB':>9}  note")
    for r in results:
        if "tokens_per_s" in r:
            print(f"{r['run']:<22} {r['rule']:<12} {r['mode']:<8} {r['batch']:>4} "
                  f"{r['tokens_per_s']:>11.0f} {r['step_ms']:>9.1f} {r['model_tflops']:>8.1f} "
                  f"{100 * r['mfu']:>5.1f}% {r.get('peak_mem_gib', float('nan')):>9.2f}  "
                  f"warmup {r['warmup_s']:.0f} s")
        else:
            print(f"{r['run']:<22} {r['rule']:<12} {r['mode']:<8} {r['batch']:>4} "
                  f"{'-':>11} {'-':>9} {'-':>8} {'-':>6} {'-':>9}  "
                  f"{r.get('error') or r.get('skipped')}")
    # The best variant per run and rule: what `bitttt bench train --device cuda` is compared to.
    best = {}
    for r in results:
        key = (r["run"], r["rule"])
        if "tokens_per_s" in r and not r["run"].startswith("mem.") and (
                key not in best or r["tokens_per_s"] > best[key]["tokens_per_s"]):
            best[key] = r
    for (run, rule), r in best.items():
        print(f"best {run} {rule}: {r['tokens_per_s']:.0f} tokens/s "
              f"({r['mode']}, batch {r['batch']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
