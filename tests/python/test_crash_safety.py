"""Crash safety of `bitttt train` (issue 9): SIGKILL at random moments, including while a checkpoint
is being written, never leaves a checkpoint that does not load; every kill is followed by a resume
from the last complete checkpoint, which must continue from the step it holds. A full disk
(RLIMIT_FSIZE) or an unwritable output directory gives a clear error and leaves the old checkpoint
byte for byte."""
import json
import os
import pathlib
import random
import resource
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

STORY = ("Once upon a time there was a little cat. The cat liked to play in the sun. "
         "One day the cat saw a bird and ran after it.\n<|endoftext|>\n")
# Small enough that a step takes about a millisecond, with a checkpoint every step, so a large part
# of the run is spent writing checkpoints (the window the kills aim at).
TINY = ["--vocab-size", "257", "--dim", "32", "--layers", "1", "--context-len", "16",
        "--batch-size", "2", "--threads", "1", "--eval-batches", "1", "--warmup-steps", "2",
        "--eval-interval", "1000000", "--save-interval", "1", "--quiet"]
KILLS = 16
TIME_BUDGET_S = 25.0


def checkpoint_step(path: pathlib.Path) -> int:
    """The step a checkpoint holds, read with the reference safetensors reader (an independent
    check that the file is complete and well formed)."""
    safetensors = pytest.importorskip("safetensors")
    with safetensors.safe_open(str(path), "np") as f:
        state = json.loads(f.metadata()["state"])
        for key in f.keys():  # every tensor must be readable: a truncated file fails here
            f.get_tensor(key)
    return int(state["step"])


def temp_files(out: pathlib.Path):
    return [p for p in out.iterdir() if ".tmp." in p.name] if out.exists() else []


def start(cli, args):
    return subprocess.Popen([str(cli), "train", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def kill_during_write_or_after(proc, out: pathlib.Path, rng: random.Random, aim_at_write: bool,
                               stale):
    """SIGKILLs proc: either the moment a new checkpoint temp file shows up (mid-write; `stale`
    are those earlier kills left behind), or after a random delay. Returns True when the process
    was still running when killed."""
    deadline = time.monotonic() + (10.0 if aim_at_write else rng.uniform(0.01, 0.4))
    while time.monotonic() < deadline and proc.poll() is None:
        if aim_at_write and set(temp_files(out)) - stale:
            break
        time.sleep(0.0005 if aim_at_write else 0.005)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return alive


def test_sigkill_at_random_moments_always_leaves_a_resumable_checkpoint(bitttt_cli, tmp_path):
    data = tmp_path / "data.txt"
    data.write_text(STORY * 6, encoding="utf-8")
    out = tmp_path / "out"
    ckpt = out / "checkpoint.safetensors"
    rng = random.Random(9)
    began = time.monotonic()
    last_step = 0
    mid_write_kills = 0
    for kill in range(KILLS):
        if time.monotonic() - began > TIME_BUDGET_S:
            break
        if ckpt.exists():
            args = ["--resume", ckpt, "--out", out, "--steps", 1000000, "--threads", 1,
                    "--save-interval", 1, "--quiet"]
        else:
            args = ["--data", data, "--out", out, "--steps", 1000000, *TINY]
        stale = set(temp_files(out))
        proc = start(bitttt_cli, args)
        aim = kill % 2 == 0
        alive = kill_during_write_or_after(proc, out, rng, aim, stale)
        err = proc.stderr.read()
        # It was killed, it did not stop on its own (a failed load of the checkpoint would).
        assert alive, f"bitttt train exited by itself ({proc.returncode}): {err}"
        assert proc.returncode == -signal.SIGKILL
        if set(temp_files(out)) - stale:
            mid_write_kills += 1
        if ckpt.exists():
            step = checkpoint_step(ckpt)
            assert step >= last_step, "a resumed run went back in time"
            last_step = step
    assert last_step > 0, "no checkpoint was ever completed"
    # Some kills hit a checkpoint write in progress (its temp file was left behind).
    assert mid_write_kills > 0
    # The final resume runs to completion from the step the checkpoint holds.
    r = subprocess.run([str(bitttt_cli), "train", "--resume", str(ckpt), "--out", str(out),
                        "--steps", str(last_step + 2), "--threads", "1", "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert checkpoint_step(ckpt) == last_step + 2
    # The temporary files the killed writers left were removed by the next save (their processes
    # are gone): crashes do not leak checkpoint-sized files.
    assert temp_files(out) == []
    rows = []
    for line in (out / "metrics.jsonl").read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line cut by a kill
    assert [row["step"] for row in rows if "loss" in row][-2:] == [last_step + 1, last_step + 2]


def _trained(bitttt_cli, tmp_path):
    data = tmp_path / "data.txt"
    data.write_text(STORY * 6, encoding="utf-8")
    out = tmp_path / "out"
    r = subprocess.run([str(bitttt_cli), "train", "--data", str(data), "--out", str(out),
                        "--steps", "2", *TINY], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out, out / "checkpoint.safetensors"


def test_disk_full_gives_a_clear_error_and_keeps_the_old_checkpoint(bitttt_cli, tmp_path):
    out, ckpt = _trained(bitttt_cli, tmp_path)
    before = ckpt.read_bytes()

    def small_disk():
        # Writes past 64 KiB fail with EFBIG (as on a full disk) instead of raising SIGXFSZ.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    r = subprocess.run([str(bitttt_cli), "train", "--resume", str(ckpt), "--out", str(out),
                        "--steps", "4", "--threads", "1", "--quiet"], capture_output=True,
                       text=True, timeout=120, preexec_fn=small_disk)
    assert r.returncode > 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0].lower(), r.stderr
    assert "checkpoint.safetensors" in lines[0] or "File too large" in lines[0], r.stderr
    assert ckpt.read_bytes() == before
    assert temp_files(out) == []
    assert checkpoint_step(ckpt) == 2


def _as_nobody():
    """For root, who ignores permissions: the child runs as `nobody` instead."""
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def test_unwritable_output_directory_gives_a_clear_error_and_keeps_the_checkpoint(bitttt_cli):
    # A directory of its own under /tmp (pytest's tmp_path is private to root): `nobody` must be
    # able to read the checkpoint and run the binary, and only the write must fail.
    root = pathlib.Path(tempfile.mkdtemp(prefix="bitttt_unwritable_"))
    try:
        root.chmod(0o755)
        out, ckpt = _trained(bitttt_cli, root)
        for p in root.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        before = ckpt.read_bytes()
        out.chmod(0o555)
        as_root = os.geteuid() == 0
        if as_root:
            probe = subprocess.run([str(bitttt_cli), "--version"], capture_output=True,
                                   preexec_fn=_as_nobody)
            if probe.returncode != 0:
                pytest.skip("root, and `nobody` cannot run the binary from here")
        r = subprocess.run([str(bitttt_cli), "train", "--resume", str(ckpt), "--out", str(out),
                            "--steps", "4", "--threads", "1", "--quiet"], capture_output=True,
                           text=True, timeout=120, preexec_fn=_as_nobody if as_root else None)
        out.chmod(0o755)
        assert r.returncode > 0, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "error" in lines[0].lower(), r.stderr
        assert "Permission denied" in lines[0], r.stderr
        assert ckpt.read_bytes() == before
        assert temp_files(out) == []
        assert checkpoint_step(ckpt) == 2
    finally:
        out_dir = root / "out"
        if out_dir.exists():
            out_dir.chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)
