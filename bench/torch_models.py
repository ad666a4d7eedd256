"""PyTorch reference implementations that the engine is compared against (issues 8 and 10).

(a) BitTTTModel: the Bit-Llama of DESIGN.md §2 as a PyTorch user would train it: BitLinear with
    fake quantization and the straight-through estimator (§2.1), RMSNorm, SwiGLU, and both TTT
    rules computed with the chunked delta-rule form of §2.3a (torch_ttt_scan.py). Parameter names
    are those of DESIGN.md §3, so `model.state_dict()` saved as safetensors next to
    `config.json` is a model directory that `bitttt eval` / `generate` / `bitttt.Model.load` read.
(b) AttentionLlama: the quality baseline of issue 8: the same width, depth and SwiGLU MLP, with
    ordinary multi-head causal attention (RoPE) in place of the TTT layer and no quantization
    (fp32 master weights trained under bf16 autocast, exported as bf16).

Both take token ids [B, T] and return logits [B, T, V], or the mean cross-entropy with targets.
"""
import dataclasses
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_ttt_scan import delta_rule_chunked, delta_rule_loop

# ---------------------------------------------------------------------------------------------
# Config (config.json of DESIGN.md §2: the same keys, defaults and checks as the C++ ModelConfig)
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class BitTTTConfig:
    vocab_size: int = 16384
    hidden_dim: int = 256
    num_layers: int = 8
    inner_lr: float = 0.1
    ttt_dim: int = 0  # 0: D/4
    ttt_rule: str = "reconstruct"
    ttt_heads: int = 1
    mlp_dim: int = 0  # 0: 4·D
    norm_eps: float = 1e-5
    act_bits: int = 8

    def __post_init__(self):
        if self.ttt_dim == 0:
            self.ttt_dim = max(1, self.hidden_dim // 4)
        if self.mlp_dim == 0:
            self.mlp_dim = 4 * self.hidden_dim
        for key in ("vocab_size", "hidden_dim", "num_layers", "ttt_dim", "ttt_heads", "mlp_dim"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ValueError(f"config: '{key}' must be a positive integer")
        if self.ttt_rule not in ("reconstruct", "delta"):
            raise ValueError(f"config: 'ttt_rule' must be reconstruct or delta, "
                             f"got {self.ttt_rule!r}")
        if self.ttt_dim % self.ttt_heads:
            raise ValueError(f"config: ttt_dim {self.ttt_dim} is not divisible by ttt_heads")
        if self.ttt_rule == "reconstruct" and self.ttt_heads != 1:
            raise ValueError("config: the reconstruct rule has one head")
        if not 0.0 <= self.inner_lr <= 2.0:
            raise ValueError(f"config: 'inner_lr' must be in [0, 2], got {self.inner_lr}")
        if self.act_bits not in (0, 8):
            raise ValueError(f"config: 'act_bits' must be 0 or 8, got {self.act_bits}")

    def to_json(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d):
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"config: unknown keys {sorted(unknown)}")
        return cls(**d)


@dataclasses.dataclass
class AttentionConfig:
    vocab_size: int = 16384
    hidden_dim: int = 256
    num_layers: int = 8
    num_heads: int = 4  # head dim 64 at D = 256
    mlp_dim: int = 0  # 0: 4·D, the width of the Bit-TTT model's MLP
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0

    def __post_init__(self):
        if self.mlp_dim == 0:
            self.mlp_dim = 4 * self.hidden_dim
        if self.hidden_dim % self.num_heads or (self.hidden_dim // self.num_heads) % 2:
            raise ValueError("attention config: hidden_dim / num_heads must be an even integer")

    def to_json(self):
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


def fp32(t):
    """fp32 for compute under autocast; float64 stays float64 (the tests' exact comparisons)."""
    return t if t.dtype == torch.float64 else t.float()


def ste(value, surrogate):
    """`value` in the forward, the gradient of `surrogate` in the backward (straight-through).

    value + (s - s.detach()) adds an exact 0, so the forward value is bit-exact `value`.
    """
    return value + (surrogate - surrogate.detach())


def bitlinear(x, weight, act_bits):
    """BitLinear of §2.1 with fake quantization:

        β = mean|W|,  Wq = clamp(round(W / (β + 1e-8)), -1, 1)           (ternary, per tensor)
        γ = max(max|x|, 1e-5) per token, xq = clamp(round(x·127/γ), -127, 127)   (act_bits = 8)
        y = (xq · Wqᵀ) · β·γ/127

    The product runs on the integer values themselves (exact in bf16 with fp32 accumulation, as
    the engine's GPU path) and one rescale per output. Gradients: the straight-through estimator
    for both roundings (d xq/dx = 127/γ, d Wq/dW = 1/β, with β and γ held constant), i.e. the
    gradient of y = x_fq · W_fqᵀ with each quantizer taken as the identity.
    Quantization always runs in fp32, whatever the autocast dtype.
    """
    w = fp32(weight)
    beta = w.detach().abs().mean()
    w_scaled = w / (beta + 1e-8)
    w_int = ste(torch.clamp(torch.round(w_scaled.detach()), -1, 1), w / beta)
    if act_bits == 0:
        return F.linear(x, w_int) * beta
    x = fp32(x)
    gamma = x.detach().abs().amax(dim=-1, keepdim=True).clamp_min(1e-5)
    x_scaled = x * (127.0 / gamma)
    x_int = ste(torch.clamp(torch.round(x_scaled.detach()), -127, 127), x_scaled)
    return F.linear(x_int, w_int) * (beta * (gamma / 127.0))


class BitLinear(nn.Module):
    def __init__(self, in_features, out_features, act_bits):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.act_bits = act_bits

    def forward(self, x):
        return bitlinear(x, self.weight, self.act_bits)


def rms_norm(x, weight, eps):
    """y = x / sqrt(mean(x²) + eps) · weight, in fp32 (as the C++ trainer)."""
    xf = fp32(x)
    y = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps)
    return y if weight is None else y * weight


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)


def l2_normalize(x):
    """x / (‖x‖₂ + 1e-6) over the last dim (§2.2): unit keys keep the TTT step stable."""
    return x / (torch.linalg.vector_norm(x, dim=-1, keepdim=True) + 1e-6)


class SwiGLU(nn.Module):
    """down_proj(silu(gate_proj(u)) · up_proj(u)); BitLinear for Bit-TTT, nn.Linear for the
    attention baseline (act_bits None)."""

    def __init__(self, dim, hidden, act_bits):
        super().__init__()
        make = (lambda i, o: BitLinear(i, o, act_bits)) if act_bits is not None else (
            lambda i, o: nn.Linear(i, o, bias=False))
        self.gate_proj = make(dim, hidden)
        self.up_proj = make(dim, hidden)
        self.down_proj = make(hidden, dim)

    def forward(self, u):
        return self.down_proj(F.silu(self.gate_proj(u)) * self.up_proj(u))


# ---------------------------------------------------------------------------------------------
# TTT layers (§2.2, §2.3). `scan` picks the chunked form (default) or the per-token loop (tests).
# ---------------------------------------------------------------------------------------------


def run_scan(q, k, v, beta, read_after_update, chunk, scan):
    """The TTT recurrence in fp32 (autocast off: the state is a long sum of rank-1 updates)."""
    with torch.autocast(q.device.type, enabled=False):
        q, k, v, beta = (fp32(t) for t in (q, k, v, beta))
        if scan == "loop":
            o, _ = delta_rule_loop(q, k, v, beta, read_after_update)
        else:
            o, _ = delta_rule_chunked(q, k, v, beta, chunk, read_after_update)
    return o


class TTTReconstruct(nn.Module):
    """§2.2: f̂ = l2n(down(x)); z = W f̂ (read before the update); W -= η (z − f̂) f̂ᵀ;
    out = up(z)."""

    def __init__(self, c: BitTTTConfig):
        super().__init__()
        self.down = BitLinear(c.hidden_dim, c.ttt_dim, c.act_bits)
        self.up = BitLinear(c.ttt_dim, c.hidden_dim, c.act_bits)
        self.inner_lr = c.inner_lr

    def forward(self, x, chunk, scan):
        B, T, _ = x.shape
        f = l2_normalize(fp32(self.down(x)))[:, None]  # [B, 1, T, Dt]: one head, q = k = v
        beta = f.new_full((B, 1, T), self.inner_lr)
        z = run_scan(f, f, f, beta, False, chunk, scan)
        return self.up(z[:, 0])


class TTTDelta(nn.Module):
    """§2.3: per head, W -= η_t (W k̂ − v) k̂ᵀ with η_t = inner_lr·σ(lr(x));
    o = RMSNorm(W q̂) over the concatenated heads (no weight); out = o_proj(o)."""

    def __init__(self, c: BitTTTConfig):
        super().__init__()
        D, Dt, H = c.hidden_dim, c.ttt_dim, c.ttt_heads
        self.q = BitLinear(D, Dt, c.act_bits)
        self.k = BitLinear(D, Dt, c.act_bits)
        self.v = BitLinear(D, Dt, c.act_bits)
        self.o = BitLinear(Dt, D, c.act_bits)
        self.lr = nn.Linear(D, H, bias=True)  # floating point; reads the unquantized input
        self.heads, self.inner_lr, self.eps = H, c.inner_lr, c.norm_eps

    def forward(self, x, chunk, scan):
        B, T, _ = x.shape
        H = self.heads

        def heads(y):  # [B, T, Dt] -> [B, H, T, Dh]
            return fp32(y).reshape(B, T, H, -1).transpose(1, 2)

        q = l2_normalize(heads(self.q(x)))
        k = l2_normalize(heads(self.k(x)))
        v = heads(self.v(x))
        eta = self.inner_lr * torch.sigmoid(fp32(self.lr(x))).transpose(1, 2)  # [B, H, T]
        o = run_scan(q, k, v, eta, True, chunk, scan)
        o = o.transpose(1, 2).reshape(B, T, -1)
        return self.o(rms_norm(o, None, self.eps))


class BitTTTBlock(nn.Module):
    def __init__(self, c: BitTTTConfig):
        super().__init__()
        self.norm1 = RMSNorm(c.hidden_dim, c.norm_eps)
        self.ttt = TTTReconstruct(c) if c.ttt_rule == "reconstruct" else TTTDelta(c)
        self.norm2 = RMSNorm(c.hidden_dim, c.norm_eps)
        self.mlp = SwiGLU(c.hidden_dim, c.mlp_dim, c.act_bits)
        self.chunk, self.scan = 16, "chunked"  # set by BitTTTModel

    def forward(self, x):
        h = x + self.ttt(self.norm1(x), self.chunk, self.scan)
        return h + self.mlp(self.norm2(h))


def lm_loss(logits, targets):
    """Mean next-token cross-entropy in fp32 (nats/token)."""
    return F.cross_entropy(fp32(logits).reshape(-1, logits.shape[-1]), targets.reshape(-1))


class BitTTTModel(nn.Module):
    """x = embed[ids]; per layer h = x + TTT(RMSNorm(x)), x = h + MLP(RMSNorm(h));
    logits = lm_head(RMSNorm(x)). Every sequence starts from W = 0 (as in training)."""

    def __init__(self, c: BitTTTConfig, chunk=16, scan="chunked"):
        super().__init__()
        self.config = c
        self.embed = nn.Embedding(c.vocab_size, c.hidden_dim)
        self.layers = nn.ModuleList(BitTTTBlock(c) for _ in range(c.num_layers))
        self.norm_f = RMSNorm(c.hidden_dim, c.norm_eps)
        self.lm_head = nn.Linear(c.hidden_dim, c.vocab_size, bias=False)
        self.set_scan(chunk, scan)
        self.init_weights(0)

    def set_scan(self, chunk, scan="chunked"):
        if scan not in ("chunked", "loop") or int(chunk) < 1:
            raise ValueError(f"bad scan {scan!r} / chunk {chunk}")
        for layer in self.layers:
            layer.chunk, layer.scan = int(chunk), scan

    @torch.no_grad()
    def init_weights(self, seed):
        """As the C++ trainer (TrainModel::init_random, not its exact numbers): norms 1, biases 0,
        matrices N(0, 0.02²), the projections writing into the residual stream scaled by
        1/sqrt(2L) (GPT-2)."""
        device = self.embed.weight.device  # drawn where the model lives (fast on the GPU)
        gen = torch.Generator(device=device).manual_seed(seed)
        residual_scale = 1.0 / math.sqrt(2 * self.config.num_layers)
        for name, p in self.named_parameters():
            if name.endswith(("norm1.weight", "norm2.weight")) or name == "norm_f.weight":
                p.fill_(1.0)
            elif name.endswith("lr.bias"):
                p.zero_()
            else:
                std = 0.02 * (residual_scale if name.endswith(("ttt.up.weight", "ttt.o.weight",
                                                              "down_proj.weight")) else 1.0)
                p.copy_(torch.randn(p.shape, generator=gen, device=device) * std)

    def forward(self, ids, targets=None):
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x)
        logits = self.lm_head(self.norm_f(x))
        return logits if targets is None else lm_loss(logits, targets)



# ---------------------------------------------------------------------------------------------
# The attention baseline (issue 8): Llama with causal multi-head attention, no quantization.
# ---------------------------------------------------------------------------------------------


def rope(x, theta):
    """Rotary position embedding on [B, H, T, Dh] (the rotate-half convention of Llama)."""
    T, Dh = x.shape[-2], x.shape[-1]
    inv_freq = theta ** (-torch.arange(0, Dh, 2, device=x.device, dtype=torch.float32) / Dh)
    angles = torch.arange(T, device=x.device, dtype=torch.float32)[:, None] * inv_freq[None]
    cos, sin = angles.cos().repeat(1, 2), angles.sin().repeat(1, 2)  # [T, Dh]
    x1, x2 = x.float().chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x.float() * cos + rotated * sin).to(x.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, c: AttentionConfig):
        super().__init__()
        D = c.hidden_dim
        self.q_proj = nn.Linear(D, D, bias=False)
        self.k_proj = nn.Linear(D, D, bias=False)
        self.v_proj = nn.Linear(D, D, bias=False)
        self.o_proj = nn.Linear(D, D, bias=False)
        self.heads, self.theta = c.num_heads, c.rope_theta

    def forward(self, x):
        B, T, D = x.shape

        def heads(y):
            return y.reshape(B, T, self.heads, -1).transpose(1, 2)

        q = rope(heads(self.q_proj(x)), self.theta)
        k = rope(heads(self.k_proj(x)), self.theta)
        v = heads(self.v_proj(x))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # flash attention on GPU
        return self.o_proj(o.transpose(1, 2).reshape(B, T, D))


class AttentionBlock(nn.Module):
    def __init__(self, c: AttentionConfig):
        super().__init__()
        self.norm1 = RMSNorm(c.hidden_dim, c.norm_eps)
        self.attn = CausalSelfAttention(c)
        self.norm2 = RMSNorm(c.hidden_dim, c.norm_eps)
        self.mlp = SwiGLU(c.hidden_dim, c.mlp_dim, None)

    def forward(self, x):
        h = x + self.attn(self.norm1(x))
        return h + self.mlp(self.norm2(h))


class AttentionLlama(nn.Module):
    def __init__(self, c: AttentionConfig):
        super().__init__()
        self.config = c
        self.embed = nn.Embedding(c.vocab_size, c.hidden_dim)
        self.layers = nn.ModuleList(AttentionBlock(c) for _ in range(c.num_layers))
        self.norm_f = RMSNorm(c.hidden_dim, c.norm_eps)
        self.lm_head = nn.Linear(c.hidden_dim, c.vocab_size, bias=False)  # untied
        self.init_weights(0)

    @torch.no_grad()
    def init_weights(self, seed):
        """GPT-2 init as BitTTTModel: N(0, 0.02²), o_proj/down_proj scaled by 1/sqrt(2L)."""
        device = self.embed.weight.device
        gen = torch.Generator(device=device).manual_seed(seed)
        residual_scale = 1.0 / math.sqrt(2 * self.config.num_layers)
        for name, p in self.named_parameters():
            if "norm" in name:
                p.fill_(1.0)
            else:
                std = 0.02 * (residual_scale if name.endswith(("o_proj.weight",
                                                              "down_proj.weight")) else 1.0)
                p.copy_(torch.randn(p.shape, generator=gen, device=device) * std)

    def forward(self, ids, targets=None):
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x)
        logits = self.lm_head(self.norm_f(x))
        return logits if targets is None else lm_loss(logits, targets)



def matrix_params(model):
    """Weights of the matrix products (not embedding lookups, norms, biases): 6 FLOPs each per
    trained token (2 forward, 4 backward), the model-FLOPs count of MFU."""
    return sum(p.numel() for n, p in model.named_parameters()
               if p.dim() == 2 and not n.startswith("embed."))


def compile_blocks(model, **options):
    """torch.compile every block in place, as a strong PyTorch user would for a deep model: all
    blocks share one forward, so one compiled graph serves every layer (compile time stays that
    of one block, not L). Parameter names (state_dict) are unchanged."""
    for layer in model.layers:
        layer.compile(**options)
    return model


def save_model_dir(model, directory, tokenizer_path=None):
    """A model directory of our format (DESIGN.md §3) that `bitttt eval` / `generate` and
    `bitttt.Model.load` read: config.json, model.safetensors (fp32 master weights under the §3
    names; the engine quantizes them to ternary at load) and, given one, tokenizer.json.
    The attention baseline gets model.safetensors (bf16) and attention_config.json instead."""
    import json
    import os
    import shutil

    from safetensors.torch import save_file
    os.makedirs(directory, exist_ok=True)
    attention = isinstance(model, AttentionLlama)
    dtype = torch.bfloat16 if attention else torch.float32
    state = {k: v.detach().to(dtype).contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(directory, "model.safetensors"))
    name = "attention_config.json" if attention else "config.json"
    with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
        json.dump(model.config.to_json(), f, indent=2)
        f.write("\n")
    if tokenizer_path:
        shutil.copyfile(tokenizer_path, os.path.join(directory, "tokenizer.json"))
    return directory
