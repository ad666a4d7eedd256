"""The shipped default model (models/default.bitt): it loads, tells a story, and its validation loss
on a slice of the shared validation text stays under the figure recorded in models/README.md."""
import pathlib
import re
import subprocess

import pytest

from conftest import ROOT, SHARED_DATA

MODEL = ROOT / "models" / "default.bitt"
README = ROOT / "models" / "README.md"
SLICE_TOKENS = 20000
MARGIN_NATS = 0.05

pytestmark = pytest.mark.skipif(not MODEL.exists(), reason="no shipped default model")


def recorded_slice_loss() -> float:
    m = re.search(r"slice loss check: ([0-9.]+) nats/token", README.read_text())
    assert m, "models/README.md must record the slice loss ('slice loss check: X nats/token')"
    return float(m.group(1))


def test_shipped_model_is_small_and_loads(bitttt_cli):
    assert MODEL.stat().st_size <= 24 * 1024 * 1024
    r = subprocess.run([str(bitttt_cli), "info", str(MODEL)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "tokenizer:" in r.stdout


def test_validation_loss_on_a_slice_stays_under_the_recorded_figure(bitttt_cli):
    r = subprocess.run(
        [str(bitttt_cli), "eval", str(MODEL), str(SHARED_DATA / "tinystories" / "valid.txt.gz"),
         "--max-tokens", str(SLICE_TOKENS), "--reset-every", "128", "-q"],
        capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    loss = float(re.search(r"loss: ([0-9.]+)", r.stdout).group(1))
    assert loss < recorded_slice_loss() + MARGIN_NATS


def test_make_run_prompt_tells_a_story(bitttt_cli):
    r = subprocess.run(
        [str(bitttt_cli), "generate", str(MODEL), "--prompt", "Once upon a time", "--max-tokens", "48",
         "--seed", "3"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert text.startswith("Once upon a time")
    words = re.findall(r"[A-Za-z]+", text)
    assert len(words) >= 20
    # A trained model writes mostly common English words, a random one gibberish.
    common = {"the", "a", "and", "to", "was", "he", "she", "they", "her", "his", "with", "it", "in"}
    assert sum(w.lower() in common for w in words) >= 5
