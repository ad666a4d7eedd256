#!/usr/bin/env python3
"""CPU training side by side: `bitttt bench train` next to PyTorch's Bit-TTT model, same CPU.

The same model (torch_models.BitTTTModel = DESIGN.md §2), rule, vocabulary (16384), batch and
context (16 x 128 by default), random tokens, a full step each (forward, backward, global-norm
clipping, AdamW), on --threads threads for both (torch.set_num_threads; `bitttt bench train
--threads`). The variants run in alternating rounds in one process, so a machine whose load
changes (other engineers compiling) hurts all of them alike; each round times --steps steps of
every variant after its warm-up and keeps the best step (as `bitttt bench train` does), and the
table gives the median over the rounds with the load average seen at each round.

Variants:
  bitttt            BITTTT (default build/bitttt): the forward BitLinear products on int8 codes
  bitttt.fake       the same binary with the fake-quantized fp32 products (the old formulation)
  bitttt.bf16       the same binary with bf16 products (`train --cpu-precision bf16`);
                    bitttt.bf16lm: lm_head only in bf16
  base              --base BINARY (e.g. main's build), when given
  base.bf16         the same with BITTTT_TRAIN_PRECISION=bf16
  torch.eager / torch.compile    fp32, and .bf16 with torch.autocast("cpu", bfloat16) (--bf16)
torch.compile compiles every block (compile_blocks, as bench_torch_train.py); its compile time
is the first (untimed) step.

    PYTHONPATH=.torchsite python3 bench/cpu_train_compare.py --rounds 3 --json cmp.json
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bitttt", default=os.path.join(HERE, "..", "build", "bitttt"))
    p.add_argument("--base", default="", help="a second bitttt binary (before/after)")
    p.add_argument("--shapes", default="256x8,128x4", help="D x L, comma separated")
    p.add_argument("--rule", default="reconstruct", choices=["reconstruct", "delta"])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--vocab", type=int, default=16384)
    p.add_argument("--chunk", type=int, default=32, help="torch's TTT scan chunk")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3, help="timed steps per variant and round")
    p.add_argument("--variants", default="bitttt,bitttt.fake,base,torch.eager,torch.compile",
                   help="comma list (base needs --base; torch.* also runs .bf16 with --bf16)")
    p.add_argument("--bf16", action="store_true", help="also torch with bf16 autocast")
    p.add_argument("--json", default="cpu_train_compare.json")
    return p.parse_args(argv)


def loadavg():
    return round(os.getloadavg()[0], 2)


def run_bitttt(binary, shape, a, bitlinear, precision="fp32"):
    """tokens/s of the best of a.steps steps (bench train's figure) for one shape. A binary from
    before these variables (--base: main's) ignores them and runs every default shape: its
    results are cached per call and shape, so one call per round serves all shapes."""
    D, L = shape.split("x")
    name = f"train.D{D}.L{L}.B{a.batch}xT{a.context}"
    key = (binary, bitlinear, precision)
    cached = _base_cache.get(key, {})
    if name in cached:
        return cached.pop(name)
    env = dict(os.environ, BITTTT_BENCH_TRAIN_CASES=shape, BITTTT_BENCH_TRAIN_RULE=a.rule,
               BITTTT_BENCH_TRAIN_STEPS=str(a.steps), BITTTT_TRAIN_BITLINEAR=bitlinear,
               BITTTT_TRAIN_PRECISION=precision)
    if a.batch != 16 or a.context != 128 or a.vocab != 16384:
        raise SystemExit("error: bitttt bench train runs batch 16 x 128, vocab 16384 only")
    out = subprocess.run([binary, "bench", "train", "--threads", str(a.threads), "--json"],
                         env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        # A binary from before BITTTT_TRAIN_BITLINEAR ignores it; other errors are real.
        raise RuntimeError(f"{binary}: {out.stderr.strip()[-300:]}")
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    # Names carry the variant as a suffix (".fake", ".delta"): keyed by the shape part.
    values = {".".join(r["name"].split(".")[:4]): r["value"] for r in rows
              if r["name"].startswith("train.D")}
    if name not in values:
        raise RuntimeError(f"{binary}: no {name} in {out.stdout[-300:]}")
    value = values.pop(name)
    _base_cache[key] = values  # the other shapes of a binary that ran them all
    return value


_base_cache = {}


class TorchVariant:
    """One PyTorch model (shape, mode, dtype) kept across rounds: compiled once."""

    def __init__(self, D, L, mode, bf16, a):
        import torch
        from torch_models import BitTTTConfig, BitTTTModel, compile_blocks
        self.torch = torch
        c = BitTTTConfig(vocab_size=a.vocab, hidden_dim=D, num_layers=L, ttt_rule=a.rule)
        self.model = BitTTTModel(c, chunk=a.chunk)
        if mode == "compile":
            compile_blocks(self.model)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=3e-4, betas=(0.9, 0.95),
                                     weight_decay=0.1)
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, a.vocab, (a.batch, a.context), generator=gen)
        self.y = torch.randint(0, a.vocab, (a.batch, a.context), generator=gen)
        self.bf16 = bf16
        self.tokens = a.batch * a.context
        self.warm = False
        self.warmup_s = None

    def step(self):
        torch = self.torch
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.model(self.x, self.y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return float(loss.detach())  # synchronous on the CPU anyway

    def run(self, steps):
        if not self.warm:  # the first step compiles (torch.compile) and allocates
            t0 = time.perf_counter()
            self.step()
            self.warmup_s = time.perf_counter() - t0
            self.warm = True
        self.step()  # one untimed step per round, as bitttt's warm-up
        best = float("inf")
        for _ in range(steps):
            t0 = time.perf_counter()
            self.step()
            best = min(best, time.perf_counter() - t0)
        return self.tokens / best


def main(argv=None):
    a = parse_args(argv)
    sys.path.insert(0, HERE)
    variants = [v for v in a.variants.split(",") if v]
    if not a.base:
        variants = [v for v in variants if v not in ("base", "base.bf16")]
    torch_modes = [v.split(".", 1)[1] for v in variants if v.startswith("torch.")]
    if any(m not in ("eager", "compile") for m in torch_modes):
        raise SystemExit(f"error: unknown torch mode in {a.variants!r}")
    if torch_modes:
        import torch
        torch.set_num_threads(a.threads)
    shapes = []
    for s in a.shapes.split(","):
        D, L = (int(v) for v in s.split("x"))
        shapes.append((s, D, L))
    names = []  # (label, shape, runner)
    holders = []  # (label, shape, {"m": TorchVariant}) for the first steps' (compile) times
    for s, D, L in shapes:
        for v in variants:
            if v == "bitttt":
                names.append((v, s, lambda s=s: run_bitttt(a.bitttt, s, a, "int8")))
            elif v == "bitttt.fake":
                names.append((v, s, lambda s=s: run_bitttt(a.bitttt, s, a, "fake")))
            elif v in ("bitttt.bf16", "bitttt.bf16lm"):
                precision = "bf16" if v == "bitttt.bf16" else "bf16-lmhead"
                names.append((v, s, lambda s=s, p=precision: run_bitttt(a.bitttt, s, a, "int8", p)))
            elif v in ("base", "base.bf16"):
                precision = "bf16" if v == "base.bf16" else "fp32"
                names.append((v, s, lambda s=s, p=precision: run_bitttt(a.base, s, a, "int8", p)))
            elif v.startswith("torch."):
                mode = v.split(".", 1)[1]
                for bf16 in ([False, True] if a.bf16 else [False]):
                    label = v + (".bf16" if bf16 else "")
                    holder = {}

                    def runner(D=D, L=L, mode=mode, bf16=bf16, holder=holder):
                        if "m" not in holder:
                            holder["m"] = TorchVariant(D, L, mode, bf16, a)
                        return holder["m"].run(a.steps)
                    names.append((label, s, runner))
                    holders.append((label, s, holder))
            else:
                raise SystemExit(f"error: unknown variant {v!r}")
    header = {"threads": a.threads, "rule": a.rule, "batch": a.batch, "context": a.context,
              "vocab": a.vocab, "rounds": a.rounds, "steps": a.steps, "cpu": cpu_name(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if torch_modes:
        header["torch"] = torch.__version__
    print(json.dumps(header), flush=True)
    results = {}  # (label, shape) -> list of (tokens/s, load)
    for r in range(a.rounds):
        # Alternate the order too: the first variant of a round is not always the same one.
        order = names if r % 2 == 0 else list(reversed(names))
        for label, s, runner in order:
            load = loadavg()
            try:
                value = runner()
            except Exception as e:  # noqa: BLE001 - one failing variant must not end the rest
                traceback.print_exc()
                value = None
                print(json.dumps({"round": r, "variant": label, "shape": s,
                                  "error": str(e).splitlines()[0][:300]}), flush=True)
            results.setdefault((label, s), []).append((value, load))
            if value is not None:
                print(json.dumps({"round": r, "variant": label, "shape": s,
                                  "tokens_per_s": round(value, 1), "load": load}), flush=True)
        _base_cache.clear()  # a new round measures again
        write_json(a.json, header, results)
    print_table(header, results, shapes)
    for label, s, holder in holders:
        if "m" in holder:
            print(f"{label} {s}: first step (compile, allocation) {holder['m'].warmup_s:.1f} s")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def summary(values):
    ok = [v for v, _ in values if v is not None]
    loads = [ld for _, ld in values]
    return (statistics.median(ok) if ok else None, min(loads), max(loads), len(ok))


def write_json(path, header, results):
    rows = []
    for (label, s), values in results.items():
        med, lo, hi, n = summary(values)
        rows.append({"variant": label, "shape": s, "median_tokens_per_s": med,
                     "rounds": [v for v, _ in values], "loads": [ld for _, ld in values]})
    with open(path, "w") as f:
        json.dump({**header, "results": rows}, f, indent=1)


def print_table(header, results, shapes):
    print(f"\n{header['cpu']}, {header['threads']} threads, rule {header['rule']}, batch "
          f"{header['batch']} x {header['context']}, vocab {header['vocab']}, median of "
          f"{header['rounds']} rounds (best of {header['steps']} steps each)")
    print("| shape | variant | tokens/s | vs bitttt | load (min-max) |")
    print("| --- | --- | --- | --- | --- |")
    for s, _, _ in shapes:
        ref = summary(results.get(("bitttt", s), []))[0] if ("bitttt", s) in results else None
        for (label, shape), values in results.items():
            if shape != s:
                continue
            med, lo, hi, n = summary(values)
            ratio = f"{med / ref:.2f}" if med and ref else ""
            val = f"{med:.1f}" if med else "error"
            print(f"| {s} | {label} | {val} | {ratio} | {lo:.1f}-{hi:.1f} |")


if __name__ == "__main__":
    main()
