#!/usr/bin/env python3
"""Train a byte-level BPE tokenizer from Python and check it against the `tokenizers` package.

    python examples/train_tokenizer.py data.txt.gz --vocab-size 4096 --out tokenizer.json

The file is the Hugging Face tokenizer.json format: when the `tokenizers` package is installed,
the example loads the file with it and checks that both give the same ids on a sample.
"""
import argparse
import gzip
import sys
import time

import bitttt


def read_sample(path, max_bytes=20000):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        return f.read(max_bytes)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", help="UTF-8 text files, plain or .gz")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--min-frequency", type=int, default=2)
    p.add_argument("--out", default="tokenizer.json")
    p.add_argument("--threads", type=int, default=0, help="0: all cores")
    args = p.parse_args(argv)

    start = time.perf_counter()
    tok = bitttt.Tokenizer.train(args.files, vocab_size=args.vocab_size,
                                 min_frequency=args.min_frequency, threads=args.threads)
    tok.save(args.out)
    print(f"trained {tok.vocab_size} tokens in {time.perf_counter() - start:.2f} s -> {args.out}")

    sample = read_sample(args.files[0])
    ids = tok.encode(sample)
    assert tok.decode(ids) == sample, "decode(encode(text)) must give the text back"
    print(f"sample: {len(sample.encode())} bytes -> {len(ids)} tokens "
          f"({len(sample.encode()) / max(len(ids), 1):.2f} bytes/token)")
    try:
        import tokenizers
    except ImportError:
        print("(the tokenizers package is not installed: skipping the cross-check)")
        return
    hf_ids = tokenizers.Tokenizer.from_file(args.out).encode(sample).ids
    if hf_ids != ids:
        sys.exit("the tokenizers package encodes the sample differently")
    print("tokenizers package: same ids")


if __name__ == "__main__":
    main()
