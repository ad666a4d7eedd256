"""bitttt.ModelConfig and bitttt.Model: configs, loading from every format, saving, devices, and the
logits against an independent NumPy implementation of DESIGN.md §2."""
import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import bitttt
from test_model_reference import bf16_round

TINY = dict(vocab_size=64, hidden_dim=32, num_layers=2, inner_lr=0.1)


# One kernel thread for the whole module (conftest.py).
pytestmark = pytest.mark.usefixtures("one_kernel_thread")


def tiny_config(**overrides):
    args = dict(TINY)
    args.update(overrides)
    return bitttt.ModelConfig(**args)


def random_master(config, seed):
    """fp32 master weights for every tensor of the config, as numpy arrays."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in config.parameter_shapes():
        if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm_f.weight":
            weights[name] = (1 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            weights[name] = (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)
    return weights


# ---- an independent reference of the forward pass (DESIGN.md §2, reconstruct rule) ----

def bitlinear_weight(w):
    beta = np.abs(w).mean(dtype=np.float64)
    return np.clip(np.round(w / (beta + 1e-8)), -1, 1) * beta


def rmsnorm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x) + eps) * weight


def quantize_act(x):
    gamma = max(np.abs(x).max(), 1e-5)
    return np.clip(np.round(x * 127 / gamma), -127, 127) * gamma / 127


def reference_logits(weights, config, ids):
    """Logits of every token of ids, in float64; lm_head rounded to bfloat16 as the inference
    reads it (src/model/weights.hpp)."""
    w = {k: (bf16_round(v) if k == "lm_head.weight" else v).astype(np.float64)
         for k, v in weights.items()}
    lin = {k: bitlinear_weight(v) for k, v in w.items() if ".ttt." in k or ".mlp." in k}
    act = quantize_act if config.act_bits == 8 else (lambda x: x)
    eps = config.norm_eps
    states = [np.zeros((config.ttt_dim, config.ttt_dim)) for _ in range(config.num_layers)]
    out = []
    for tok in ids:
        x = w["embed.weight"][tok]
        for i in range(config.num_layers):
            p = f"layers.{i}."
            u = rmsnorm(x, w[p + "norm1.weight"], eps)
            f = lin[p + "ttt.down.weight"] @ act(u)
            f_hat = f / (np.linalg.norm(f) + 1e-6)
            z = states[i] @ f_hat
            states[i] = states[i] - config.inner_lr * np.outer(z - f_hat, f_hat)
            h = x + lin[p + "ttt.up.weight"] @ act(z)
            u = act(rmsnorm(h, w[p + "norm2.weight"], eps))
            g = lin[p + "mlp.gate_proj.weight"] @ u
            a = g / (1 + np.exp(-g)) * (lin[p + "mlp.up_proj.weight"] @ u)
            x = h + lin[p + "mlp.down_proj.weight"] @ act(a)
        out.append(w["lm_head.weight"] @ rmsnorm(x, w["norm_f.weight"], eps))
    return np.array(out)


# ---- ModelConfig ----

def test_config_defaults_and_derived_values():
    c = bitttt.ModelConfig()
    assert (c.vocab_size, c.hidden_dim, c.num_layers) == (16384, 256, 8)
    assert c.inner_lr == pytest.approx(0.1)
    assert c.ttt_dim == 64 and c.mlp_dim == 1024 and c.ttt_rule == "reconstruct"
    assert c.head_dim == 64 and c.act_bits == 8
    shapes = dict(c.parameter_shapes())
    assert shapes["embed.weight"] == [16384, 256]
    assert shapes["layers.7.ttt.down.weight"] == [64, 256]
    assert c.parameter_count == sum(int(np.prod(s)) for s in shapes.values())


def test_config_json_round_trip_and_errors(tmp_path):
    c = tiny_config(ttt_rule="delta", ttt_heads=2)
    again = bitttt.ModelConfig.from_json(c.to_json())
    assert again == c
    path = tmp_path / "config.json"
    path.write_text(c.to_json())
    assert bitttt.ModelConfig.load(str(path)) == c
    assert bitttt.ModelConfig.load(path) == c
    assert json.loads(c.to_json())["ttt_heads"] == 2
    with pytest.raises(ValueError, match="bogus"):
        bitttt.ModelConfig.from_json('{"bogus": 1}')
    with pytest.raises(OSError):
        bitttt.ModelConfig.load(str(tmp_path / "missing.json"))


@pytest.mark.parametrize("bad", [dict(hidden_dim=-4), dict(vocab_size=0), dict(num_layers=-1),
                                 dict(ttt_rule="attention"), dict(act_bits=4),
                                 dict(ttt_heads=3, ttt_rule="delta"), dict(inner_lr=float("nan"))])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        tiny_config(**bad)


def test_config_rejects_wrong_types():
    with pytest.raises(TypeError):
        bitttt.ModelConfig(vocab_size="many")
    with pytest.raises(TypeError):
        bitttt.ModelConfig(hidden_dim=32.5)


# ---- Model ----

def test_random_model_properties():
    c = tiny_config()
    m = bitttt.Model.random(c, seed=3)
    assert m.config == c and m.vocab_size == 64 and m.tokenizer is None
    assert m.identity_hash == bitttt.Model.random(c, seed=3).identity_hash
    assert m.identity_hash != bitttt.Model.random(c, seed=4).identity_hash
    assert "hidden_dim=32" in repr(m)


@pytest.mark.parametrize("act_bits", [0, 8])
def test_logits_match_numpy_reference(tmp_path, act_bits):
    c = tiny_config(act_bits=act_bits)
    weights = random_master(c, seed=1)
    save_file(weights, str(tmp_path / "model.safetensors"))
    model = bitttt.Model.from_safetensors(str(tmp_path / "model.safetensors"), c)
    ids = [5, 17, 0, 63, 5, 9]
    got = bitttt.Session(model).forward(ids, all_logits=True)
    want = reference_logits(weights, c, ids)
    assert got.shape == (len(ids), c.vocab_size) and got.dtype == np.float32
    # int8 activations: float32 vs float64 may round a rare activation to the next level.
    tol = 1e-4 if act_bits == 0 else 2e-2
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_directory_and_bitt_round_trips_keep_logits(tmp_path):
    c = tiny_config()
    m = bitttt.Model.random(c, seed=7)
    ids = [1, 2, 3, 40, 50]
    want = bitttt.Session(m).forward(ids, all_logits=True)
    m.save_dir(str(tmp_path / "dir"))
    m.save_bitt(str(tmp_path / "m.bitt"))
    m.save_bitt(str(tmp_path / "m16.bitt"), dtype="bf16")
    for path in ["dir", "m.bitt"]:
        loaded = bitttt.Model.load(tmp_path / path)  # os.PathLike works as well as str
        assert loaded.config == c
        assert loaded.identity_hash == m.identity_hash
        np.testing.assert_array_equal(bitttt.Session(loaded).forward(ids, all_logits=True), want)
    # bf16 floating-point tensors: close, not equal.
    half = bitttt.Session(bitttt.Model.load(str(tmp_path / "m16.bitt"))).forward(ids, all_logits=True)
    np.testing.assert_allclose(half, want, rtol=0.1, atol=0.1)
    assert not np.array_equal(half, want)
    with pytest.raises(ValueError, match="dtype"):
        m.save_bitt(str(tmp_path / "x.bitt"), dtype="f64")


def test_saved_safetensors_load_in_the_safetensors_package(tmp_path):
    c = tiny_config()
    m = bitttt.Model.random(c, seed=2)
    m.save_dir(str(tmp_path))
    tensors = load_file(str(tmp_path / "model.safetensors"))
    assert {k: list(v.shape) for k, v in tensors.items()} == dict(c.parameter_shapes())
    assert all(v.dtype == np.float32 for v in tensors.values())
    # The master weights quantize back to ternary: three distinct magnitudes at most (0, +-s).
    down = tensors["layers.0.ttt.down.weight"]
    assert len(np.unique(np.abs(down))) <= 2
    # ... and the package's file loads back through from_safetensors with the same logits.
    again = bitttt.Model.from_safetensors(str(tmp_path / "model.safetensors"), c)
    assert again.identity_hash == m.identity_hash


def test_from_safetensors_accepts_half_precision(tmp_path):
    c = tiny_config()
    weights = random_master(c, seed=5)
    save_file({k: v.astype(np.float16) for k, v in weights.items()}, str(tmp_path / "h.safetensors"))
    model = bitttt.Model.from_safetensors(tmp_path / "h.safetensors", c)
    got = bitttt.Session(model).forward([3, 4], all_logits=True)
    want = reference_logits({k: v.astype(np.float16).astype(np.float32) for k, v in weights.items()},
                            c, [3, 4])
    np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2)


def test_from_safetensors_errors_name_the_tensor(tmp_path):
    c = tiny_config()
    weights = random_master(c, seed=1)
    path = str(tmp_path / "model.safetensors")
    bad = dict(weights)
    bad["embed.weight"] = bad["embed.weight"][:10]
    save_file(bad, path)
    with pytest.raises(ValueError, match="embed.weight"):
        bitttt.Model.from_safetensors(path, c)
    bad = dict(weights)
    del bad["norm_f.weight"]
    save_file(bad, path)
    with pytest.raises(ValueError, match="norm_f.weight"):
        bitttt.Model.from_safetensors(path, c)
    bad = dict(weights)
    bad["extra"] = np.zeros(3, np.float32)
    save_file(bad, path)
    with pytest.raises(ValueError, match="extra"):
        bitttt.Model.from_safetensors(path, c)
    bad = dict(weights)
    bad["norm_f.weight"] = np.zeros(32, np.uint8)
    save_file(bad, path)
    with pytest.raises(ValueError, match="U8"):
        bitttt.Model.from_safetensors(path, c)
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError):
        bitttt.Model.from_safetensors(str(tmp_path / "junk.safetensors"), c)
    with pytest.raises(OSError):
        bitttt.Model.from_safetensors(str(tmp_path / "missing.safetensors"), c)
    with pytest.raises(TypeError):
        bitttt.Model.from_safetensors(path, "not a config")


def test_load_errors(tmp_path):
    with pytest.raises(OSError, match="missing"):
        bitttt.Model.load(str(tmp_path / "missing.bitt"))
    (tmp_path / "garbage.bitt").write_bytes(b"BITT" + b"\x00" * 3)
    with pytest.raises(ValueError):
        bitttt.Model.load(str(tmp_path / "garbage.bitt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(OSError, match="config.json"):
        bitttt.Model.load(str(tmp_path / "empty"))
    with pytest.raises(TypeError):
        bitttt.Model.load(42)


def test_devices(tmp_path):
    m = bitttt.Model.random(tiny_config(), seed=1)
    m.save_bitt(str(tmp_path / "m.bitt"))
    assert bitttt.Model.load(str(tmp_path / "m.bitt"), device="cpu").vocab_size == 64
    bitttt.check_device("cpu")
    try:
        bitttt.check_device("cuda")
        gpu = True
    except RuntimeError:
        gpu = False
    if not gpu:  # with a GPU, tests/python/test_python_cuda.py runs models there
        with pytest.raises(RuntimeError, match="cuda"):
            bitttt.Model.load(str(tmp_path / "m.bitt"), device="cuda")
        with pytest.raises(RuntimeError, match="CUDA"):
            bitttt.check_device("cuda:0")
    with pytest.raises(ValueError, match="n_gpu_layers"):
        bitttt.Model.load(str(tmp_path / "m.bitt"), device="cpu", n_gpu_layers=2)
    with pytest.raises(ValueError, match="device must be"):
        bitttt.Model.load(str(tmp_path / "m.bitt"), device="tpu")


def test_model_with_tokenizer_too_large_is_rejected():
    tok = bitttt.Tokenizer.train_from_text("abc abd abe " * 50, vocab_size=300)
    with pytest.raises(ValueError, match="vocabulary"):
        bitttt.Model.random(tiny_config(), tokenizer=tok)
    m = bitttt.Model.random(tiny_config(vocab_size=tok.vocab_size), tokenizer=tok)
    assert m.tokenizer.encode("abc") == tok.encode("abc")
