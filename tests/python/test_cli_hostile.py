"""Every `bitttt` subcommand against hostile input (issue 9): missing files, empty files, directories
where files are expected, garbage files, bad flag values (negative, zero, huge, non-numeric, NaN).
Each must fail with a one-line error on stderr (flag parse errors included
errors), a positive exit status (a negative one is a signal: a crash), and leave no output file or
temporary file behind."""
import os
import pathlib
import subprocess

import pytest

STORY = ("Once upon a time there was a little cat. The cat liked to play in the sun.\n"
         "<|endoftext|>\nThe dog ran after a ball.\n")
TINY = ["--vocab-size", "257", "--dim", "16", "--layers", "1", "--context-len", "8",
        "--batch-size", "1", "--threads", "1", "--eval-batches", "1", "--warmup-steps", "1",
        "--quiet"]


@pytest.fixture(scope="module")
def files(bitttt_cli, tmp_path_factory):
    """Valid inputs (a tiny trained model in every form) and hostile ones."""
    d = tmp_path_factory.mktemp("hostile")
    (d / "data.txt").write_text(STORY * 4, encoding="utf-8")
    r = subprocess.run([str(bitttt_cli), "train", "--data", str(d / "data.txt"), "--out",
                        str(d / "run"), "--steps", "2", *TINY], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(bitttt_cli), "generate", str(d / "run" / "model.bitt"), "-p", "Once",
                        "-n", "2", "--state-out", str(d / "state.tttstate"), "-t", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (d / "empty").write_bytes(b"")
    (d / "adir").mkdir()
    (d / "garbage").write_bytes(bytes(range(256)) * 8)
    (d / "json_garbage").write_text('{"vocab_size": -1, "hidden_dim": "x"}')
    return {
        "bitt": d / "run" / "model.bitt",
        "modeldir": d / "run" / "model",
        "ckpt": d / "run" / "checkpoint.safetensors",
        "tok": d / "run" / "model" / "tokenizer.json",
        "text": d / "data.txt",
        "state": d / "state.tttstate",
        "missing": d / "does_not_exist",
        "empty": d / "empty",
        "dir": d / "adir",
        "garbage": d / "garbage",
        "json_garbage": d / "json_garbage",
        "root": d,
    }


BAD_FILES = ["missing", "empty", "dir", "garbage"]
BAD_NUMBERS = ["-1", "0", "99999999999999999999", "abc", "nan", "1e400", ""]


def snapshot(root: pathlib.Path):
    return {p: p.stat().st_size for p in root.rglob("*") if p.is_file()}


def run_hostile(cli, files, out_dir, args, allow_success=False, stdin=None):
    """Runs `bitttt args` (names of `files` entries in {...} are substituted) in a fresh output
    directory, with `stdin` (text) as its input, and checks the failure contract."""
    argv = [str(cli)]
    for a in args:
        for key, value in files.items():
            a = a.replace("{" + key + "}", str(value))
        argv.append(a.replace("{out}", str(out_dir)))
    before = snapshot(files["root"])
    out_dir.mkdir(exist_ok=True)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=out_dir,
                       **({"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}))
    assert r.returncode >= 0, f"{argv[1:]}: killed by signal {-r.returncode}: {r.stderr[-2000:]}"
    if allow_success and r.returncode == 0:
        return r
    assert r.returncode > 0, f"{argv[1:]} succeeded: {r.stdout[-500:]}"
    # Progress lines (tokenizer training prints "[  0.1s] ...") may come before the error.
    lines = [l for l in r.stderr.strip().splitlines() if l.strip() and not l.startswith("[")]
    assert lines, f"{argv[1:]}: no error message"
    assert len(lines) == 1, (argv[1:], lines)
    assert "Traceback" not in r.stderr and "terminate called" not in r.stderr
    # Nothing half-written: the inputs are untouched and no output or temporary file appeared.
    assert snapshot(files["root"]) == before, argv[1:]
    # `train` may fail after it started (e.g. the loss overflows at step 1): the token cache and
    # the metrics log it wrote by then are complete files, but no checkpoint or model may exist.
    left = [p for p in out_dir.rglob("*")
            if p.is_file() and not (p.name == "metrics.jsonl" or p.parent.name == "cache")]
    assert left == [], (argv[1:], left)
    assert not [p for p in out_dir.rglob("*") if ".tmp." in p.name], argv[1:]
    return r


def cases():
    c = []
    for bad in BAD_FILES + ["json_garbage"]:
        if bad in ("missing", "empty", "dir"):  # any bytes are text (invalid UTF-8 is replaced)
            c += [["eval", "{bitt}", "{%s}" % bad],
                  ["train", "--data", "{%s}" % bad, "--out", "{out}/run", "--steps", "1", *TINY]]
        c += [["info", "{%s}" % bad],
              ["generate", "{%s}" % bad, "-p", "hi", "-n", "2"],
              ["chat", "{%s}" % bad],
              ["eval", "{%s}" % bad, "{text}"],
              ["export", "{%s}" % bad, "{out}/m.bitt"],
              ["train", "--resume", "{%s}" % bad, "--out", "{out}/run", "--steps", "1"],
              ["tokenizer", "encode", "-k", "{%s}" % bad, "--text", "hi"],
              ["tokenizer", "decode", "-k", "{%s}" % bad, "1", "2"]]
    for bad in BAD_FILES:
        c += [["generate", "{bitt}", "-p", "hi", "-n", "2", "--state-in", "{%s}" % bad],
              ["chat", "{bitt}", "--state-in", "{%s}" % bad],
              ["train", "--data", "{text}", "--tokenizer", "{%s}" % bad, "--out", "{out}/run",
               "--steps", "1", *TINY[2:]],
              ["generate", "random:{%s}" % bad, "--ids", "1", "-n", "1"]]
    c += [["tokenizer", "train", "{missing}", "-o", "{out}/tok.json", "--vocab-size", "300"],
          ["tokenizer", "train", "{dir}", "-o", "{out}/tok.json", "--vocab-size", "300"],
          ["tokenizer", "train", "{text}", "-o", "{dir}", "--vocab-size", "300"],
          ["tokenizer", "encode", "-k", "{tok}", "{missing}"],
          ["tokenizer", "encode", "-k", "{tok}", "{dir}"],
          ["tokenizer", "decode", "-k", "{tok}", "999999"],
          ["tokenizer", "decode", "-k", "{tok}", "-5"],
          ["tokenizer", "decode", "-k", "{tok}", "abc"],
          # Outputs where they cannot go: a directory, a missing parent directory.
          ["generate", "{bitt}", "-p", "hi", "-n", "2", "--state-out", "{dir}"],
          ["generate", "{bitt}", "-p", "hi", "-n", "2", "--state-out", "{missing}/x/s.tttstate"],
          ["generate", "{bitt}", "-p", "hi", "-n", "1", "--dump-logits", "{dir}"],
          ["export", "{bitt}", "{garbage}/m.bitt"],
          ["export", "{bitt}", "{out}/m.bitt", "--dtype", "f64"],
          ["train", "--data", "{text}", "--out", "{garbage}", "--steps", "1", *TINY],
          # Prompts that do not fit the model.
          ["generate", "{bitt}", "--ids", "1,abc", "-n", "1"],
          ["generate", "{bitt}", "--ids", "99999999", "-n", "1"],
          ["generate", "{bitt}", "--ids", "-1", "-n", "1"],
          ["bench", "no_such_benchmark"],
          ["no_such_command"],
          []]
    for v in BAD_NUMBERS:
        c += [["generate", "{bitt}", "-p", "hi", "-n", v] if v not in ("0",) else None,
              ["generate", "{bitt}", "-p", "hi", "-n", "2", "--temperature", v]
              if v not in ("0",) else None,
              ["generate", "{bitt}", "-p", "hi", "-n", "2", "--top-k", v] if v != "0" else None,
              ["generate", "{bitt}", "-p", "hi", "-n", "2", "--top-p", v],
              ["generate", "{bitt}", "-p", "hi", "-n", "2", "--repeat-penalty", v],
              ["generate", "{bitt}", "-p", "hi", "-n", "2", "--threads", v] if v != "0" else None,
              ["eval", "{bitt}", "{text}", "--chunk", v],
              ["export", "{bitt}", "{out}/m.bitt", "--dtype", v]]
        for flag in ["--dim", "--layers", "--context-len", "--batch-size", "--steps", "--lr",
                     "--vocab-size", "--ttt-heads", "--inner-lr", "--warmup-steps"]:
            if flag in ("--warmup-steps", "--inner-lr") and v == "0":
                continue
            args = ["train", "--data", "{text}", "--out", "{out}/run", *TINY, "--steps", "1", flag, v]
            c.append(args)
        c.append(["tokenizer", "train", "{text}", "-o", "{out}/tok.json", "--vocab-size", v])
    return [x for x in c if x is not None]


CASES = cases()


def case_id(args):
    shown = [a for a in args if a not in TINY or a.startswith("{")]
    return " ".join(shown).replace("{out}/", "")


@pytest.mark.parametrize("args", CASES, ids=[case_id(a) for a in CASES])
def test_hostile_input_fails_cleanly(bitttt_cli, files, tmp_path, args):
    # Values that are legal after all: CLI11 reads an empty value as "use the default", and huge
    # finite sampling parameters and learning rates are valid numbers (a diverging run then stops
    # with a clear error, which run_hostile checks when it fails).
    legal = len(args) >= 2 and (args[-1] == "" or (args[-1] == "99999999999999999999" and args[-2] in (
        "--temperature", "--top-k", "--repeat-penalty", "--lr", "--inner-lr")))
    run_hostile(bitttt_cli, files, tmp_path / "out", args, allow_success=legal)


def flag_cases():
    """The flags and inputs cases() leaves out: every numeric flag of every subcommand with the
    values no command may take, the remaining file arguments, and garbage on stdin. Each entry:
    (args, stdin text or None)."""
    c = []
    never = ["-1", "abc", "99999999999999999999", "1e400", "nan"]
    per_command = {
        ("chat", "{bitt}"): ["-n", "--temperature", "--top-k", "--top-p", "--repeat-penalty",
                             "--repeat-last-n", "--seed", "--threads"],
        ("generate", "{bitt}", "-p", "hi", "-n", "2"): ["--repeat-last-n", "--seed"],
        ("eval", "{bitt}", "{text}"): ["--max-tokens", "--reset-every", "--threads"],
        ("bench", "membw", "--quick"): ["--threads"],
        ("tokenizer", "train", "{text}", "-o", "{out}/tok.json", "--vocab-size", "300"):
            ["--min-frequency", "--threads"],
        ("tokenizer", "encode", "-k", "{tok}", "--text", "hi"): ["--threads"],
        ("train", "--data", "{text}", "--out", "{out}/run", *TINY, "--steps", "1"):
            ["--ttt-dim", "--mlp-dim", "--act-bits", "--min-lr", "--save-interval",
             "--eval-interval", "--eval-batches", "--seed", "--threads", "--stop-at"],
    }
    for prefix, flags in per_command.items():
        for flag in flags:
            for v in never:
                c.append(([*prefix, flag, v], None))
    for args in (["train", "--data", "{text}", "--out", "{out}/run", *TINY, "--steps", "1",
                  "--ttt-rule", "nope"],
                 ["train", "--data", "{text}", "--out", "{out}/run", *TINY, "--steps", "1",
                  "--device", "tpu"],
                 ["train", "--data", "{text}", "--out", "{out}/run", *TINY, "--steps", "1",
                  "--act-bits", "3"],
                 ["train", "--data", "{text}", "--out", "{out}/run", *TINY, "--steps", "1",
                  "--dump-gradient", "{dir}"],
                 ["bench", "membw", "--quick", "--isa", "avx9000"],
                 ["tokenizer", "train", "{text}", "-o", "{out}/tok.json", "--vocab-size", "300",
                  "--special", ""],
                 ["tokenizer", "train", "{empty}", "-o", "{out}/tok.json", "--vocab-size", "300"],
                 ["export", "{bitt}", "{missing}/x/m.bitt"],
                 ["demo", "unexpected_argument"]):
        c.append((args, None))
    for bad in BAD_FILES:
        if bad != "garbage":  # any bytes are text (invalid UTF-8 is replaced)
            c.append((["train", "--data", "{text}", "--val-data", "{%s}" % bad, "--out",
                       "{out}/run", *TINY, "--steps", "1"], None))
        c.append((["bench", "decode", "--quick", "--model", "{%s}" % bad], None))
    # Garbage on stdin: JSON lines that are not strings / id arrays, ids out of range.
    for stdin in ['{"a": 1}\n', "[1, 2\n", '["x"]\n', "[-1]\n", "[99999999999]\n", "\x00\xff\n"]:
        c.append((["tokenizer", "decode", "-k", "{tok}", "--jsonl"], stdin))
    for stdin in ["[1, 2]\n", "not json\n", '"unterminated\n', "123\n"]:
        c.append((["tokenizer", "encode", "-k", "{tok}", "--jsonl"], stdin))
    for stdin in ["1 2 abc\n", "-5\n", "99999999999\n"]:
        c.append((["tokenizer", "decode", "-k", "{tok}"], stdin))
    return c


FLAG_CASES = flag_cases()


@pytest.mark.parametrize("args,stdin", FLAG_CASES,
                         ids=[case_id(a) + (" <stdin " + repr(s) if s else "") for a, s in FLAG_CASES])
def test_flag_values_and_stdin_fail_cleanly(bitttt_cli, files, tmp_path, args, stdin):
    # A huge finite temperature or repeat penalty is a valid number (nearly uniform sampling).
    legal = args[-1] == "99999999999999999999" and args[-2] in ("--temperature", "--repeat-penalty")
    run_hostile(bitttt_cli, files, tmp_path / "out", args, allow_success=legal, stdin=stdin)


FULL_DISK_CASES = [
    ["tokenizer", "train", "{text}", "-o", "{out}/tok.json", "--vocab-size", "300"],
    ["generate", "{bitt}", "-p", "hi", "-n", "1", "--dump-logits", "{out}/logits.bin"],
    ["export", "{bitt}", "{out}/m.bitt"],
    ["export", "{bitt}", "{out}/m.bitt", "--dtype", "bf16"],
]


@pytest.mark.parametrize("args", FULL_DISK_CASES, ids=[case_id(a) for a in FULL_DISK_CASES])
def test_full_disk_leaves_no_output_file(bitttt_cli, files, tmp_path, args):
    """Every single-file output on a full disk (RLIMIT_FSIZE: writes past 1 KiB fail with EFBIG):
    one error line, and neither the output nor a temporary file is left."""
    import resource
    import signal

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    out = tmp_path / "out"
    out.mkdir()
    argv = [str(bitttt_cli)]
    for a in args:
        for key, value in files.items():
            a = a.replace("{" + key + "}", str(value))
        argv.append(a.replace("{out}", str(out)))
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=out,
                       stdin=subprocess.DEVNULL, preexec_fn=small_disk)
    assert r.returncode > 0, (args, r.stdout[-300:], r.stderr[-300:])
    lines = [l for l in r.stderr.strip().splitlines() if l.strip() and not l.startswith("[")]
    assert len(lines) == 1 and "error" in lines[0].lower(), (args, lines)
    assert "File too large" in lines[0], lines[0]
    assert list(out.iterdir()) == [], (args, list(out.iterdir()))
