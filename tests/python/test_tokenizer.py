"""The tokenizer against its oracle, the Python `tokenizers` package: same ids, same text.

Covers GPT-2's vocabulary (tokenizer.json built here by the package from encoder.json + vocab.bpe),
tokenizers we train (loaded by the package), the whole TinyStories validation text, a hand-made
hard set, tokenizer.json features (Split behaviors, ignore_merges, byte_fallback, unk, added
tokens) and the errors for what we do not support.
"""
import gzip
import json
import subprocess

import pytest

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

from conftest import SHARED_DATA  # noqa: E402

GPT2_DIR = SHARED_DATA / "tokenizers" / "gpt2"
TINYSTORIES = SHARED_DATA / "tinystories"
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def hard_set():
    """Texts where tokenizers tend to disagree."""
    texts = [
        "",
        " ",
        "a",
        "Hello, world!",
        "I'm sure it's fine, they'll see. We've, you'd, I'LL, DON'T 'S",
        "emoji 😀👍🏽 family 👨‍👩‍👧‍👦 flags 🇯🇵🇫🇷 🫠",
        "中文汉字测试，标点。繁體字",
        "日本語のテキスト、カタカナとひらがな。ｶﾀｶﾅ",
        "combining: e\u0301 a\u0308 \u0915\u094d\u0937 Z\u0351\u0352\u0353",
        "RTL: שלום עולם, مرحبا بالعالم",
        "line one\r\nline two\r\n\r\nthree\n\n\n",
        "tabs\tand\u000bvertical\u000cfeed",
        "spaces:" + " " * 100 + "end" + " " * 37,
        "digits 1234567890123456789 3.14159 1,000,000 ٣٤٥ ½ Ⅻ",
        "unicode spaces:\u00a0\u1680\u2000\u2003\u200a\u2028\u2029\u202f\u205f\u3000\u180e\u200b\ufeff|",
        "control \x00\x01\x1f\x7f chars",
        "<|endoftext|>",
        "before<|endoftext|>after <|endoftext|><|endoftext|> x<|endoftext",
        "mixed ÀÉÎÕÜ ßẞ ﬁ ǅ İı",
        "a" * 5000,
        "9" * 3000,
        "\U0010FFFF\U000E0001 private \ue000",
        "x" + "\n" * 50 + "y",
        "  leading spaces and trailing  ",
    ]
    texts.append(("Once upon a time there were 3 cats. " * 28000)[:1_000_000])  # a 1 MB line
    return texts


def run_cli(cli, *args, stdin=None):
    r = subprocess.run(
        [str(cli), *args], input=stdin, capture_output=True, timeout=600,
        text=isinstance(stdin, str) or stdin is None,
    )
    return r


def our_encode_many(cli, tokenizer_path, texts, *extra):
    stdin = "".join(json.dumps(t) + "\n" for t in texts)
    r = run_cli(cli, "tokenizer", "encode", "-k", str(tokenizer_path), "--jsonl", *extra, stdin=stdin)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.split("\n")[:-1]]
    assert len(rows) == len(texts)
    return rows


def our_decode_many(cli, tokenizer_path, id_lists, *extra):
    stdin = "".join(json.dumps(ids) + "\n" for ids in id_lists)
    r = run_cli(cli, "tokenizer", "decode", "-k", str(tokenizer_path), "--jsonl", *extra, stdin=stdin)
    assert r.returncode == 0, r.stderr
    # split on "\n" only: str.splitlines() would also cut at U+2028 inside a string
    return [json.loads(line) for line in r.stdout.split("\n")[:-1]]


def assert_same_as_hf(cli, path, texts, check_roundtrip=True):
    hf = Tokenizer.from_file(str(path))
    ours = our_encode_many(cli, path, texts)
    for text, ids in zip(texts, ours):
        expected = hf.encode(text).ids
        assert ids == expected, f"ids differ for {text[:80]!r}"
    decoded = our_decode_many(cli, path, ours)
    for text, ids, back in zip(texts, ours, decoded):
        assert back == hf.decode(ids, skip_special_tokens=False), f"decode differs for {text[:80]!r}"
        if check_roundtrip:
            assert back == text


@pytest.fixture(scope="session")
def valid_text():
    with gzip.open(TINYSTORIES / "valid.txt.gz", "rt", encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="session")
def gpt2_json(tmp_path_factory):
    model = models.BPE.from_file(str(GPT2_DIR / "encoder.json"), str(GPT2_DIR / "vocab.bpe"))
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    path = tmp_path_factory.mktemp("gpt2") / "tokenizer.json"
    tok.save(str(path))
    return path


@pytest.fixture(scope="session")
def train_slice(tmp_path_factory):
    """The first ~2 MB of the training text, cut at a document boundary."""
    with gzip.open(TINYSTORIES / "train.txt.gz", "rt", encoding="utf-8") as f:
        text = f.read(2_000_000)
    text = text[: text.rindex("<|endoftext|>\n") + len("<|endoftext|>\n")]
    path = tmp_path_factory.mktemp("slice") / "train_slice.txt"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def trained_json(bitttt_cli, train_slice, tmp_path_factory):
    path = tmp_path_factory.mktemp("trained") / "tokenizer.json"
    r = run_cli(bitttt_cli, "tokenizer", "train", str(train_slice), "-o", str(path),
                "--vocab-size", "2048", "--min-frequency", "2")
    assert r.returncode == 0, r.stderr
    assert "merges" in r.stderr  # progress is printed
    return path


def test_gpt2_whole_validation_text_matches_hf(bitttt_cli, gpt2_json, valid_text, tmp_path):
    text_path = tmp_path / "valid.txt"
    text_path.write_text(valid_text, encoding="utf-8")
    r = run_cli(bitttt_cli, "tokenizer", "encode", "-k", str(gpt2_json), str(text_path))
    assert r.returncode == 0, r.stderr
    ours = [int(x) for x in r.stdout.split()]
    expected = Tokenizer.from_file(str(gpt2_json)).encode(valid_text).ids
    assert len(ours) > 50_000
    assert ours == expected
    # And the same per document, as a batch would see them.
    docs = valid_text.split("<|endoftext|>\n")[:100]
    assert_same_as_hf(bitttt_cli, gpt2_json, docs)


def test_gpt2_hard_set_matches_hf(bitttt_cli, gpt2_json):
    assert_same_as_hf(bitttt_cli, gpt2_json, hard_set())


def test_trained_tokenizer_loads_in_hf_and_matches(bitttt_cli, trained_json, valid_text):
    hf = Tokenizer.from_file(str(trained_json))
    assert hf.get_vocab_size() == 2048
    assert hf.token_to_id("<|endoftext|>") == 0
    docs = valid_text.split("<|endoftext|>\n")
    assert_same_as_hf(bitttt_cli, trained_json, [valid_text] + docs[:50] + hard_set())
    ids = our_encode_many(bitttt_cli, trained_json, ["a<|endoftext|>b"])[0]
    assert ids.count(0) == 1


def test_no_special_matches_hf_encode_special_tokens(bitttt_cli, trained_json):
    texts = ["<|endoftext|>", "x<|endoftext|>y<|endoftext|>", "plain"]
    hf = Tokenizer.from_file(str(trained_json))
    hf.encode_special_tokens = True
    ours = our_encode_many(bitttt_cli, trained_json, texts, "--no-special")
    assert ours == [hf.encode(t).ids for t in texts]
    assert all(0 not in ids for ids in ours)


def test_training_equals_hf_bpe_trainer(bitttt_cli, trained_json, train_slice):
    """Same words, same counts, same tie-break: the merges of the package's BpeTrainer exactly."""
    docs = train_slice.read_text(encoding="utf-8").split("<|endoftext|>")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2048, min_frequency=2, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(docs, trainer)
    hf_model = json.loads(tok.to_str())["model"]
    our_model = json.loads(trained_json.read_text(encoding="utf-8"))["model"]
    assert our_model["vocab"] == hf_model["vocab"]
    assert our_model["merges"] == hf_model["merges"]


def test_training_is_deterministic_across_thread_counts(bitttt_cli, train_slice, tmp_path):
    outputs = []
    for threads in ("1", "2"):
        path = tmp_path / f"t{threads}.json"
        r = run_cli(bitttt_cli, "tokenizer", "train", str(train_slice), "-o", str(path),
                    "--vocab-size", "600", "-t", threads)
        assert r.returncode == 0, r.stderr
        outputs.append(path.read_bytes())
    assert outputs[0] == outputs[1]


def test_invalid_utf8_is_replaced_like_python(bitttt_cli, gpt2_json, tmp_path):
    raw = b"ok \xe0\x80 \xf0\x9f\x98 x\xed\xa0\x80y \xff\xfe \xc3 end\xe2\x82"
    path = tmp_path / "bad.txt"
    path.write_bytes(raw)
    r = run_cli(bitttt_cli, "tokenizer", "encode", "-k", str(gpt2_json), str(path))
    assert r.returncode == 0, r.stderr
    ours = [int(x) for x in r.stdout.split()]
    hf = Tokenizer.from_file(str(gpt2_json))
    assert ours == hf.encode(raw.decode("utf-8", "replace")).ids


def make_variant(trained_json, tmp_path, name, edit):
    data = json.loads(trained_json.read_text(encoding="utf-8"))
    edit(data)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    Tokenizer.from_file(str(path))  # the package accepts it
    return path


@pytest.mark.parametrize("behavior", ["Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"])
@pytest.mark.parametrize("invert", [False, True])
def test_split_behaviors_match_hf(bitttt_cli, trained_json, tmp_path, behavior, invert):
    def edit(d):
        d["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": r"\s+|\p{P}"}, "behavior": behavior, "invert": invert},
            {"type": "Split", "pattern": {"String": "e"}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        ]}
    path = make_variant(trained_json, tmp_path, f"split_{behavior}_{invert}", edit)
    texts = [t for t in hard_set() if len(t) < 10_000] + ["  a,b ,, c. the end!", "x*"]
    assert_same_as_hf(bitttt_cli, path, texts, check_roundtrip=False)


def test_llama3_style_pipeline_with_ignore_merges_matches_hf(bitttt_cli, trained_json, tmp_path):
    def edit(d):
        d["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ]}
        d["model"]["ignore_merges"] = True
        # A token the merges would never build: ignore_merges must still pick it.
        d["model"]["vocab"]["Ġzqzq"] = len(d["model"]["vocab"])
    path = make_variant(trained_json, tmp_path, "llama3", edit)
    assert_same_as_hf(bitttt_cli, path, hard_set() + [" zqzq zqzqzq"])


def test_empty_match_regex_matches_hf(bitttt_cli, trained_json, tmp_path):
    def edit(d):
        d["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": r"x*|\b"}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ]}
    path = make_variant(trained_json, tmp_path, "empty", edit)
    assert_same_as_hf(bitttt_cli, path, ["abxxc", "xx yy x", "", "héllo wörld", "end$ ^line\nnext"])


def test_byte_fallback_unk_and_added_tokens_match_hf(bitttt_cli, tmp_path):
    # A character-level model without ByteLevel: unknown characters go to <0xXX> tokens when
    # byte_fallback has them, otherwise to a (fused) unk.
    vocab = {"<unk>": 0, "<0x41>": 1, "<0xC3>": 2, "<0xA9>": 3, "a": 4, "b": 5, "ab": 6, "c": 7, " ": 8}
    for variant in range(3):
        model = models.BPE(vocab=dict(vocab), merges=[("a", "b")], unk_token="<unk>",
                           byte_fallback=variant != 1, fuse_unk=variant == 2)
        tok = Tokenizer(model)
        tok.add_special_tokens(["<s>", "</s>"])
        tok.add_tokens([AddedToken("ab c", normalized=False), AddedToken("cc", normalized=True)])
        path = tmp_path / f"fallback{variant}.json"
        tok.save(str(path))
        texts = ["ab c", "abAé", "zzab", "xyzAA", "é", "<s>abc</s>", "cccc ab cc", "日本", ""]
        assert_same_as_hf(bitttt_cli, path, texts, check_roundtrip=False)


@pytest.mark.parametrize("field,value,message", [
    ("normalizer", {"type": "NFC"}, "normalizer"),
    ("post_processor", {"type": "TemplateProcessing", "single": [], "pair": [], "special_tokens": {}}, "post_processor"),
    ("decoder", {"type": "WordPiece", "prefix": "##", "cleanup": True}, "decoder"),
    ("pre_tokenizer", {"type": "Whitespace"}, "pre_tokenizer"),
    ("model.type", "WordPiece", "model.type"),
    ("model.dropout", 0.1, "model.dropout"),
    ("model.continuing_subword_prefix", "##", "model.continuing_subword_prefix"),
    ("padding", {"strategy": "BatchLongest"}, "padding"),
])
def test_unsupported_fields_are_clear_errors(bitttt_cli, trained_json, tmp_path, field, value, message):
    data = json.loads(trained_json.read_text(encoding="utf-8"))
    target = data
    parts = field.split(".")
    for p in parts[:-1]:
        target = target[p]
    target[parts[-1]] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    r = run_cli(bitttt_cli, "tokenizer", "encode", "-k", str(path), "--text", "hi")
    assert r.returncode == 1
    assert str(path) in r.stderr and message in r.stderr
    assert r.stderr.strip().count("\n") == 0


@pytest.mark.parametrize("content", [
    "",
    "{",
    "[]",
    '{"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}}',
    '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}',
    '{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}}',
    '{"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []}}',
    '{"model": {"type": "BPE", "vocab": {"a": 4000000000}, "merges": []}}',
    '{"model": {"type": "BPE", "vocab": {}, "merges": [1]}}',
    '{"model": {"type": "BPE", "vocab": {}, "merges": []}, "added_tokens": [{"id": 1}]}',
    '{"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(("}, "behavior": "Isolated"}}',
])
def test_malformed_files_are_clear_errors(bitttt_cli, tmp_path, content):
    path = tmp_path / "broken.json"
    path.write_text(content, encoding="utf-8")
    r = run_cli(bitttt_cli, "tokenizer", "encode", "-k", str(path), "--text", "hi")
    assert r.returncode == 1
    assert str(path) in r.stderr
    assert r.stderr.strip().count("\n") == 0


def test_overlapping_added_tokens_leftmost_longest_match_hf(bitttt_cli, gpt2_json, tmp_path):
    tok = Tokenizer.from_file(str(gpt2_json))
    tok.add_tokens([AddedToken("hello", normalized=False), AddedToken("hello world", normalized=False),
                    AddedToken("world!", normalized=True), AddedToken("lo w", normalized=True)])
    tok.add_special_tokens(["<|a|>", "<|a|><|b|>", "<|b|>x"])
    path = tmp_path / "added.json"
    tok.save(str(path))
    texts = ["hello world!", "say hello worl", "xhello world!!", "<|a|><|b|>x<|a|>", "<|b|>xhello",
             "helo wworld!", "hello<|a|>world!"]
    assert_same_as_hf(bitttt_cli, path, texts)
    tok.encode_special_tokens = True
    assert our_encode_many(bitttt_cli, path, texts, "--no-special") == [tok.encode(t).ids for t in texts]
