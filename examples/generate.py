#!/usr/bin/env python3
"""Generate text with a Bit-TTT model from Python, streaming it as it is produced.

    python examples/generate.py model.bitt --prompt "Once upon a time" -n 100
    python examples/generate.py out/model --prompt "The cat" --state-out memory.tttstate

The model is a .bitt file or a model directory with a tokenizer. The TTT memory can be saved after
generation and loaded before the next one (--state-in), so a later run continues with what the
model read before.
"""
import argparse
import sys
import time

import bitttt


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help=".bitt file or model directory")
    p.add_argument("-p", "--prompt", default="Once upon a time", help="prompt text")
    p.add_argument("-n", "--max-tokens", type=int, default=64, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=0.8, help="0: greedy")
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--state-in", help="load the TTT memory from this .tttstate file first")
    p.add_argument("--state-out", help="save the TTT memory to this .tttstate file at the end")
    p.add_argument("--threads", type=int, default=0, help="0: all cores")
    args = p.parse_args(argv)

    bitttt.set_num_threads(args.threads)
    model = bitttt.Model.load(args.model)
    if model.tokenizer is None:
        sys.exit(f"{args.model}: the model has no tokenizer")
    session = bitttt.Session(model)
    if args.state_in:
        session.load_state(args.state_in)

    print(args.prompt, end="", flush=True)
    start = time.perf_counter()
    pieces = session.generate(args.prompt, args.max_tokens, temperature=args.temperature,
                              top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    for piece in pieces:
        print(piece, end="", flush=True)
    print()
    seconds = time.perf_counter() - start
    result = pieces.result
    print(f"[{len(result.tokens)} tokens in {seconds:.2f} s, "
          f"{len(result.tokens) / max(result.generate_seconds, 1e-9):.1f} tokens/s, "
          f"stop: {result.stop_reason}, position {session.position}]", file=sys.stderr)
    if args.state_out:
        session.save_state(args.state_out)


if __name__ == "__main__":
    main()
