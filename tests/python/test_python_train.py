"""Training from Python through the C++ trainer: bitttt.Trainer, bitttt.train and
examples/train_tiny.py."""
import json
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import bitttt

TEXT = "\n<|endoftext|>\n".join(
    f"story {i}: the little fox saw {i % 5} shiny stones by the river and was happy." for i in range(300))
CONFIG = bitttt.ModelConfig(257, 32, 1, 0.1)
SMALL = dict(config=CONFIG, batch_size=4, context_len=32, lr=3e-3, min_lr=3e-4, warmup_steps=2,
             eval_interval=0, eval_batches=2, save_interval=0)


# One kernel thread for the whole module (conftest.py).
pytestmark = pytest.mark.usefixtures("one_kernel_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "text.txt"
    path.write_text(TEXT)
    return str(path)


def test_trainer_steps_learn_and_report(data, tmp_path):
    t = bitttt.Trainer(data, str(tmp_path), steps=20, export_model=False, **SMALL)
    assert t.steps_done == 0 and t.config.vocab_size == 257 and t.tokenizer.vocab_size == 257
    first = t.step()
    assert set(first) == {"step", "loss", "lr", "grad_norm", "tokens_per_s"}
    assert first["step"] == 1 and math.isfinite(first["loss"]) and first["grad_norm"] > 0
    # a uniform guess over 257 tokens has loss ln 257: the start is near it
    assert abs(first["loss"] - math.log(257)) < 1.0
    for _ in range(19):
        last = t.step()
    assert t.steps_done == 20 and len(t.losses) == 20
    assert last["loss"] < first["loss"] - 0.5
    assert math.isfinite(t.validation_loss())


def test_train_runs_and_exports_a_loadable_model(data, tmp_path):
    out = tmp_path / "run"
    t = bitttt.train(data, str(out), steps=8, **SMALL)
    assert t.steps_done == 8 and t.out_dir == str(out)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == list(range(1, 9))
    model = bitttt.Model.load(str(out / "model.bitt"))
    same = bitttt.Model.load(str(out / "model"))
    assert model.config == t.config and model.identity_hash == same.identity_hash
    ids = model.tokenizer.encode("the little fox")
    np.testing.assert_array_equal(bitttt.Session(model).forward(ids, all_logits=True),
                                  bitttt.Session(same).forward(ids, all_logits=True))


def test_resume_continues_bit_for_bit(data, tmp_path):
    straight = bitttt.Trainer(data, str(tmp_path / "a"), steps=6, export_model=False, **SMALL)
    assert straight.run() == "finished"
    part = bitttt.Trainer(data, str(tmp_path / "b"), steps=6, stop_at_step=3,
                          export_model=False, **SMALL)
    assert part.run() == "stopped" and part.steps_done == 3
    resumed = bitttt.Trainer(data, str(tmp_path / "b"), resume=str(tmp_path / "b" / "checkpoint.safetensors"),
                             export_model=False)
    assert resumed.steps_done == 3
    assert resumed.run() == "finished"
    assert part.losses == straight.losses[:3]
    assert resumed.losses == straight.losses[3:]  # the losses of this run's steps


def test_cpu_precision_bf16_learns_like_fp32(data, tmp_path):
    # bf16 products on the CPU (opt-in): the loss stays near fp32's, and the checkpoint resumes
    # in fp32 (it holds fp32 parameters only).
    runs = {}
    for precision in ("fp32", "bf16"):
        t = bitttt.Trainer(data, str(tmp_path / precision), steps=10, export_model=False,
                           cpu_precision=precision, **SMALL)
        assert t.run() == "finished"
        runs[precision] = t.losses
    with open("/proc/cpuinfo") as f:
        native = "avx512_bf16" in f.read()
    if native:  # else the products fall back to fp32
        assert runs["bf16"] != runs["fp32"]  # the bf16 products ran
    assert max(abs(a - b) for a, b in zip(runs["bf16"], runs["fp32"])) < 0.05
    resumed = bitttt.Trainer(data, str(tmp_path / "bf16"), steps=12, export_model=False,
                             resume=str(tmp_path / "bf16" / "checkpoint.safetensors"))
    assert resumed.steps_done == 10 and resumed.run() == "finished"
    with pytest.raises(ValueError, match="cpu_precision"):
        bitttt.Trainer(data, str(tmp_path), steps=5, cpu_precision="fp16", **SMALL)


def test_bad_options(data, tmp_path):
    with pytest.raises(ValueError, match="steps"):
        bitttt.Trainer(data, str(tmp_path), steps=0)
    with pytest.raises(ValueError, match="batch-size"):
        bitttt.Trainer(data, str(tmp_path), steps=5, batch_size=-2)
    with pytest.raises(ValueError, match="lr"):
        bitttt.Trainer(data, str(tmp_path), steps=5, lr=-1.0)
    with pytest.raises(ValueError, match="data"):
        bitttt.Trainer("", str(tmp_path), steps=5)
    with pytest.raises(OSError):
        bitttt.Trainer(str(tmp_path / "missing.txt"), str(tmp_path), steps=5, **SMALL)
    with pytest.raises(OSError):
        bitttt.Trainer(data, str(tmp_path), resume=str(tmp_path / "missing.safetensors"))
    with pytest.raises(TypeError):
        bitttt.Trainer(data, str(tmp_path), config="big")
    with pytest.raises(TypeError):
        bitttt.Trainer(data, str(tmp_path), steps="ten")


def test_device_option(data, tmp_path):
    with pytest.raises(ValueError, match="device"):
        bitttt.Trainer(data, str(tmp_path), steps=5, device="tpu", **SMALL)
    with pytest.raises(ValueError, match="gpu_precision"):
        bitttt.Trainer(data, str(tmp_path), steps=5, gpu_precision="fp16", **SMALL)
    with pytest.raises(ValueError, match="gpu_optimizer_state"):
        bitttt.Trainer(data, str(tmp_path), steps=5, gpu_optimizer_state="fp8", **SMALL)
    with pytest.raises(ValueError, match="gpu_grad_precision"):
        bitttt.Trainer(data, str(tmp_path), steps=5, gpu_grad_precision="fp16", **SMALL)
    with pytest.raises(ValueError, match="gpu_grad_precision"):
        bitttt.Trainer(data, str(tmp_path), steps=5, gpu_precision="fp32",
                       gpu_grad_precision="bf16", **SMALL)
    with pytest.raises(TypeError):
        bitttt.Trainer(data, str(tmp_path), steps=5, device=0, **SMALL)
    try:
        bitttt.check_device("cuda")
        gpu = True
    except RuntimeError:
        gpu = False
    if not gpu:  # with a GPU, tests/python/test_python_cuda.py trains there
        out = tmp_path / "cuda"
        for device in ("cuda", "cuda:0"):
            with pytest.raises(RuntimeError, match="device='cuda'") as e:
                bitttt.train(data, str(out), steps=5, device=device, **SMALL)
            assert "no CUDA backend" in str(e.value) or "no CUDA GPU" in str(e.value)
        assert not out.exists()  # the error comes before any file is written
    # device='cpu' is the default
    t = bitttt.Trainer(data, str(tmp_path / "cpu"), steps=2, device="cpu", export_model=False,
                       **SMALL)
    assert t.run() == "finished"


def test_train_tiny_example(data, tmp_path):
    example = pathlib.Path(__file__).resolve().parents[2] / "examples" / "train_tiny.py"
    r = subprocess.run([sys.executable, str(example), "--data", data, "--out", "tiny", "--steps", "30",
                        "--dim", "32", "--layers", "1", "--batch-size", "4", "--context-len", "32",
                        "--threads", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    first, last = r.stdout.split("loss ")[1].split(",")[0].split(" -> ")
    assert float(last) < float(first)  # it learned something in 30 steps
    assert "metrics.jsonl: 30 step lines" in r.stdout and "sample: Once upon a time" in r.stdout
    assert (tmp_path / "tiny" / "model.bitt").exists()
    assert (tmp_path / "tiny" / "model" / "config.json").exists()


def test_trainer_with_a_tokenizer_file_and_path_objects(data, tmp_path):
    tok = bitttt.Tokenizer.train_from_text(TEXT, vocab_size=300)
    tok.save(tmp_path / "tok.json")
    options = dict(SMALL, config=bitttt.ModelConfig(16384, 32, 1, 0.1))
    t = bitttt.Trainer(pathlib.Path(data), tmp_path / "out", tokenizer=tmp_path / "tok.json",
                       steps=2, export_model=False, **options)
    assert t.config.vocab_size == tok.vocab_size  # taken from the tokenizer
    assert t.tokenizer.to_json() == tok.to_json()
    assert t.step()["step"] == 1


CHILD = r"""
import os, signal, sys, time, bitttt
# Python installs its handler only where SIGINT was not ignored at start (a parent run in the
# background, e.g. under nohup, passes SIG_IGN down): install it so the test sees the usual setup.
signal.signal(signal.SIGINT, signal.default_int_handler)
bitttt.set_num_threads(1)
t = bitttt.Trainer(sys.argv[1], sys.argv[2], config=bitttt.ModelConfig(257, 32, 1, 0.1), steps=100000,
                   batch_size=4, context_len=32, eval_interval=0, save_interval=0, export_model=False)
t.step()
print("started", flush=True)
try:
    t.run()
    print("finished")
except KeyboardInterrupt:
    print("interrupted", t.steps_done, flush=True)
# Python's own C-level handler must be back: a second SIGINT raises KeyboardInterrupt here (the
# trainer's handler would swallow it; SIG_DFL would kill the process). signal.getsignal() cannot
# tell, it reports the Python-level handler whatever the C level holds.
try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(2)
    print("python handler back: False")
except KeyboardInterrupt:
    print("python handler back: True")
"""


def test_ctrl_c_saves_a_checkpoint_and_raises_keyboard_interrupt(data, tmp_path):
    import signal
    import time

    child = subprocess.Popen([sys.executable, "-c", CHILD, data, str(tmp_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "started"
    time.sleep(0.5)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("interrupted ") and int(lines[0].split()[1]) >= 1
    assert lines[1] == "python handler back: True"
    assert (tmp_path / "checkpoint.safetensors").exists()


def test_a_trainer_used_from_two_threads_gives_a_clean_error(data, tmp_path):
    import threading

    t = bitttt.Trainer(data, str(tmp_path), steps=60, export_model=False, **SMALL)
    outcome = []
    worker = threading.Thread(target=lambda: (bitttt.set_num_threads(1), outcome.append(t.run())))
    worker.start()
    errors = []
    while worker.is_alive() and not errors:
        try:
            t.step()
        except RuntimeError as e:
            errors.append(str(e))
    worker.join()
    assert errors and "busy" in errors[0]
    assert outcome == ["finished"] and t.steps_done >= 60
