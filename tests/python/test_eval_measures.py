"""`bitttt eval --memory-effect` and `--long-positions` (src/model/evaluation.hpp) against the same
figures computed here from dumped logits (`generate --dump-logits`) with NumPy, the random token
sequences regenerated with a Python copy of the project's RNG (src/core/rng.hpp); the no-memory
property (inner_lr 0 gives ratio 1 exactly); bytes counted with the `tokenizers` package; and
every bad option as a one-line error."""
import json
import math
import re
import subprocess

import numpy as np
import pytest

from conftest import ROOT, SHARED_DATA
from test_generate_cli import TEXT, models, one_line_error, run, tok  # noqa: F401 (fixtures)

MASK = (1 << 64) - 1


class Rng:
    """xoshiro256** seeded by SplitMix64, as bitttt::Rng."""

    def __init__(self, seed):
        self.s, sm = [], seed
        for _ in range(4):
            sm = (sm + 0x9E3779B97F4A7C15) & MASK
            z = sm
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
            self.s.append(z ^ (z >> 31))

    def next_u64(self):
        rotl = lambda x, k: ((x << k) | (x >> (64 - k))) & MASK
        s = self.s
        result = (rotl((s[1] * 5) & MASK, 7) * 9) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def below(self, n):
        return (self.next_u64() * n) >> 64


def losses(cli, model, ids, tmp_path):
    """Loss at positions 0 .. len(ids)-2 of a fresh session, from the dumped logits."""
    dump = tmp_path / "logits.bin"
    r = run(cli, "generate", model, "--ids", ",".join(map(str, ids[:-1])), "-n", "0",
            "--dump-logits", dump)
    assert r.returncode == 0, r.stderr
    logits = np.fromfile(dump, "<f4").reshape(len(ids) - 1, -1).astype(np.float64)
    m = logits.max(axis=1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(ids) - 1), ids[1:]]


def fields(stdout):
    return dict(line.split(": ", 1) for line in stdout.decode().splitlines())


def test_memory_effect_matches_dumped_logits(bitttt_cli, models, tmp_path):
    n, seqs, seed = 7, 3, 11
    r = run(bitttt_cli, "eval", models["ids"], "--memory-effect", "--length", n, "--sequences",
            seqs, "--seed", seed, "--chunk", "4")
    assert r.returncode == 0, r.stderr
    out = fields(r.stdout)
    rng, c1, c2 = Rng(seed), [], []
    for _ in range(seqs):
        s = [1 + rng.below(49) for _ in range(n)]  # ids 1 .. vocab-1 (vocab 50)
        loss = losses(bitttt_cli, models["ids"], s + s, tmp_path)
        c1 += list(loss[0:n - 1])
        c2 += list(loss[n:2 * n - 1])
    copy1 = float(out["copy 1 loss"].split()[0])
    copy2 = float(out["copy 2 loss"].split()[0])
    assert f"({seqs * (n - 1)} tokens)" in out["copy 1 loss"]
    assert abs(copy1 - np.mean(c1)) < 1e-5 and abs(copy2 - np.mean(c2)) < 1e-5
    assert abs(float(out["copy 2 / copy 1"]) - np.mean(c2) / np.mean(c1)) < 1e-5
    assert abs(copy2 / copy1 - 1) > 1e-3  # this model's memory (inner_lr 0.5) shows


def test_memory_effect_without_memory_is_one(bitttt_cli, tmp_path):
    cfg = tmp_path / "nomem.json"
    cfg.write_text(json.dumps(dict(vocab_size=64, hidden_dim=32, num_layers=2, inner_lr=0)))
    r = run(bitttt_cli, "eval", f"random:{cfg}", "--memory-effect", "--length", "30",
            "--sequences", "4", "-q")
    assert r.returncode == 0, r.stderr
    out = fields(r.stdout)
    assert float(out["copy 1 loss"].split()[0]) > 1.0
    assert out["copy 2 / copy 1"] == "1.000000"


def test_long_positions_match_dumped_logits(bitttt_cli, models, tok, tmp_path):
    text_file = tmp_path / "t.txt"
    text_file.write_text(TEXT)
    r = run(bitttt_cli, "eval", models["text"], text_file, "--long-positions", "--near", "0:8",
            "--far", "20:30", "--windows", "2", "--chunk", "8")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert "2 windows of 31 tokens" in lines[0]
    ids = tok.encode(TEXT).ids
    want = {}
    for name, (b, e) in (("near", (0, 8)), ("far", (20, 30))):
        nats, count, nbytes = 0.0, 0, 0
        for w in range(2):
            window = ids[w * 31:(w + 1) * 31]
            nats += losses(bitttt_cli, models["text"], window, tmp_path)[b:e].sum()
            count += e - b
            nbytes += len(tok.decode(window[b + 1:e + 1]).encode())
        want[name] = (nats / count, nats / math.log(2) / nbytes, count)
    for line, name in ((lines[1], "near"), (lines[2], "far")):
        m = re.match(r"positions (\d+)-(\d+) \((\w+)\): ([0-9.]+) nats/token, ([0-9.]+) bits/byte "
                     r"\((\d+) tokens\)", line)
        assert m and m.group(3) == name, line
        nats, bpb, count = want[name]
        assert abs(float(m.group(4)) - nats) < 1e-5
        assert abs(float(m.group(5)) - bpb) < 1e-4
        assert int(m.group(6)) == count
    assert lines[3].startswith("far / near: ")


def test_eval_bits_per_byte(bitttt_cli, models, tok, tmp_path):
    text_file = tmp_path / "t.txt"
    text_file.write_text(TEXT[:400])
    n = 50
    r = run(bitttt_cli, "eval", models["text"], text_file, "--max-tokens", n, "-q")
    assert r.returncode == 0, r.stderr
    out = fields(r.stdout)
    ids = tok.encode(TEXT[:400]).ids[:n]
    nbytes = len(tok.decode(ids[1:]).encode())
    want = float(out["loss"]) * (n - 1) / math.log(2) / nbytes
    assert abs(float(out["bits/byte"]) - want) < 1e-4


@pytest.mark.parametrize("args,message", [
    (["--long-positions", "--near", "5:5"], "empty"),
    (["--long-positions", "--near", "7:3"], "empty"),
    (["--long-positions", "--near", "0:8", "--far", "abc"], "BEGIN:END"),
    (["--long-positions", "--near", "0:8", "--far", "10:"], "BEGIN:END"),
    (["--long-positions", "--near", "0:8", "--far", "-4:10"], "empty"),
    (["--long-positions", "--near", "0:8", "--far", "10:100000"], "fewer than one window"),
    (["--long-positions", "--near", "0:8", "--far", "10:20", "--windows", "100000"], "fill only"),
    (["--memory-effect", "--length", "1"], "length"),
    (["--memory-effect", "--sequences", "0"], "sequences"),
])
def test_bad_measure_options(bitttt_cli, models, tmp_path, args, message):
    text_file = tmp_path / "t.txt"
    text_file.write_text(TEXT)
    file_arg = [text_file] if "--long-positions" in args else []
    r = run(bitttt_cli, "eval", models["text"], *file_arg, *args, "-q")
    assert message in one_line_error(r), r.stderr


def test_file_requirements(bitttt_cli, models, tmp_path):
    text_file = tmp_path / "t.txt"
    text_file.write_text(TEXT)
    assert "needs a text FILE" in one_line_error(
        run(bitttt_cli, "eval", models["text"], "--long-positions"))
    assert "needs a text FILE" in one_line_error(run(bitttt_cli, "eval", models["text"]))
    assert "not a FILE" in one_line_error(
        run(bitttt_cli, "eval", models["text"], text_file, "--memory-effect"))
    assert "no tokenizer" in one_line_error(
        run(bitttt_cli, "eval", models["ids"], text_file, "--long-positions"))


def test_help_describes_the_measures(bitttt_cli):
    r = run(bitttt_cli, "eval", "--help")
    assert r.returncode == 0
    text = r.stdout.decode()
    for flag in ["--memory-effect", "--length", "--sequences", "--seed", "--long-positions",
                 "--near", "--far", "--windows"]:
        assert flag in text, flag


DEFAULT_MODEL = ROOT / "models" / "default.bitt"
VALID = SHARED_DATA / "tinystories" / "valid.txt.gz"


@pytest.mark.skipif(not DEFAULT_MODEL.exists() or not VALID.exists(),
                    reason="no shipped default model or no shared data")
def test_default_model_measures_run(bitttt_cli):
    """The shipped model on the shared validation text (small settings; models/README.md has the
    full figures)."""
    r = run(bitttt_cli, "eval", DEFAULT_MODEL, "--memory-effect", "--length", "32", "--sequences",
            "4", "-q")
    assert r.returncode == 0, r.stderr
    assert 0 < float(fields(r.stdout)["copy 2 / copy 1"]) < 2
    r = run(bitttt_cli, "eval", DEFAULT_MODEL, VALID,
            "--long-positions", "--near", "0:32", "--far", "200:256", "--windows", "2", "-q")
    assert r.returncode == 0, r.stderr
    assert re.search(r"positions 200-256 \(far\): [0-9.]+ nats/token, [0-9.]+ bits/byte",
                     r.stdout.decode())
