"""The original API as `cortex_rust`: BitLlamaConfig(16384, 256, 8, 0.1),
BitLlama(config, "model.safetensors", device=...), model.forward(token_id=42)."""
import numpy as np
import pytest
from safetensors.numpy import save_file

import bitttt
import cortex_rust


# One kernel thread for the whole module (conftest.py).
pytestmark = pytest.mark.usefixtures("one_kernel_thread")


def write_master(path, config, seed=0):
    rng = np.random.default_rng(seed)
    tensors = {name: (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)
               for name, shape in config.to_model_config().parameter_shapes()}
    save_file(tensors, str(path))


def test_config_positional_like_the_original():
    c = cortex_rust.BitLlamaConfig(16384, 256, 8, 0.1)
    assert (c.vocab_size, c.hidden_dim, c.num_layers) == (16384, 256, 8)
    assert c.inner_lr == pytest.approx(0.1)
    assert c.to_model_config() == bitttt.ModelConfig(16384, 256, 8, 0.1)
    assert "16384" in repr(c)
    with pytest.raises(ValueError):
        cortex_rust.BitLlamaConfig(16384, -256, 8, 0.1)
    with pytest.raises(TypeError):
        cortex_rust.BitLlamaConfig("16384", 256, 8, 0.1)


def test_forward_one_token_carries_the_state(tmp_path):
    config = cortex_rust.BitLlamaConfig(100, 32, 2, 0.1)
    path = tmp_path / "model.safetensors"
    write_master(path, config)
    model = cortex_rust.BitLlama(config, str(path), device="cpu")
    logits = model.forward(token_id=42)
    assert isinstance(logits, np.ndarray) and logits.shape == (100,) and logits.dtype == np.float32
    assert np.isfinite(logits).all()
    # the same as the bitttt API over the same file, token after token
    session = bitttt.Session(bitttt.Model.from_safetensors(str(path), config.to_model_config()))
    np.testing.assert_array_equal(logits, session.forward_token(42))
    second = model.forward(token_id=42)
    np.testing.assert_array_equal(second, session.forward_token(42))
    assert not np.array_equal(second, logits)  # the TTT state moved on
    np.testing.assert_array_equal(logits, logits.copy())  # earlier results are not overwritten
    model.reset()
    np.testing.assert_array_equal(model.forward(42), logits)
    assert "BitLlama" in repr(model)


def test_errors(tmp_path):
    config = cortex_rust.BitLlamaConfig(100, 32, 2, 0.1)
    path = tmp_path / "model.safetensors"
    write_master(path, config)
    with pytest.raises(OSError):
        cortex_rust.BitLlama(config, str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="embed.weight"):
        cortex_rust.BitLlama(cortex_rust.BitLlamaConfig(101, 32, 2, 0.1), str(path))
    try:
        bitttt.check_device("cuda")
    except RuntimeError:  # no CUDA build or no GPU: a clear error (else test_python_cuda.py)
        with pytest.raises(RuntimeError, match="CUDA"):
            cortex_rust.BitLlama(config, str(path), device="cuda")
    with pytest.raises(ValueError, match="device"):
        cortex_rust.BitLlama(config, str(path), device="gpu")
    with pytest.raises(TypeError):
        cortex_rust.BitLlama({"vocab_size": 100}, str(path))
    model = cortex_rust.BitLlama(config, path)  # os.PathLike works
    with pytest.raises(ValueError, match="out of range"):
        model.forward(token_id=100)
    with pytest.raises(ValueError, match="out of range"):
        model.forward(token_id=-1)
    with pytest.raises(TypeError):
        model.forward(token_id="42")
    with pytest.raises(TypeError):
        model.forward(token_id=4.2)
    assert model.forward(token_id=np.int64(3)).shape == (100,)
