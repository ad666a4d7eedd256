"""Opt-in (BITTTT_LONG_TESTS=1, a few minutes): a small byte-level model trained on the shared
TinyStories subset reaches a validation loss well below the unigram entropy of the validation text,
i.e. it has learned more than byte frequencies. Also a benchmark of CPU training at small scale."""
import collections
import gzip
import json
import math
import os
import subprocess

import pytest

from conftest import SHARED_DATA

DATA = SHARED_DATA / "tinystories"
STEPS = int(os.environ.get("BITTTT_TINYSTORIES_STEPS", "200"))

pytestmark = pytest.mark.skipif(os.environ.get("BITTTT_LONG_TESTS") != "1",
                                reason="long test: set BITTTT_LONG_TESTS=1")


def unigram_entropy_nats(path):
    """Entropy of the byte-level token distribution of the validation text (documents + one
    <|endoftext|> token each), in nats per token: the loss of the best model that ignores context."""
    text = gzip.open(path, "rb").read()
    docs = [d.strip(b"\n") for d in text.split(b"\n<|endoftext|>\n")]
    counts = collections.Counter()
    for d in docs:
        if d:
            counts.update(d)
            counts["eot"] += 1
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values())


def test_tinystories_validation_loss_falls_below_unigram_entropy(bitttt_cli, tmp_path):
    if not (DATA / "train.txt.gz").exists():
        pytest.skip("no shared TinyStories data")
    out = tmp_path / "out"
    r = subprocess.run([str(bitttt_cli), "train", "--data", str(DATA / "train.txt.gz"),
                        "--val-data", str(DATA / "valid.txt.gz"), "--out", str(out),
                        "--vocab-size", "257", "--dim", "128", "--layers", "2",
                        "--context-len", "128", "--batch-size", "8", "--steps", str(STEPS),
                        "--lr", "3e-3", "--min-lr", "3e-4", "--warmup-steps", "30",
                        "--eval-interval", "100", "--eval-batches", "8", "--quiet"],
                       capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    val = [row["val_loss"] for row in rows if "val_loss" in row]
    entropy = unigram_entropy_nats(DATA / "valid.txt.gz")
    print(f"unigram entropy {entropy:.3f} nats; validation loss {val}")
    assert val[-1] < entropy - 0.5
    assert val[-1] < val[0]
