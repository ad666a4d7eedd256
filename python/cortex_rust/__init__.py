"""Compatibility module with the original Bit-TTT Python API (``cortex_rust``).

    import cortex_rust
    config = cortex_rust.BitLlamaConfig(16384, 256, 8, 0.1)   # vocab, hidden, layers, inner_lr
    model = cortex_rust.BitLlama(config, "model.safetensors", device="cpu")
    logits = model.forward(token_id=42)                       # numpy float32 (vocab_size,)

It runs on the C++ engine (the ``bitttt`` module): the safetensors file holds fp32/bf16/f16 master
weights with the tensor names of DESIGN.md §3 (``bitttt.ModelConfig.parameter_shapes()`` lists
them); BitLinear weights are quantized to ternary and packed at load. ``forward`` reads one token
and carries the TTT state over to the next call, as the original did.
"""
from __future__ import annotations

import os
from typing import Union

import numpy as np

import bitttt

__all__ = ["BitLlamaConfig", "BitLlama"]


class BitLlamaConfig:
    """The model shape: vocabulary size, hidden width D, number of layers L and the TTT step size.

    The other settings take their defaults (ttt_dim = D/4, mlp_dim = 4D, the ``reconstruct``
    rule). Bad values raise ValueError at construction.
    """

    def __init__(self, vocab_size: int, hidden_dim: int, num_layers: int, inner_lr: float):
        self._config = bitttt.ModelConfig(vocab_size, hidden_dim, num_layers, inner_lr)

    @property
    def vocab_size(self) -> int:
        """Number of tokens (logits per step)."""
        return self._config.vocab_size

    @property
    def hidden_dim(self) -> int:
        """D, the width of the residual stream."""
        return self._config.hidden_dim

    @property
    def num_layers(self) -> int:
        """L, the number of blocks."""
        return self._config.num_layers

    @property
    def inner_lr(self) -> float:
        """eta, the TTT step size."""
        return self._config.inner_lr

    def to_model_config(self) -> bitttt.ModelConfig:
        """The equivalent ``bitttt.ModelConfig``."""
        return self._config

    def __repr__(self) -> str:
        return (f"BitLlamaConfig(vocab_size={self.vocab_size}, hidden_dim={self.hidden_dim}, "
                f"num_layers={self.num_layers}, inner_lr={self.inner_lr:g})")


class BitLlama:
    """A Bit-Llama model loaded from a safetensors file of master weights, with its TTT state.

    ``device`` is ``"cpu"`` or ``"cuda"`` (the packed weights on GPU 0, embedding and lm_head in
    bf16); ``"cuda"`` raises RuntimeError saying why it cannot run in a build without CUDA or on a
    machine without a GPU.
    """

    def __init__(self, config: BitLlamaConfig, path: Union[str, os.PathLike], device: str = "cpu"):
        if not isinstance(config, BitLlamaConfig):
            raise TypeError(f"config must be a BitLlamaConfig, got {type(config).__name__}")
        if not isinstance(device, str):
            raise TypeError(f"device must be a str, got {type(device).__name__}")
        self.config = config
        self.device = device
        self._model = bitttt.Model.from_safetensors(os.fspath(path), config.to_model_config(),
                                                    device=device)
        self._session = bitttt.Session(self._model, max_chunk=1)

    def forward(self, token_id: int) -> np.ndarray:
        """Reads one token (continuing from the previous ones) and returns its next-token
        logits: a new float32 array of shape (vocab_size,)."""
        if isinstance(token_id, bool) or not isinstance(token_id, (int, np.integer)):
            raise TypeError(f"token_id must be an int, got {type(token_id).__name__}")
        if not 0 <= token_id < self.config.vocab_size:
            raise ValueError(
                f"token_id {token_id} is out of range [0, {self.config.vocab_size})")
        return self._session.forward_token(int(token_id), copy=True)

    def reset(self) -> None:
        """Forgets every token read (the TTT state back to zero)."""
        self._session.reset()

    def __repr__(self) -> str:
        return f"BitLlama({self.config!r}, device={self.device!r})"
