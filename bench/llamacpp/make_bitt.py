"""Writes a Bit-TTT .bitt with random weights at a compare.sh shape (needs the `bitttt` package).

The delta rule with Dt = D and HEADS heads: its q, k, v, o are D x D, the Llama attention's
weights in make_gguf.py; MLP and vocabulary the same. Floating-point tensors (embedding, lm_head)
are stored bf16, as in models/default.bitt.
"""
import argparse
import os
import sys

import bitttt


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("dim", "layers", "mlp", "vocab", "heads"):
        p.add_argument(f"--{name}", type=int, required=True)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    try:
        config = bitttt.ModelConfig(vocab_size=a.vocab, hidden_dim=a.dim, num_layers=a.layers,
                                    inner_lr=1.0, ttt_dim=a.dim, ttt_rule="delta",
                                    ttt_heads=a.heads, mlp_dim=a.mlp)
    except ValueError as e:
        p.error(str(e))
    bitttt.Model.random(config, seed=a.seed).save_bitt(a.out + ".tmp", dtype="bf16")
    os.replace(a.out + ".tmp", a.out)
    print(f"make_bitt: {a.out} ({os.path.getsize(a.out) / 1e6:.1f} MB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
