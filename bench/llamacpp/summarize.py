"""Summarizes a compare.sh run (RESULTS_DIR with bitttt.jsonl, llama.jsonl, load.jsonl) as a
Markdown table: per shape and engine, decode and prefill tokens/s (best and median of the rounds),
the bytes of weights one decoded token streams, and the GB/s that makes.

Bytes per token, llama.cpp: every tensor of the GGUF once (as llama.cpp runs it, after any
repacking, the same bytes) but the embedding, of which one row; the KV cache (f16, at most 128
tokens in tg128) is left out and is named in the notes. Ours: `bitttt bench decode`'s own count
(stream GB/s / tokens/s): packed ternary weights, bf16 lm_head, one fp32 embedding row, fp32
norms and step sizes, and the TTT state read and written.
"""
import json
import re
import pathlib
import statistics
import sys

import gguf


def read_jsonl(path: pathlib.Path) -> list:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            rows.append(json.loads(line))
    return rows


def gguf_decode_bytes(path: pathlib.Path) -> tuple:
    """(bytes one token streams, {tensor kind: ggml type}) of a GGUF file."""
    reader = gguf.GGUFReader(str(path))
    total = 0.0
    kinds = {}
    for t in reader.tensors:
        n = float(t.n_bytes)
        if t.name == "token_embd.weight":
            n /= float(t.shape[-1])  # one row of [D, vocab] (GGUF order)
        total += n
        kind = t.name.split(".")[-2] if t.name.startswith("blk.") else t.name.split(".")[0]
        kinds.setdefault(kind, t.tensor_type.name)
    return total, kinds


def best_median(values: list) -> str:
    if not values:
        return "-"
    return f"{max(values):.4g} ({statistics.median(values):.4g})"


def row_ours(rows: list, threads: int) -> list:
    """One decode row and one prompt row per round of `bitttt bench decode prompt`."""
    dec = [r["value"] for r in rows if r["name"] == "decode.model"]
    stream = [r["value"] for r in rows if r["name"] == "decode.model.stream"]
    prompt = [r for r in rows if r["name"].startswith("prompt.model.")]
    if not dec or not stream:
        return []
    mb = stream[0] / dec[0] * 1e3  # GB/s / (tokens/s) -> MB/token
    n = prompt[0]["name"].split(".")[-1].replace("tok", "") if prompt else "-"
    waits = "/".join(sorted({r.get("omp_wait", "?") for r in rows}))
    return [f"| bitttt (ternary 2 bit, bf16 lm_head; OpenMP wait {waits}) | {threads} | {mb:.1f} | {best_median(dec)} | "
            f"{max(dec) * mb / 1e3:.2f} | {n} | {best_median([r['value'] for r in prompt])} |"]


def row_llama(rows: list, kind: str, threads: int, path: pathlib.Path) -> list:
    """llama-bench's tg128 and ppN rows; each round's figure is its best repetition."""
    mb, kinds = gguf_decode_bytes(path) if path.exists() else (float("nan"), {})
    mb /= 1e6
    tg = [max(r["samples_ts"]) for r in rows if r["n_gen"] > 0]
    pp = [max(r["samples_ts"]) for r in rows if r["n_prompt"] > 0 and r["n_gen"] == 0]
    npp = next((r["n_prompt"] for r in rows if r["n_prompt"] > 0), 0)
    desc = (f"llama.cpp {kind} (ffn {kinds.get('ffn_up', '?')}, output "
            f"{kinds.get('output', '?')}, embd {kinds.get('token_embd', '?')})")
    return [f"| {desc} | {threads} | {mb:.1f} | {best_median(tg)} | {max(tg, default=0) * mb / 1e3:.2f} "
            f"| {npp} | {best_median(pp)} |"]


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: summarize.py RESULTS_DIR MODELS_DIR", file=sys.stderr)
        return 2
    out, models = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    ours = read_jsonl(out / "bitttt.jsonl")
    theirs = read_jsonl(out / "llama.jsonl")
    loads = read_jsonl(out / "load.jsonl")
    shapes = list(dict.fromkeys([r["shape"] for r in ours + theirs]))
    lines = []
    if (out / "versions.txt").exists():
        lines += ["```", (out / "versions.txt").read_text().rstrip(), "```", ""]
    for shape in shapes:
        load = [r["load"] for r in loads if r["shape"] == shape]
        bw = [float(m.group(1)) for r in ours if r["shape"] == shape
              for m in [re.search(r"read bandwidth ([0-9.]+) GB/s", r.get("reference", ""))] if m]
        lines.append(f"**{shape}** (load average 1/5/15 min at each round: {'; '.join(load)}; "
                     f"read bandwidth of 1 GiB, `bitttt bench decode`'s reference, per run: "
                     f"{', '.join(f'{b:.1f}' for b in bw)} GB/s)")
        lines.append("")
        lines.append("| engine, weights | threads | MB/token | decode tok/s best (median) | "
                     "GB/s at best | prefill tokens | prefill tok/s best (median) |")
        lines.append("| --- | --- | --- | --- | --- | --- | --- |")
        threads = sorted({r["threads"] for r in ours if r["shape"] == shape} |
                         {r["n_threads"] for r in theirs if r["shape"] == shape}, reverse=True)
        for nt in threads:
            mine_ours = [r for r in ours if r["shape"] == shape and r["threads"] == nt]
            for wait in dict.fromkeys(r.get("omp_wait", "?") for r in mine_ours):
                lines += row_ours([r for r in mine_ours if r.get("omp_wait", "?") == wait], nt)
            mine = [r for r in theirs if r["shape"] == shape and r["n_threads"] == nt]
            for t in dict.fromkeys(r["type"] for r in mine):
                lines += row_llama([r for r in mine if r["type"] == t], t, nt,
                                   models / f"{shape}-{t}.gguf")
        lines.append("")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
