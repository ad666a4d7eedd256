#!/usr/bin/env python3
"""Train a tiny Bit-TTT model from Python with the C++ trainer, then generate from it.

    python examples/train_tiny.py --data stories.txt.gz --out tiny --steps 200

The run writes out/metrics.jsonl, out/checkpoint.safetensors, out/model/ and out/model.bitt,
exactly as `bitttt train` does; --vocab-size 257 uses the byte-level tokenizer (no training).
"""
import argparse
import json
import pathlib

import bitttt


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="training text, plain or .gz")
    p.add_argument("--out", default="tiny", help="output directory")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab-size", type=int, default=257, help="<= 257: byte-level tokenizer")
    p.add_argument("--ttt-rule", default="reconstruct", choices=["reconstruct", "delta"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--context-len", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--prompt", default="Once upon a time")
    p.add_argument("--threads", type=int, default=0, help="0: all cores")
    args = p.parse_args(argv)

    bitttt.set_num_threads(args.threads)
    config = bitttt.ModelConfig(args.vocab_size, args.dim, args.layers, 0.1,
                                ttt_rule=args.ttt_rule)
    trainer = bitttt.train(args.data, args.out, config=config, steps=args.steps,
                           batch_size=args.batch_size, context_len=args.context_len, lr=args.lr,
                           min_lr=args.lr / 10, warmup_steps=max(1, args.steps // 10),
                           eval_interval=0, eval_batches=2, save_interval=0)
    losses = trainer.losses
    val = trainer.validation_loss()
    print(f"{trainer.steps_done} steps: loss {losses[0]:.3f} -> {losses[-1]:.3f}, "
          f"validation {val:.3f}")
    metrics = [json.loads(line) for line in (pathlib.Path(args.out) / "metrics.jsonl").open()]
    steps = sum("loss" in m for m in metrics)
    evals = sum("val_loss" in m for m in metrics)
    print(f"metrics.jsonl: {steps} step lines, {evals} validation lines")

    model = bitttt.Model.load(str(pathlib.Path(args.out) / "model.bitt"))
    session = bitttt.Session(model)
    text = "".join(session.generate(args.prompt, 40, temperature=0.7, seed=1))
    print(f"sample: {args.prompt}{text}")


if __name__ == "__main__":
    main()
