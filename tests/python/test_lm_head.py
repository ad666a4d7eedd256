"""The opt-in int8 lm_head (DeviceOptions::lm_head): the Python API's lm_head argument and the
commands' --lm-head flag on the shipped default model; bad values are clear errors."""
import subprocess

import numpy as np
import pytest

from conftest import ROOT

DEFAULT = ROOT / "models" / "default.bitt"
PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play in the park."


def run(cli, *args):
    return subprocess.run([str(cli), *map(str, args)], capture_output=True, text=True, timeout=120)


def test_python_lm_head_logits_near_f32():
    import bitttt

    ids = bitttt.Model.load(DEFAULT).tokenizer.encode(PROMPT)
    logits = {}
    for head in ("f32", "bf16", "int8"):
        s = bitttt.Session(bitttt.Model.load(DEFAULT, lm_head=head))
        logits[head] = np.asarray(s.forward(ids), dtype=np.float64)
    scale = np.abs(logits["f32"]).max()
    assert np.abs(logits["bf16"] - logits["f32"]).max() <= 1e-2 * scale
    d8 = np.abs(logits["int8"] - logits["f32"]).max()
    assert 0 < d8 <= 2e-2 * scale  # the option takes effect, within the stated distance
    assert logits["int8"].argmax() == logits["f32"].argmax()


@pytest.mark.parametrize("bad", ["int4", "", "INT8"])
def test_python_bad_lm_head_is_value_error(bad):
    import bitttt

    with pytest.raises(ValueError, match="lm_head must be 'bf16', 'f32' or 'int8'"):
        bitttt.Model.load(DEFAULT, lm_head=bad)


def test_cli_generate_int8_and_bad_value(bitttt_cli):
    out = {}
    for head in ("f32", "int8"):
        r = run(bitttt_cli, "generate", DEFAULT, "-p", PROMPT, "-n", 24, "--temperature", 0,
                "--no-stop", "-t", 1, "--lm-head", head)
        assert r.returncode == 0, r.stderr
        out[head] = r.stdout
    assert out["int8"][:40] == out["f32"][:40]  # greedy text starts the same (measured: all 24)
    for cmd in (["generate", DEFAULT, "-p", "x", "-n", 1], ["eval", DEFAULT, "--memory-effect"],
                ["bench", "decode", "--quick"]):
        r = run(bitttt_cli, *cmd, "--lm-head", "int4")
        assert r.returncode != 0
        assert "lm_head must be 'bf16', 'f32' or 'int8', got 'int4'" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
