"""The Python examples examples/generate.py and train_tokenizer.py run end to end on small inputs
and print what they promise (train_tiny.py: test_python_train.py)."""
import gzip
import pathlib
import subprocess
import sys

import pytest

import bitttt

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
STORIES = ROOT.parent / "shared" / "data" / "tinystories" / "valid.txt.gz"


def run_example(name, *args, cwd):
    r = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """About 40 KB of stories (TinyStories when present, else generated sentences)."""
    path = tmp_path_factory.mktemp("data") / "stories.txt"
    if STORIES.exists():
        with gzip.open(STORIES, "rt", encoding="utf-8") as f:
            text = f.read(40000)
    else:
        words = "once upon a time there was a little cat who liked to play in the sun".split()
        text = "\n<|endoftext|>\n".join(" ".join(words[i % 7:] + words[:i % 7]) + "."
                                        for i in range(600))
    path.write_text(text, encoding="utf-8")
    return path


def test_train_tokenizer_example(corpus, tmp_path):
    r = run_example("train_tokenizer.py", corpus, "--vocab-size", 400, "--out", "tok.json",
                    cwd=tmp_path)
    assert "tokenizers package: same ids" in r.stdout
    tok = bitttt.Tokenizer.from_file(str(tmp_path / "tok.json"))
    assert 256 < tok.vocab_size <= 400


def test_generate_example_streams_and_saves_state(tmp_path):
    tok = bitttt.Tokenizer.train_from_text("the cat sat on the mat. " * 50, vocab_size=280)
    model = bitttt.Model.random(bitttt.ModelConfig(tok.vocab_size, 32, 2, 0.1), seed=1,
                                tokenizer=tok)
    model.save_bitt(str(tmp_path / "m.bitt"))
    r = run_example("generate.py", "m.bitt", "--prompt", "the cat", "-n", 12, "--temperature", 0,
                    "--state-out", "mem.tttstate", "--threads", 1, cwd=tmp_path)
    # greedy: the same text as the API gives
    s = bitttt.Session(model)
    want = "".join(s.generate("the cat", 12, temperature=0))
    assert r.stdout == "the cat" + want + "\n"
    assert "tokens/s" in r.stderr
    # the saved memory is the session's after prompt + generated tokens
    loaded = bitttt.Session(model)
    loaded.load_state(str(tmp_path / "mem.tttstate"))
    assert loaded.position == s.position
    r2 = run_example("generate.py", "m.bitt", "--prompt", "the", "-n", 3, "--state-in",
                     "mem.tttstate", "--threads", 1, cwd=tmp_path)
    assert f"position {s.position + len(tok.encode('the')) + 3}" in r2.stderr or "end_of_text" in r2.stderr
