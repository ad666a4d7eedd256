"""device="cuda" from Python: bitttt.Model.load / Model.random and cortex_rust.BitLlama on the GPU
give the CPU's logits (within the bf16 lm_head's rounding) and greedy tokens; bitttt.Trainer
(device="cuda") follows the CPU trainer's losses. Skipped without a CUDA build or a GPU
(test_python_model.py, test_cortex_rust.py and test_python_train.py check the error then)."""
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
        print(f"default.bitt n_gpu_layers={model.n_gpu_layers}: logits max |gpu - cpu| "
              f"{np.max(np.abs(got - want)):.3e} (max |cpu| {np.max(np.abs(want)):.2f})")
        assert close(got, want, 2e-2)  # bf16 embedding / lm_head
    # Generation runs on the GPU (token equality with fp32 dense tensors: tests/cuda).
    b = bitttt.Session(gpu).generate_tokens(ids, 24, temperature=0.0, stop_at_end_of_text=False)
    assert len(b.tokens) == 24
    a = bitttt.Session(cpu).generate_tokens(ids, 24, temperature=0.0, stop_at_end_of_text=False)
    same = next((i for i, (x, y) in enumerate(zip(a.tokens, b.tokens)) if x != y), 24)
    print(f"default.bitt greedy: the first {same} of 24 tokens equal on GPU and CPU")
    text = "".join(bitttt.Session(hybrid).generate("Once upon a time", max_new_tokens=8))
    assert isinstance(text, str)


def test_random_model_and_state_on_cuda(tmp_path):
    config = bitttt.ModelConfig(300, 64, 3, 0.5)
    cpu = bitttt.Model.random(config, seed=3)
    # fp32 embedding/lm_head on the GPU: the CPU's logits within float rounding
    gpu = bitttt.Model.random(config, seed=3, device="cuda", n_gpu_layers=2, dense_bf16=False)
    ids = [5, 17, 200, 3, 9]
    s_cpu, s_gpu = bitttt.Session(cpu), bitttt.Session(gpu)
    got, want = s_gpu.forward(ids, copy=True), s_cpu.forward(ids, copy=True)
    print(f"random model, fp32 dense: logits max |gpu - cpu| {np.max(np.abs(got - want)):.3e}")
    assert close(got, want, 2e-3)
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


def test_trainer_on_cuda_follows_cpu(tmp_path):
    """The losses of 30 steps on the GPU against the CPU's from the same seed and batches: within
    1% (fp32 products) or 3% (bf16) per step, the tolerances of tests/cuda/train_model_cuda_test."""
    text = "\n<|endoftext|>\n".join(
        f"story {i}: the little fox saw {i % 7} shiny stones by the river and ran home."
        for i in range(400))
    data = tmp_path / "text.txt"
    data.write_text(text)
    options = dict(config=bitttt.ModelConfig(257, 64, 2, 0.1), steps=30, batch_size=8,
                   context_len=32, lr=3e-3, warmup_steps=5, eval_interval=0, eval_batches=2,
                   save_interval=0, export_model=False)
    cpu = bitttt.Trainer(str(data), str(tmp_path / "cpu"), **options)
    assert cpu.run() == "finished"
    # The memory-lean state (int8 AdamW moments, bf16 gradients) under the bf16 bound as well.
    lean = dict(gpu_precision="bf16", gpu_optimizer_state="int8", gpu_grad_precision="bf16")
    for name, gpu_options, tol in (("fp32", dict(gpu_precision="fp32"), 0.01),
                                   ("bf16", dict(gpu_precision="bf16"), 0.03),
                                   ("lean", lean, 0.03)):
        out = tmp_path / name
        gpu = bitttt.train(str(data), str(out), device="cuda", **gpu_options, **options)
        assert gpu.steps_done == 30
        worst = max(abs(g - c) / c for g, c in zip(gpu.losses, cpu.losses))
        print(f"trainer {name}: loss cpu {cpu.losses[0]:.4f} -> {cpu.losses[-1]:.4f}, "
              f"gpu {gpu.losses[0]:.4f} -> {gpu.losses[-1]:.4f}, max rel diff {worst:.2e}")
        assert worst <= tol
        assert gpu.losses[-1] < gpu.losses[0] - 1.0
    # A GPU checkpoint resumes on the CPU (device is not part of the checkpoint).
    part = bitttt.Trainer(str(data), str(tmp_path / "part"), device="cuda", stop_at_step=10,
                          **options)
    assert part.run() == "stopped"
    resumed = bitttt.Trainer(str(data), str(tmp_path / "part"),
                             resume=str(tmp_path / "part" / "checkpoint.safetensors"),
                             export_model=False)
    assert resumed.steps_done == 10 and resumed.run() == "finished"
    assert abs(resumed.losses[-1] - cpu.losses[-1]) <= 0.03 * cpu.losses[-1]


def test_trainer_on_cuda_that_cannot_fit_fails_up_front(tmp_path):
    """A run whose memory plan exceeds the GPU's free memory stops before it allocates, with the
    figures and the options that shrink it (16.8 M tokens per step, the trainer's limit, at D=512
    and 8 layers: the layer inputs alone are 275 GB)."""
    data = tmp_path / "text.txt"
    data.write_text("\n<|endoftext|>\n".join(f"story {i}: a fox and a stone." * 20
                                             for i in range(40)))
    with pytest.raises(RuntimeError, match=r"GPU training needs [0-9.]+ GB .* free: try"):
        bitttt.Trainer(str(data), str(tmp_path / "big"),
                       config=bitttt.ModelConfig(257, 512, 8, 0.1), steps=1, batch_size=16384,
                       context_len=1024, eval_interval=0,
                       save_interval=0, export_model=False, device="cuda")
    assert not (tmp_path / "big" / "checkpoint.safetensors").exists()
