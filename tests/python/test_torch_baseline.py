"""The PyTorch baselines of bench/ (issues 8 and 10): right by definition and the same model.

- the chunked delta-rule form (§2.3a) equals the per-token loop in float64, values and gradients;
- the PyTorch Bit-TTT model's logits equal the engine's (`bitttt.Model`) for the same weights,
  and its loss and gradient equal the C++ trainer's (`bitttt train --dump-gradient`): the
  baseline is the same model, not a look-alike;
- bench/torch_train.py reads the token cache of `bitttt train`, its loss falls, a stopped run
  resumes exactly, and its export loads in `bitttt eval` with the same validation loss.
Skipped without torch (CI without it).
"""
import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import torch_data  # noqa: E402
import torch_train  # noqa: E402
from torch_models import BitTTTConfig, BitTTTModel, save_model_dir  # noqa: E402
from torch_ttt_scan import delta_rule_chunked, delta_rule_loop  # noqa: E402

STORIES = [
    "Once upon a time there was a little cat. The cat liked to play in the sun.",
    "Tom had a red ball. He threw the ball to his dog, and the dog ran after it.",
    "Lily saw a big tree in the park. She wanted to climb it, but it was too tall.",
    "A small bird sang a song every morning. The children loved to hear the bird.",
]


def story_text(repeats):
    return "".join(s + "\n<|endoftext|>\n" for _ in range(repeats) for s in STORIES)


def scan_inputs(B, H, T, Dh, seed):
    g = torch.Generator().manual_seed(seed)

    def unit(x):
        return x / x.norm(dim=-1, keepdim=True)

    q = unit(torch.randn(B, H, T, Dh, generator=g, dtype=torch.float64))
    k = unit(torch.randn(B, H, T, Dh, generator=g, dtype=torch.float64))
    v = torch.randn(B, H, T, Dh, generator=g, dtype=torch.float64)
    beta = 1.5 * torch.rand(B, H, T, generator=g, dtype=torch.float64)
    s0 = 0.3 * torch.randn(B, H, Dh, Dh, generator=g, dtype=torch.float64)
    return [t.requires_grad_() for t in (q, k, v, beta, s0)]


@pytest.mark.parametrize("read_after", [False, True])
@pytest.mark.parametrize("T, C", [(37, 8), (5, 16), (48, 16), (1, 4)])
def test_chunked_scan_equals_token_loop(read_after, T, C):
    q, k, v, beta, s0 = scan_inputs(2, 2, T, 8, seed=T * 31 + C)
    o_loop, s_loop = delta_rule_loop(q, k, v, beta, read_after, s0)
    o_chunk, s_chunk = delta_rule_chunked(q, k, v, beta, C, read_after, s0)
    assert o_chunk.shape == o_loop.shape
    assert torch.allclose(o_chunk, o_loop, rtol=0, atol=1e-12)
    assert torch.allclose(s_chunk, s_loop, rtol=0, atol=1e-12)
    # Gradients (BPTT through the recurrence) of a random functional of outputs and final state.
    g = torch.Generator().manual_seed(7)
    wo = torch.randn(o_loop.shape, generator=g, dtype=torch.float64)
    ws = torch.randn(s_loop.shape, generator=g, dtype=torch.float64)
    inputs = (q, k, v, beta, s0)
    grad_loop = torch.autograd.grad((o_loop * wo).sum() + (s_loop * ws).sum(), inputs)
    grad_chunk = torch.autograd.grad((o_chunk * wo).sum() + (s_chunk * ws).sum(), inputs)
    for a, b in zip(grad_loop, grad_chunk):
        assert torch.allclose(a, b, rtol=0, atol=1e-10)


def test_reconstruct_is_the_delta_rule_read_before_update():
    """§2.2 as written (z = W f̂; W -= η (z − f̂) f̂ᵀ) is the scan with q = k = v = f̂."""
    _, f, _, _, _ = scan_inputs(1, 1, 20, 6, seed=3)
    f = f.detach()
    eta = 0.7
    W = torch.zeros(6, 6, dtype=torch.float64)
    zs = []
    for t in range(20):
        ft = f[0, 0, t]
        z = W @ ft
        W = W - eta * torch.outer(z - ft, ft)
        zs.append(z)
    beta = torch.full((1, 1, 20), eta, dtype=torch.float64)
    o, _ = delta_rule_chunked(f, f, f, beta, 8, False)
    assert torch.allclose(o[0, 0], torch.stack(zs), rtol=0, atol=1e-13)


def randomize(model, seed):
    """Weights far from the tiny training init, so every path (TTT state, gates) matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)


def tiny_config(rule, act_bits):
    return BitTTTConfig(vocab_size=300, hidden_dim=64, num_layers=2, inner_lr=0.7, ttt_dim=32,
                        ttt_rule=rule, ttt_heads=2 if rule == "delta" else 1, mlp_dim=96,
                        act_bits=act_bits)


@pytest.mark.parametrize("rule", ["reconstruct", "delta"])
def test_model_chunked_equals_loop(rule):
    model = BitTTTModel(tiny_config(rule, 8), chunk=8).double()
    randomize(model, 1)
    ids = torch.randint(0, 300, (2, 29), generator=torch.Generator().manual_seed(2))
    chunked = model(ids)
    model.set_scan(1, "loop")
    assert torch.allclose(chunked, model(ids), rtol=0, atol=1e-9)


# The engine (packed ternary weights, integer products, token-by-token scan) against the fp32
# PyTorch model. Both compute the same quantized values; what differs is float summation order,
# so logits agree to ~1e-6 of their scale (measured: 4e-7 to 1.4e-6). One activation rounded to
# the other side of .5 would show as ~1e-2: the tolerance (1e-4 of the largest |logit|) catches it.
LOGIT_TOL = 1e-4


@pytest.mark.parametrize("rule", ["reconstruct", "delta"])
@pytest.mark.parametrize("act_bits", [8, 0])
def test_torch_logits_match_engine(tmp_path, rule, act_bits):
    bitttt = pytest.importorskip("bitttt")
    model = BitTTTModel(tiny_config(rule, act_bits), chunk=8)
    randomize(model, 11)
    save_model_dir(model, tmp_path / "model")
    ids = np.random.default_rng(5).integers(0, 300, size=45)
    with torch.no_grad():
        expected = model(torch.from_numpy(ids)[None])[0].numpy()
    engine = bitttt.Model.load(str(tmp_path / "model"))
    got = bitttt.Session(engine, max_chunk=16).forward(ids.tolist(), all_logits=True)
    assert got.shape == expected.shape
    scale = np.abs(expected).max()
    assert scale > 1.0  # logits that depend on the input, not ~0
    err = np.abs(got - expected).max() / scale
    assert err < LOGIT_TOL, err


@pytest.mark.parametrize("rule, heads, act_bits", [("reconstruct", 1, 8), ("delta", 2, 8),
                                                   ("delta", 2, 0)])
def test_torch_gradient_matches_cpp_trainer(bitttt_cli, tmp_path, rule, heads, act_bits):
    """The C++ trainer's loss and gradient (STE, BPTT) at its initial weights on one batch."""
    from safetensors.numpy import load_file
    data = tmp_path / "data.txt"
    data.write_text(story_text(2), encoding="utf-8")
    dump = tmp_path / "grad.safetensors"
    r = subprocess.run([str(bitttt_cli), "train", "--data", str(data), "--out", str(tmp_path / "o"),
                        "--vocab-size", "257", "--dim", "32", "--layers", "2", "--ttt-dim", "16",
                        "--mlp-dim", "48", "--ttt-rule", rule, "--ttt-heads", str(heads),
                        "--inner-lr", "0.7", "--act-bits", str(act_bits), "--context-len", "21",
                        "--batch-size", "3", "--threads", "1", "--dump-gradient", str(dump)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    t = load_file(str(dump))
    with open(dump, "rb") as f:
        meta = json.loads(f.read(int.from_bytes(f.read(8), "little")))["__metadata__"]
    model = BitTTTModel(BitTTTConfig.from_json(json.loads(meta["config"])), chunk=8)
    state = {k[len("param."):]: torch.from_numpy(v) for k, v in t.items() if k.startswith("param.")}
    model.load_state_dict(state, strict=True)
    inputs = torch.from_numpy(t["inputs"]).long()
    targets = torch.from_numpy(t["targets"]).long()
    loss = model(inputs, targets)
    loss.backward()
    assert abs(loss.item() - float(meta["loss"])) < 1e-5
    for name, p in model.named_parameters():
        ref = t["grad." + name]
        err = np.abs(p.grad.numpy() - ref).max()
        assert err <= 1e-3 * np.abs(ref).max() + 1e-7, (name, err, np.abs(ref).max())


def run_torch_train(args):
    assert torch_train.main([*args, "--device", "cpu", "--quiet"]) == 0


def read_metrics(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_torch_train_on_bitttt_cache_exports_a_model_bitttt_evaluates(bitttt_cli, tmp_path):
    train_txt, val_txt = tmp_path / "train.txt", tmp_path / "val.txt"
    train_txt.write_text(story_text(40), encoding="utf-8")
    val_txt.write_text(story_text(3), encoding="utf-8")
    cpp_out = tmp_path / "cpp"
    # `bitttt train` tokenizes both files into cpp/cache (and trains a 300-token tokenizer).
    r = subprocess.run([str(bitttt_cli), "train", "--data", str(train_txt), "--val-data",
                        str(val_txt), "--out", str(cpp_out), "--vocab-size", "300", "--dim", "16",
                        "--layers", "1", "--steps", "1", "--context-len", "16", "--batch-size", "2",
                        "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    tokenizer = cpp_out / "tokenizer.json"
    cached = torch_data.find_cached_tokens(str(cpp_out / "cache"), str(train_txt), 300)
    assert cached is not None
    # The cache holds the stream the `tokenizers` package makes from the same tokenizer.
    assert np.array_equal(torch_data.read_token_file(cached, 300)[0],
                          torch_data.tokenize_with_hf(str(train_txt), str(tokenizer)))

    out = tmp_path / "torch"
    common = ["--model", "delta", "--data", str(train_txt), "--val-data", str(val_txt),
              "--cache-dir", str(cpp_out / "cache"), "--tokenizer", str(tokenizer),
              "--dim", "32", "--layers", "2", "--ttt-heads", "2", "--inner-lr", "0.5",
              "--batch-size", "8", "--context-len", "32", "--chunk", "8", "--lr", "3e-3",
              "--warmup-steps", "5", "--steps", "40", "--eval-interval", "0", "--seed", "3"]
    run_torch_train([*common, "--out", str(out)])
    losses = [m["loss"] for m in read_metrics(out / "metrics.jsonl") if "loss" in m]
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < losses[0] - 1.0, (losses[0], losses[-5:])  # 5.7 -> ~4.0
    result = json.loads((out / "result.json").read_text())
    assert result["val_bits_per_byte"] > 0

    # The exported directory loads in the engine; `bitttt eval --reset-every 32` scores the same
    # windows as torch_train's validation, so the losses agree (fp32 both).
    r = subprocess.run([str(bitttt_cli), "eval", str(out / "model"), str(val_txt),
                        "--reset-every", "32", "--quiet", "--threads", "1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    cpp_loss = float(re.search(r"loss: ([0-9.]+)", r.stdout).group(1))
    from tokenizers import Tokenizer
    ids = np.asarray(Tokenizer.from_file(str(tokenizer)).encode(val_txt.read_text()).ids)
    model = BitTTTModel(BitTTTConfig.from_json(json.loads((out / "model/config.json").read_text())))
    from safetensors.torch import load_file
    model.load_state_dict(load_file(str(out / "model/model.safetensors")))
    torch_loss, n = torch_train.evaluate(model, ids, 32, 16, torch.device("cpu"))
    assert n == len(ids) - 1
    assert abs(torch_loss - cpp_loss) < 1e-3, (torch_loss, cpp_loss)

    # A run stopped at step 15 and resumed follows the uninterrupted one exactly.
    sliced = tmp_path / "sliced"
    run_torch_train([*common, "--out", str(sliced), "--stop-at-step", "15", "--no-export"])
    run_torch_train(["--resume", str(sliced / "checkpoint.pt"), "--out", str(sliced),
                     "--no-export"])
    resumed = [m["loss"] for m in read_metrics(sliced / "metrics.jsonl") if "loss" in m]
    assert resumed == pytest.approx(losses, rel=1e-6, abs=1e-6)
