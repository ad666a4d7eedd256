"""Tokens for the PyTorch baselines: the SAME token stream as `bitttt train` (src/train/data.hpp).

`bitttt train --out OUT` tokenizes its data once into OUT/cache/:
    <text file name>.<key>.tokens   uint16 (when the vocabulary fits) or uint32, little-endian
    <text file name>.<key>.json     {"format": 1, "source", "source_bytes", "source_xxh3",
                                     "tokenizer_xxh3", "tokens", "dtype": "uint16"|"uint32"}
where the token stream is, for every document (text between lines holding exactly
`<|endoftext|>`, trailing newlines dropped, empty ones skipped), its ids and then the id of
`<|endoftext|>`. This module reads those files, finds the one of a text file in a cache directory,
or makes the same stream with the `tokenizers` package from a tokenizer.json.

Also: the batch sampler (B windows of T+1 tokens from uniform random starts, as BatchSampler; a
NumPy PCG64 generator, so not the same draws) and the validation windows.
"""
import glob
import gzip
import json
import os

import numpy as np

EOT = "<|endoftext|>"


def read_text(path):
    """A UTF-8 text file, plain or gzip."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode("utf-8")


def split_documents(text):
    """The documents of `text` as data.cpp's split_documents: pieces between `<|endoftext|>` lines
    (separator lines and the newlines before them dropped; empty pieces skipped)."""
    docs, current = [], []
    for line in text.split("\n"):
        if line.rstrip("\r") == EOT:
            doc = "\n".join(current).rstrip("\r\n")
            if doc:
                docs.append(doc)
            current = []
        else:
            current.append(line)
    doc = "\n".join(current).rstrip("\r\n")
    if doc:
        docs.append(doc)
    return docs


def read_token_file(tokens_path, vocab_size=None):
    """(tokens as an int64 array, the JSON index) of a cache's `.tokens` file; checks sizes, the
    dtype and (given vocab_size) that every id is inside the vocabulary."""
    if not tokens_path.endswith(".tokens"):
        raise ValueError(f"{tokens_path}: a token file ends in .tokens")
    index_path = tokens_path[: -len(".tokens")] + ".json"
    with open(index_path, encoding="utf-8") as f:
        index = json.load(f)
    dtype = {"uint16": "<u2", "uint32": "<u4"}.get(index.get("dtype"))
    count = index.get("tokens")
    if dtype is None or not isinstance(count, int) or count <= 0:
        raise ValueError(f"{index_path}: bad index (dtype {index.get('dtype')!r}, "
                         f"tokens {count!r})")
    tokens = np.fromfile(tokens_path, dtype=dtype)
    if tokens.size != count:
        raise ValueError(f"{tokens_path}: {tokens.size} tokens, the index says {count}")
    if vocab_size is not None and int(tokens.max()) >= vocab_size:
        raise ValueError(f"{tokens_path}: id {int(tokens.max())} is outside the vocabulary "
                         f"of {vocab_size}")
    return tokens.astype(np.int64), index


def find_cached_tokens(cache_dir, text_path, vocab_size=None):
    """The `.tokens` file of `text_path` in a `bitttt train` cache directory, or None.

    An index matches when its source size (and XXH3 hash, when the `xxhash` package is there)
    equals the file's. The tokenizer hash is of the C++ tokenizer's JSON and cannot be checked
    here: when several caches of the same text match (tokenizers of different sizes), the one
    whose ids fit `vocab_size` is taken, and more than one is an error.
    """
    try:
        import xxhash
        with open(text_path, "rb") as f:
            source_hash = xxhash.xxh3_64_hexdigest(f.read())
    except ImportError:
        source_hash = None
    size = os.path.getsize(text_path)
    found = []
    name = glob.escape(os.path.basename(text_path))
    pattern = os.path.join(glob.escape(cache_dir), name + ".*.json")
    for index_path in sorted(glob.glob(pattern)):
        try:
            with open(index_path, encoding="utf-8") as f:
                index = json.load(f)
        except (OSError, ValueError):
            continue
        if index.get("source_bytes") != size:
            continue
        if source_hash is not None and index.get("source_xxh3") != source_hash:
            continue
        tokens_path = index_path[: -len(".json")] + ".tokens"
        if not os.path.exists(tokens_path):
            continue
        if vocab_size is not None:
            try:
                read_token_file(tokens_path, vocab_size)
            except ValueError:
                continue
        found.append(tokens_path)
    if len(found) > 1:
        raise ValueError(f"{cache_dir}: several token caches match {text_path} ({found}); "
                         f"pick one with --train-tokens / --val-tokens")
    return found[0] if found else None


def tokenize_with_hf(text_path, tokenizer_path):
    """The token stream of data.cpp's tokenize_documents, made with the `tokenizers` package
    (our tokenizer.json encodes identically there, DESIGN.md §3)."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tokenizer_path)
    eot = tok.token_to_id(EOT)
    if eot is None:
        raise ValueError(f"{tokenizer_path}: the tokenizer has no '{EOT}' token")
    docs = split_documents(read_text(text_path))
    ids = []
    for enc in tok.encode_batch(docs, add_special_tokens=False):
        ids.extend(enc.ids)
        ids.append(eot)
    return np.asarray(ids, dtype=np.int64)


def load_tokens(text_path, tokens_path, cache_dir, tokenizer_path, vocab_size):
    """Tokens of one text: an explicit token file, else a matching cache entry, else tokenized
    with the tokenizer. Returns (tokens, where they came from)."""
    if tokens_path:
        return read_token_file(tokens_path, vocab_size)[0], tokens_path
    if not text_path:
        raise ValueError("no data: give --data (and --cache-dir or --tokenizer) or --train-tokens")
    if cache_dir:
        found = find_cached_tokens(cache_dir, text_path, vocab_size)
        if found:
            return read_token_file(found, vocab_size)[0], found
    if not tokenizer_path:
        raise ValueError(f"{text_path}: no token cache found; give --tokenizer to tokenize it")
    tokens = tokenize_with_hf(text_path, tokenizer_path)
    if vocab_size is not None and tokens.size and int(tokens.max()) >= vocab_size:
        raise ValueError(f"{text_path}: the tokenizer gives ids beyond --vocab-size {vocab_size}")
    return tokens, f"{text_path} tokenized with {tokenizer_path}"


class BatchSampler:
    """B rows of T+1 consecutive tokens from uniformly random starts (inputs: the first T,
    targets: the last T), as the C++ BatchSampler. The generator state is part of checkpoints."""

    def __init__(self, tokens, B, T, seed):
        if tokens.size < T + 1:
            raise ValueError(f"the data has {tokens.size} tokens, fewer than context length + 1")
        self.tokens, self.B, self.T = tokens, B, T
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.offsets = np.arange(T + 1)

    def next(self):
        starts = self.rng.integers(0, self.tokens.size - self.T, size=self.B)
        rows = self.tokens[starts[:, None] + self.offsets]
        return rows[:, :-1], rows[:, 1:]

    def state(self):
        return self.rng.bit_generator.state

    def set_state(self, state):
        self.rng.bit_generator.state = state


def validation_windows(tokens, T, max_tokens=0):
    """Consecutive non-overlapping windows of T inputs covering the first n tokens
    (n = max_tokens, or all): every token but the first is predicted once, from the tokens of its
    own window only, exactly as `bitttt eval --reset-every T --max-tokens n` scores them.
    Yields (inputs, targets) pairs of equal length; the last may be shorter than T."""
    n = tokens.size if max_tokens <= 0 else min(tokens.size, max_tokens)
    for start in range(0, n - 1, T):
        end = min(start + T, n - 1)
        yield tokens[start:end], tokens[start + 1:end + 1]
