"""bitttt.Tokenizer: training, encode/decode (single, batch, long, streaming), files, and
interop with the Hugging Face `tokenizers` package in both directions."""
import gzip
import pathlib
import threading

import pytest
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

import bitttt

GPT2 = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "tokenizers" / "gpt2"
TEXT = ("Once upon a time, a little fox found a shiny stone. The fox was happy. "
        "She said: \"Look, mom!\" 123 4567 — naïve café, 日本語, emoji 🦊.\n") * 30
SAMPLES = ["Hello world", "  leading spaces and\ttabs\n", "naïve café 日本語 🦊🦊",
           "The fox's stone<|endoftext|>Another story.", "", "12345 67", "x" * 300]


@pytest.fixture(scope="module")
def tok():
    return bitttt.Tokenizer.train_from_text(TEXT, vocab_size=400)


def test_train_from_text_basics(tok):
    # stops early once no pair occurs twice: fewer than 400, but many merges
    assert 300 < tok.vocab_size == len(tok) <= 400
    assert repr(tok) == f"Tokenizer(vocab_size={tok.vocab_size})"
    assert tok.token_to_id("<|endoftext|>") == 0 and tok.is_special(0)
    assert not tok.is_special(1)
    assert tok.id_to_token(0) == "<|endoftext|>"
    assert tok.id_to_token(10**6) is None and tok.token_to_id("no such token") is None
    # merges learned: the frequent word is shorter than its bytes
    assert len(tok.encode(" fox")) == 1


def test_encode_decode_round_trip_and_specials(tok):
    for s in SAMPLES:
        assert tok.decode(tok.encode(s)) == s
    ids = tok.encode("a<|endoftext|>b")
    assert 0 in ids
    assert 0 not in tok.encode("a<|endoftext|>b", allow_special=False)
    assert tok.decode(ids, skip_special=True) == "ab"


def test_batch_and_long_encodes_agree_with_encode(tok):
    want = [tok.encode(s) for s in SAMPLES]
    assert tok.encode_batch(SAMPLES) == want
    assert tok.encode_batch(SAMPLES, threads=1) == want
    assert tok.encode_batch([]) == []
    long = "<|endoftext|>".join(SAMPLES * 20)
    assert tok.encode_long(long, threads=2) == tok.encode(long)
    assert tok.decode_batch(want) == SAMPLES
    with pytest.raises(ValueError, match="threads"):
        tok.encode_batch(SAMPLES, threads=-1)
    with pytest.raises(ValueError, match="threads"):
        tok.encode_long(long, threads=10**6)
    with pytest.raises(ValueError, match="threads"):
        bitttt.Tokenizer.train_from_text("abc abc", vocab_size=300, threads=10**6)
    with pytest.raises(ValueError, match="threads"):
        tok.encode_long(long, threads=10**6)
    with pytest.raises(ValueError, match="threads"):
        bitttt.Tokenizer.train_from_text("abc abc", vocab_size=300, threads=10**6)


def test_streaming_decoder_pieces_join_to_decode(tok):
    ids = tok.encode("naïve café 日本語 🦊 and more")
    dec = tok.streaming_decoder()
    pieces = [dec.push(i) for i in ids]
    pieces.append(dec.finish())
    assert "".join(pieces) == tok.decode(ids)
    # bytes of a split character are held back, never half-emitted
    assert all("\ufffd" not in p for p in pieces)
    with pytest.raises(ValueError):
        dec.push(10**6)
    dec.reset()
    assert dec.finish() == ""


def test_bad_arguments(tok, tmp_path):
    with pytest.raises(ValueError):
        tok.decode([10**6])
    with pytest.raises(TypeError):
        tok.decode([-1])
    with pytest.raises(TypeError):
        tok.encode(b"bytes")
    with pytest.raises(TypeError):
        tok.encode(None)
    with pytest.raises(ValueError, match="vocab_size"):
        bitttt.Tokenizer.train_from_text("abc", vocab_size=-5)
    with pytest.raises(ValueError, match="vocab_size"):
        bitttt.Tokenizer.train_from_text("abc", vocab_size=10)
    with pytest.raises(ValueError, match="min_frequency"):
        bitttt.Tokenizer.train_from_text("abc", min_frequency=-1)
    with pytest.raises(OSError):
        bitttt.Tokenizer.from_file(str(tmp_path / "missing.json"))
    with pytest.raises(OSError):
        bitttt.Tokenizer.train([str(tmp_path / "missing.txt")], vocab_size=300)
    with pytest.raises(ValueError):
        bitttt.Tokenizer.train([], vocab_size=300)
    with pytest.raises(ValueError):
        bitttt.Tokenizer.from_json("{not json")
    with pytest.raises(RuntimeError, match="not supported"):
        bitttt.Tokenizer.from_json('{"model": {"type": "WordPiece"}}')


def test_train_from_files_plain_and_gzip(tmp_path):
    (tmp_path / "a.txt").write_text(TEXT)
    with gzip.open(tmp_path / "b.txt.gz", "wt") as f:
        f.write(TEXT)
    t1 = bitttt.Tokenizer.train([tmp_path / "a.txt"], vocab_size=350)
    t2 = bitttt.Tokenizer.train([str(tmp_path / "b.txt.gz")], vocab_size=350)
    t3 = bitttt.Tokenizer.train_from_text(TEXT, vocab_size=350)
    assert t1.to_json() == t2.to_json() == t3.to_json()


def test_save_load_round_trip(tok, tmp_path):
    path = str(tmp_path / "tokenizer.json")
    tok.save(path)
    again = bitttt.Tokenizer.from_file(path)
    assert bitttt.Tokenizer.from_file(tmp_path / "tokenizer.json").to_json() == tok.to_json()
    tok.save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == tok.to_json()
    assert again.to_json() == tok.to_json()
    assert bitttt.Tokenizer.from_json(tok.to_json()).encode(TEXT) == tok.encode(TEXT)


def test_our_file_loads_in_tokenizers_with_the_same_ids(tok, tmp_path):
    path = str(tmp_path / "tokenizer.json")
    tok.save(path)
    hf = tokenizers.Tokenizer.from_file(path)
    for s in SAMPLES + [TEXT]:
        assert hf.encode(s).ids == tok.encode(s), s
        assert hf.decode(tok.encode(s), skip_special_tokens=False) == tok.decode(tok.encode(s))


def test_tokenizers_trained_file_loads_here_with_the_same_ids(tmp_path):
    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=380, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    hf.train_from_iterator([TEXT], trainer)
    path = str(tmp_path / "hf.json")
    hf.save(path)
    ours = bitttt.Tokenizer.from_file(path)
    assert ours.vocab_size == hf.get_vocab_size()
    for s in SAMPLES + [TEXT]:
        assert ours.encode(s) == hf.encode(s).ids, s
        assert ours.decode(ours.encode(s)) == hf.decode(hf.encode(s).ids, skip_special_tokens=False)
        assert ours.decode(ours.encode(s), skip_special=True) == hf.decode(hf.encode(s).ids)


@pytest.mark.skipif(not (GPT2 / "vocab.bpe").exists(), reason="GPT-2 tokenizer files not present")
def test_gpt2_tokenizer_matches_tokenizers(tmp_path):
    bpe = models.BPE.from_file(str(GPT2 / "encoder.json"), str(GPT2 / "vocab.bpe"))
    hf = tokenizers.Tokenizer(bpe)
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    path = str(tmp_path / "gpt2.json")
    hf.save(path)
    ours = bitttt.Tokenizer.from_file(path)
    for s in SAMPLES + [TEXT]:
        assert ours.encode(s) == hf.encode(s).ids, s
    batch = ours.encode_batch(SAMPLES, threads=2)
    assert batch == [e.ids for e in hf.encode_batch(SAMPLES)]


def test_gil_released_in_batch_encode(tok):
    texts = [TEXT] * 40
    want = tok.encode_batch(texts)
    results = []

    def work():
        results.append(tok.encode_batch(texts, threads=1))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [want] * 3
