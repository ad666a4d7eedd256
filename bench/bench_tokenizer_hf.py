#!/usr/bin/env python3
"""The reference side of `bitttt bench tokenizer`: the Python `tokenizers` package on the same
text and tokenizer.json. Prints one JSON object; optionally writes the ids for comparison.

Encoding: encode_batch over the documents of the text (split at "<|endoftext|>"), best of
--repeat runs. The thread count of the package is fixed by RAYON_NUM_THREADS before import, so
this script sets it from --threads (0: the package's default, all cores).
"""
import argparse
import array
import gzip
import json
import os
import sys
import time


def read_text(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return f.read()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokenizer", required=True, help="tokenizer.json")
    ap.add_argument("--text", required=True, help="UTF-8 text (plain or .gz)")
    ap.add_argument("--threads", type=int, default=1, help="0: all cores")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--ids-out", help="write all ids here as little-endian uint32")
    ap.add_argument("--train", help="also time BpeTrainer on this text file (plain or .gz)")
    ap.add_argument("--vocab-size", type=int, default=16384)
    args = ap.parse_args()

    if args.threads > 0:
        os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    import tokenizers
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(args.tokenizer)
    docs = read_text(args.text).split("<|endoftext|>")
    total_bytes = sum(len(d.encode("utf-8")) for d in docs)
    tok.encode_batch(docs)  # warm-up
    best = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        encodings = tok.encode_batch(docs)
        best = min(best, time.perf_counter() - start)
    result = {
        "package": f"tokenizers {tokenizers.__version__}",
        "threads": args.threads,
        "bytes": total_bytes,
        "seconds": best,
        "mb_per_s": total_bytes / best / 1e6,
        "tokens": sum(len(e.ids) for e in encodings),
    }
    if args.ids_out:
        ids = array.array("I")
        for e in encodings:
            ids.extend(e.ids)
        if sys.byteorder != "little":
            ids.byteswap()
        with open(args.ids_out, "wb") as f:
            ids.tofile(f)
    if args.train:
        from tokenizers import decoders, models, pre_tokenizers, trainers

        train_docs = read_text(args.train).split("<|endoftext|>")
        t = Tokenizer(models.BPE())
        t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        t.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=args.vocab_size, min_frequency=2, special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        start = time.perf_counter()
        t.train_from_iterator(train_docs, trainer)
        result["train_seconds"] = time.perf_counter() - start
    print(json.dumps(result))


if __name__ == "__main__":
    main()
