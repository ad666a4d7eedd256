"""`bitttt train` end to end: flags, outputs (metrics, checkpoint, model directory, .bitt), the token
cache, Ctrl-C saving a checkpoint that resumes, and the loss-curve plot tool."""
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
STORY = ("Once upon a time there was a little cat. The cat liked to play in the sun. "
         "One day the cat saw a bird and ran after it.\n<|endoftext|>\n")
TINY = ["--vocab-size", "257", "--dim", "32", "--layers", "1", "--context-len", "16",
        "--batch-size", "2", "--threads", "1", "--eval-batches", "1", "--warmup-steps", "2"]


def run(cli, *args, **kw):
    return subprocess.run([str(cli), *map(str, args)], capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text(STORY * 6, encoding="utf-8")
    return path


def test_help_lists_the_flags_with_the_seed_defaults(bitttt_cli):
    r = run(bitttt_cli, "train", "--help")
    assert r.returncode == 0, r.stderr
    for flag, default in [("--dim", "256"), ("--layers", "8"), ("--context-len", "128"),
                          ("--batch-size", "16"), ("--lr", "0.0003"), ("--warmup-steps", "100"),
                          ("--min-lr", "1e-05"), ("--save-interval", "500")]:
        line = next(l for l in r.stdout.splitlines() if l.strip().startswith(flag + " "))
        assert default in line, line
    for flag in ["--steps", "--weight-decay", "--ttt-rule", "--vocab-size", "--tokenizer", "--data", "--val-data",
                 "--eval-interval", "--seed", "--threads", "--device", "--cpu-precision", "--out", "--resume"]:
        assert flag in r.stdout


def test_cpu_precision_bf16_trains(bitttt_cli, data, tmp_path):
    r = run(bitttt_cli, "train", "--data", data, "--out", tmp_path / "out", *TINY, "--steps", "3",
            "--cpu-precision", "bf16")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "checkpoint.safetensors").exists()


@pytest.mark.parametrize("args, message", [
    (["--device", "tpu"], "--device 'tpu'"),
    (["--gpu-optimizer-state", "fp8"], "--gpu-optimizer-state 'fp8'"),
    (["--gpu-grad-precision", "fp16"], "--gpu-grad-precision 'fp16' is unknown"),
    (["--gpu-grad-precision", "bf16", "--gpu-precision", "fp32"], "needs --gpu-precision bf16"),
    (["--gpu-activations", "all"], "--gpu-activations 'all' is unknown"),
    (["--cpu-precision", "fp16"], "--cpu-precision 'fp16' is unknown"),
    (["--steps", "0"], "--steps must be positive"),
    (["--ttt-rule", "attention"], "unknown TTT rule"),
    (["--lr", "1e-5", "--min-lr", "1e-3"], "--min-lr"),
    (["--weight-decay", "-0.1"], "--weight-decay must be in [0, 1)"),
    (["--weight-decay", "1.5"], "--weight-decay must be in [0, 1)"),
])
def test_bad_arguments_give_one_line_errors(bitttt_cli, data, tmp_path, args, message):
    r = run(bitttt_cli, "train", "--data", data, "--out", tmp_path / "out", *TINY, *args)
    assert r.returncode != 0
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_device_cuda_without_a_gpu_is_a_one_line_error(bitttt_cli, data, tmp_path):
    r = run(bitttt_cli, "train", "--data", data, "--out", tmp_path / "out", *TINY,
            "--steps", "1", "--device", "cuda")
    if r.returncode == 0:
        pytest.skip("this machine has a GPU: --device cuda trained (tests/cuda cover it)")
    assert "no CUDA GPU is available" in r.stderr or "no CUDA backend" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_missing_data_file_is_an_error(bitttt_cli, tmp_path):
    r = run(bitttt_cli, "train", "--data", tmp_path / "nope.txt", "--out", tmp_path / "out", *TINY)
    assert r.returncode != 0 and "nope.txt" in r.stderr


def test_training_writes_metrics_checkpoint_and_models(bitttt_cli, data, tmp_path):
    out = tmp_path / "out"
    r = run(bitttt_cli, "train", "--data", data, "--out", out, "--steps", "6", "--eval-interval", "3",
            *TINY)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    for row in steps:
        assert set(row) >= {"step", "loss", "lr", "grad_norm", "tokens_per_s"}
        assert 0 < row["loss"] < 10 and row["grad_norm"] > 0 and row["tokens_per_s"] > 0
    assert steps[0]["lr"] < steps[1]["lr"]  # warmup
    assert [r["step"] for r in rows if "val_loss" in r] == [3, 6]
    assert (out / "model" / "config.json").exists() and (out / "model" / "tokenizer.json").exists()
    assert (out / "model.bitt").read_bytes()[:4] == b"BITT"
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["hidden_dim"] == 32 and config["vocab_size"] == 257

    safetensors = pytest.importorskip("safetensors.numpy")
    ck = safetensors.load_file(str(out / "checkpoint.safetensors"))
    assert ck["param.embed.weight"].shape == (257, 32)
    assert ck["adam_v.lm_head.weight"].shape == (257, 32)
    assert (ck["adam_v.lm_head.weight"] >= 0).all()
    model = safetensors.load_file(str(out / "model" / "model.safetensors"))
    assert (model["layers.0.mlp.gate_proj.weight"] == ck["param.layers.0.mlp.gate_proj.weight"]).all()

    # The token cache is reused by a second run on the same data and tokenizer.
    cache = sorted((out / "cache").iterdir())
    assert [p.suffix for p in cache] == [".json", ".tokens"]
    stamp = cache[1].stat().st_mtime_ns
    r = run(bitttt_cli, "train", "--data", data, "--out", out, "--steps", "1", *TINY)
    assert r.returncode == 0, r.stderr
    assert cache[1].stat().st_mtime_ns == stamp

    pytest.importorskip("matplotlib")
    r = subprocess.run([sys.executable, ROOT / "tools" / "plot_metrics.py", out / "metrics.jsonl"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_weight_decay_flag_sets_the_decay_and_is_checkpointed(bitttt_cli, data, tmp_path):
    # The default (0.1) given explicitly changes nothing; another decay changes the weights (AdamW
    # decays the matrices by lr·wd each step) and is the one the checkpoint keeps for a resume.
    safetensors = pytest.importorskip("safetensors")
    models = {}
    for name, extra in [("default", []), ("explicit", ["--weight-decay", "0.1"]),
                        ("none", ["--weight-decay", "0"])]:
        out = tmp_path / name
        r = run(bitttt_cli, "train", "--data", data, "--out", out, "--steps", "3", "--lr", "1e-2",
                "--eval-interval", "0", "--quiet", *TINY, *extra)
        assert r.returncode == 0, r.stderr
        models[name] = (out / "model" / "model.safetensors").read_bytes()
        with safetensors.safe_open(str(out / "checkpoint.safetensors"), "np") as f:
            state = json.loads(f.metadata()["state"])
        assert state["options"]["weight_decay"] == pytest.approx(0.0 if name == "none" else 0.1)
    assert models["default"] == models["explicit"]
    assert models["default"] != models["none"]


def test_eval_documents_scores_the_tokens_training_validates_on(bitttt_cli, data, tmp_path):
    # The trainer's validation loss is over consecutive windows of the document stream (each
    # document's tokens, then <|endoftext|>); `bitttt eval --documents --reset-every T` on the
    # first windows' tokens gives the same figure (training forward vs inference: float
    # tolerance). Without --documents the text is encoded whole, separator newlines included.
    val = tmp_path / "val.txt"
    val.write_text("A dog ran to the park.\n<|endoftext|>\nThe sun was hot and the girl sat "
                   "down.\n<|endoftext|>\nTom had a red ball.\n\n<|endoftext|>\n" * 3,
                   encoding="utf-8")
    out = tmp_path / "out"
    r = run(bitttt_cli, "train", "--data", data, "--val-data", val, "--out", out, "--steps", "8",
            "--lr", "1e-2", "--eval-interval", "0", "--quiet", *TINY[:-6], "--threads", "1",
            "--eval-batches", "2", "--warmup-steps", "2")
    assert r.returncode == 0, r.stderr
    val_loss = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()][-1]
    windows = 2 * 2  # eval-batches x batch-size, 16 tokens each
    r = run(bitttt_cli, "eval", out / "model.bitt", val, "--documents", "--reset-every", "16",
            "--max-tokens", windows * 16 + 1, "-q", "-t", "1")
    assert r.returncode == 0, r.stderr
    assert f"tokens: {windows * 16}" in r.stdout
    loss = float(re.search(r"loss: ([0-9.]+)", r.stdout).group(1))
    assert loss == pytest.approx(val_loss["val_loss"], rel=1e-3)
    counts = []
    for extra in (["--documents"], []):
        r = run(bitttt_cli, "eval", out / "model.bitt", val, *extra, "-q", "-t", "1")
        assert r.returncode == 0, r.stderr
        counts.append(int(re.search(r"tokens: (\d+)", r.stdout).group(1)))
    assert counts[1] > counts[0]  # the whole text also has the separator lines' newlines


def test_ctrl_c_saves_a_checkpoint_that_resumes(bitttt_cli, data, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([str(bitttt_cli), "train", "--data", str(data), "--out", str(out),
                             "--steps", "100000", *TINY], stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "checkpoint saved" in err
    safetensors = pytest.importorskip("safetensors")
    with safetensors.safe_open(str(out / "checkpoint.safetensors"), "np") as f:
        state = json.loads(f.metadata()["state"])
    step = state["step"]
    assert step >= 2
    r = run(bitttt_cli, "train", "--resume", out / "checkpoint.safetensors", "--out", out,
            "--steps", step + 2, "--threads", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(l) for l in metrics.read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r][-2:] == [step + 1, step + 2]
