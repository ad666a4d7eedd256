"""device="cuda" from Python: bitttt.Model.load / Model.random and cortex_rust.BitLlama on the GPU
give the CPU's logits (within the bf16 lm_head's rounding) and greedy tokens. Skipped without a
CUDA build or a GPU (test_python_model.py and test_cortex_rust.py check the error then)."""
import pathlib

import numpy as np
import pytest
from safetensors.numpy import save_file

import bitttt
import cortex_rust

ROOT = pathlib.Path(__file__).resolve().parents[2]


def gpu_available():
    try:
        bitttt.check_device("cuda")
        return True
    except RuntimeError:
        return False


pytestmark = pytest.mark.skipif(not gpu_available(), reason="no CUDA build or no GPU")


def close(a, b, rel):
    return np.max(np.abs(a - b)) <= rel * max(1.0, float(np.max(np.abs(b))))


def test_model_load_on_cuda_matches_cpu():
    path = ROOT / "models" / "default.bitt"
    if not path.exists():
        pytest.skip("models/default.bitt is not there")
    cpu = bitttt.Model.load(str(path))
    gpu = bitttt.Model.load(str(path), device="cuda")
    assert gpu.device == "cuda" and gpu.n_gpu_layers == gpu.config.num_layers
    hybrid = bitttt.Model.load(str(path), device="cuda", n_gpu_layers=2)
    assert hybrid.n_gpu_layers == 2
    ids = cpu.tokenizer.encode("Once upon a time")
    want = bitttt.Session(cpu).forward(ids, copy=True)
    for model in (gpu, hybrid):
        session = bitttt.Session(model)
        got = session.forward(ids, copy=True)
        assert got.shape == want.shape and got.dtype == np.float32
        assert close(got, want, 2e-2)  # bf16 embedding / lm_head
    # Generation runs on the GPU (token equality with fp32 dense tensors: tests/cuda).
    b = bitttt.Session(gpu).generate_tokens(ids, 24, temperature=0.0, stop_at_end_of_text=False)
    assert len(b.tokens) == 24
    text = "".join(bitttt.Session(hybrid).generate("Once upon a time", max_new_tokens=8))
    assert isinstance(text, str)


def test_random_model_and_state_on_cuda(tmp_path):
    config = bitttt.ModelConfig(300, 64, 3, 0.5)
    cpu = bitttt.Model.random(config, seed=3)
    # fp32 embedding/lm_head on the GPU: the CPU's logits within float rounding
    gpu = bitttt.Model.random(config, seed=3, device="cuda", n_gpu_layers=2, dense_bf16=False)
    ids = [5, 17, 200, 3, 9]
    s_cpu, s_gpu = bitttt.Session(cpu), bitttt.Session(gpu)
    assert close(s_gpu.forward(ids, copy=True), s_cpu.forward(ids, copy=True), 2e-3)
    for layer in range(3):
        np.testing.assert_allclose(s_gpu.state(layer), s_cpu.state(layer), atol=1e-4)
    path = str(tmp_path / "m.tttstate")
    s_gpu.save_state(path)
    s_cpu.load_state(path)  # the same file format as the CPU's
    assert s_cpu.position == 5
    fresh = bitttt.Session(gpu)
    fresh.load_state(path)
    np.testing.assert_array_equal(fresh.forward_token(4, copy=True),
                                  s_gpu.forward_token(4, copy=True))


def test_cortex_rust_on_cuda(tmp_path):
    config = cortex_rust.BitLlamaConfig(100, 32, 2, 0.1)
    rng = np.random.default_rng(0)
    tensors = {name: (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)
               for name, shape in config.to_model_config().parameter_shapes()}
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path))
    cpu = cortex_rust.BitLlama(config, str(path), device="cpu")
    gpu = cortex_rust.BitLlama(config, str(path), device="cuda")
    assert "cuda" in repr(gpu)
    for token in (42, 42, 7):
        assert close(gpu.forward(token_id=token), cpu.forward(token_id=token), 2e-2)
