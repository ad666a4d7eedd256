"""The whole model's gradient from `bitttt train` against an independent NumPy reference.

`bitttt train --dump-gradient` writes the initial weights, one batch, and the C++ backward's
gradient. Here a float64 NumPy forward of DESIGN.md §2 (written from the spec, not from the C++)
computes the loss, and central finite differences of it give the gradient.

The straight-through estimator: BitLinear rounds its weights and inputs, so the true gradient is 0
almost everywhere; the STE treats each rounding as the identity. That is exactly the gradient of
the surrogate in which every quantizer output is `x + c` with `c = Q(x0) - x0` frozen at the base
point (PyTorch's `x + (Q(x) - x).detach()`). The reference records c at every quantizer call in the
base forward and replays it in the perturbed forwards, so finite differences give the STE gradient
of the whole model, act_bits = 8 included.
"""
import json
import subprocess

import numpy as np
import pytest

st = pytest.importorskip("safetensors.numpy")

STORY = ("Once upon a time there was a little cat. The cat liked to play in the sun. "
         "One day the cat saw a bird and ran after it.\n<|endoftext|>\n")


class Reference:
    def __init__(self, config, params):
        self.c = config
        self.p = params
        self.offsets = None  # None: record; list: replay
        self.recorded = []

    def quant(self, x, q):
        """Quantizer with the STE surrogate: records Q(x) - x on the base pass, replays it after."""
        if self.offsets is None:
            self.recorded.append(q(x) - x)
            return x + self.recorded[-1]
        return x + self.offsets.pop(0)

    def wq(self, w):
        def q(w):
            beta = np.abs(w).mean()
            return np.clip(np.round(w / (beta + 1e-8)), -1, 1) * beta
        return self.quant(w, q)

    def aq(self, x):
        if self.c["act_bits"] == 0:
            return x

        def q(x):
            gamma = np.maximum(np.abs(x).max(axis=-1, keepdims=True), 1e-5)
            return np.clip(np.round(x * 127 / gamma), -127, 127) * gamma / 127
        return self.quant(x, q)

    def bitlinear(self, x, name):
        return self.aq(x) @ self.wq(self.p[name]).T

    def rmsnorm(self, x, w=None):
        y = x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + self.c["norm_eps"])
        return y if w is None else y * w

    @staticmethod
    def l2n(x):
        return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-6)

    def ttt(self, x, i):
        c, p = self.c, self.p
        pre = f"layers.{i}.ttt."
        B, T, _ = x.shape
        if c["ttt_rule"] == "reconstruct":
            f = self.l2n(self.bitlinear(x, pre + "down.weight"))
            z = np.zeros_like(f)
            for b in range(B):
                W = np.zeros((c["ttt_dim"], c["ttt_dim"]))
                for t in range(T):
                    z[b, t] = W @ f[b, t]
                    W = W - c["inner_lr"] * np.outer(z[b, t] - f[b, t], f[b, t])
            return self.bitlinear(z, pre + "up.weight")
        H = c["ttt_heads"]
        Dh = c["ttt_dim"] // H
        heads = lambda y: y.reshape(B, T, H, Dh)
        q = self.l2n(heads(self.bitlinear(x, pre + "q.weight")))
        k = self.l2n(heads(self.bitlinear(x, pre + "k.weight")))
        v = heads(self.bitlinear(x, pre + "v.weight"))
        eta = c["inner_lr"] / (1 + np.exp(-(x @ p[pre + "lr.weight"].T + p[pre + "lr.bias"])))
        o = np.zeros_like(q)
        for b in range(B):
            for h in range(H):
                W = np.zeros((Dh, Dh))
                for t in range(T):
                    W = W - eta[b, t, h] * np.outer(W @ k[b, t, h] - v[b, t, h], k[b, t, h])
                    o[b, t, h] = W @ q[b, t, h]
        return self.bitlinear(self.rmsnorm(o.reshape(B, T, H * Dh)), pre + "o.weight")

    def loss(self, inputs, targets, offsets=None):
        self.offsets = None if offsets is None else list(offsets)
        p = self.p
        x = p["embed.weight"][inputs]
        for i in range(self.c["num_layers"]):
            h = x + self.ttt(self.rmsnorm(x, p[f"layers.{i}.norm1.weight"]), i)
            u = self.rmsnorm(h, p[f"layers.{i}.norm2.weight"])
            g = self.bitlinear(u, f"layers.{i}.mlp.gate_proj.weight")
            up = self.bitlinear(u, f"layers.{i}.mlp.up_proj.weight")
            x = h + self.bitlinear(g / (1 + np.exp(-g)) * up, f"layers.{i}.mlp.down_proj.weight")
        logits = self.rmsnorm(x, p["norm_f.weight"]) @ p["lm_head.weight"].T
        m = logits.max(axis=-1, keepdims=True)
        logp = logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))
        return -np.take_along_axis(logp, targets[..., None], axis=-1).mean()


@pytest.mark.parametrize("rule, heads, act_bits", [("reconstruct", 1, 8), ("delta", 2, 8),
                                                   ("reconstruct", 1, 0)])
def test_whole_model_gradient_matches_numpy_reference(bitttt_cli, tmp_path, rule, heads, act_bits):
    data = tmp_path / "data.txt"
    data.write_text(STORY * 4, encoding="utf-8")
    dump = tmp_path / "grad.safetensors"
    r = subprocess.run([str(bitttt_cli), "train", "--data", str(data), "--out", str(tmp_path / "out"),
                        "--vocab-size", "257", "--dim", "16", "--layers", "2", "--ttt-dim", "8",
                        "--mlp-dim", "24", "--ttt-rule", rule, "--ttt-heads", str(heads),
                        "--inner-lr", "0.7", "--act-bits", str(act_bits), "--context-len", "6",
                        "--batch-size", "2", "--threads", "1", "--dump-gradient", str(dump)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    t = st.load_file(str(dump))
    with open(dump, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))["__metadata__"]
    config = json.loads(header["config"])
    params = {k[6:]: v.astype(np.float64) for k, v in t.items() if k.startswith("param.")}
    inputs, targets = t["inputs"].astype(np.int64), t["targets"].astype(np.int64)
    ref = Reference(config, params)
    base = ref.loss(inputs, targets)
    offsets = ref.recorded
    # The forward agrees with the C++ training forward (fp32) to float tolerance.
    assert abs(base - float(header["loss"])) < 1e-4, (base, header["loss"])

    rng = np.random.default_rng(0)
    eps = 1e-4
    checked = 0
    for name, w in params.items():
        grad = t["grad." + name].astype(np.float64).ravel()
        flat = w.ravel()  # a view: perturbations reach params[name]
        # Every element of small tensors, 12 random ones of the large (embed, lm_head, MLP).
        picks = range(flat.size) if flat.size <= 64 else rng.choice(flat.size, 12, replace=False)
        for j in picks:
            saved = flat[j]
            flat[j] = saved + eps
            lp = ref.loss(inputs, targets, offsets)
            flat[j] = saved - eps
            lm = ref.loss(inputs, targets, offsets)
            flat[j] = saved
            fd = (lp - lm) / (2 * eps)
            assert abs(grad[j] - fd) <= 2e-4 * max(1.0, abs(fd)) + 2e-5, (name, j, grad[j], fd)
            checked += 1
    assert checked > 200
