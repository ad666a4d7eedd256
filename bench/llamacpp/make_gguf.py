"""Writes a Llama GGUF (F16) with random weights for llama.cpp's llama-bench (compare.sh).

The shapes are those of a Bit-TTT model with the delta rule and Dt = D: per block q, k, v, o of
D x D (here multi-head attention, as many KV heads as heads), a SwiGLU MLP (gate, up: MLP x D;
down: D x MLP), RMSNorms, an embedding and an untied output head of VOCAB x D. Weights are normal
with std 1/sqrt(fan_in) (speed does not depend on the values); llama-quantize makes the TQ2_0,
TQ1_0 and Q4_0 files from this one. The vocabulary is a placeholder SentencePiece one (3 control
tokens, 256 byte tokens, then "t<i>"), enough for llama.cpp to load the model: llama-bench feeds
random token ids and never tokenizes text.
"""
import argparse
import os
import sys

import numpy as np

import gguf


def positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be > 0")
    return value


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=positive, required=True)
    p.add_argument("--layers", type=positive, required=True)
    p.add_argument("--mlp", type=positive, required=True)
    p.add_argument("--vocab", type=positive, required=True)
    p.add_argument("--heads", type=positive, required=True)
    p.add_argument("--context", type=positive, default=4096)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    if a.dim % a.heads:
        p.error(f"--dim {a.dim} is not a multiple of --heads {a.heads}")
    if a.vocab < 259 + 1:
        p.error("--vocab must exceed 259 (control and byte tokens)")
    # TQ1_0/TQ2_0/Q4_K work on rows of 256 values.
    for name, v in (("dim", a.dim), ("mlp", a.mlp)):
        if v % 256:
            p.error(f"--{name} {v} is not a multiple of 256 (llama.cpp's ternary blocks)")

    rng = np.random.default_rng(a.seed)

    def normal(rows: int, cols: int) -> np.ndarray:
        w = rng.standard_normal((rows, cols), dtype=np.float32)
        w *= 1.0 / np.sqrt(cols)
        return w.astype(np.float16)

    ones = lambda n: np.ones(n, dtype=np.float32)  # noqa: E731  norms stay F32, as convert does

    w = gguf.GGUFWriter(a.out + ".tmp", "llama")
    w.add_name(f"bitttt-shape-D{a.dim}-L{a.layers}")
    w.add_context_length(a.context)
    w.add_embedding_length(a.dim)
    w.add_block_count(a.layers)
    w.add_feed_forward_length(a.mlp)
    w.add_head_count(a.heads)
    w.add_head_count_kv(a.heads)
    w.add_rope_dimension_count(a.dim // a.heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(a.vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"\u2581t{i}" for i in range(a.vocab - len(tokens))]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * (a.vocab - 259)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([-float(i) for i in range(a.vocab)])
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)

    # numpy shapes are [out, in] (PyTorch order); the writer reverses them into GGUF's ne[].
    w.add_tensor("token_embd.weight", normal(a.vocab, a.dim))
    for i in range(a.layers):
        b = f"blk.{i}."
        w.add_tensor(b + "attn_norm.weight", ones(a.dim))
        for t in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(b + t + ".weight", normal(a.dim, a.dim))
        w.add_tensor(b + "ffn_norm.weight", ones(a.dim))
        w.add_tensor(b + "ffn_gate.weight", normal(a.mlp, a.dim))
        w.add_tensor(b + "ffn_up.weight", normal(a.mlp, a.dim))
        w.add_tensor(b + "ffn_down.weight", normal(a.dim, a.mlp))
    w.add_tensor("output_norm.weight", ones(a.dim))
    w.add_tensor("output.weight", normal(a.vocab, a.dim))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(a.out + ".tmp", a.out)
    print(f"make_gguf: {a.out} ({os.path.getsize(a.out) / 1e6:.1f} MB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
