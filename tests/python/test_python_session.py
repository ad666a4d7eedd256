"""bitttt.Session: logits views, generation (iterator, callbacks, token ids), TTT state, misuse."""
import gc
import threading
import time

import numpy as np
import pytest

import bitttt

TEXT = ("the cat sat on the mat. the dog sat on the log. a cat and a dog met on a mat. "
        "élan, naïve café: 日本語のテキスト. ") * 20


# One kernel thread for the whole module (conftest.py).
pytestmark = pytest.mark.usefixtures("one_kernel_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return bitttt.Tokenizer.train_from_text(TEXT, vocab_size=320)


@pytest.fixture(scope="module")
def model(tokenizer):
    config = bitttt.ModelConfig(tokenizer.vocab_size, 32, 2, 0.1)
    return bitttt.Model.random(config, seed=11, tokenizer=tokenizer)


@pytest.fixture(scope="module")
def bare_model():
    return bitttt.Model.random(bitttt.ModelConfig(50, 32, 2, 0.1), seed=3)


def test_forward_returns_a_read_only_view_overwritten_by_the_next_call(model):
    s = bitttt.Session(model)
    a = s.forward([1, 2, 3])
    assert a.shape == (model.vocab_size,) and a.dtype == np.float32
    assert not a.flags.writeable
    kept = a.copy()
    b = s.forward_token(4)
    # the same buffer: `a` now shows the new logits
    assert a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(kept, b)
    c = s.forward_token(5, copy=True)
    assert c.flags.writeable and c.__array_interface__["data"][0] != a.__array_interface__["data"][0]
    assert s.position == 5


def test_view_keeps_the_session_alive(model):
    s = bitttt.Session(model)
    view = s.forward([1, 2])
    expected = view.copy()
    del s
    gc.collect()
    np.testing.assert_array_equal(view, expected)  # still readable: the array owns the session


def test_forward_is_incremental_and_all_logits_agree(model):
    ids = [7, 8, 9, 10, 11, 12, 13]
    full = bitttt.Session(model, max_chunk=3).forward(ids, all_logits=True)
    assert full.shape == (len(ids), model.vocab_size) and full.flags.writeable
    s = bitttt.Session(model)
    for i, t in enumerate(ids):
        np.testing.assert_allclose(s.forward_token(t), full[i], rtol=1e-5, atol=1e-5)
    # numpy integer arrays work as ids too
    again = bitttt.Session(model).forward(np.array(ids, dtype=np.int64), all_logits=True)
    np.testing.assert_allclose(again, full, rtol=1e-5, atol=1e-5)


def test_reset_and_state(model):
    s = bitttt.Session(model)
    first = s.forward([3, 4, 5], copy=True)
    w = s.state(0)
    assert w.shape == (1, 8, 8) and w.dtype == np.float32 and np.abs(w).sum() > 0
    s.reset()
    assert s.position == 0 and np.abs(s.state(1)).sum() == 0
    np.testing.assert_array_equal(s.forward([3, 4, 5]), first)
    with pytest.raises(ValueError, match="layer"):
        s.state(2)
    with pytest.raises(ValueError, match="layer"):
        s.state(-1)


def test_save_and_load_state(model, bare_model, tmp_path):
    s = bitttt.Session(model)
    s.forward([10, 11, 12])
    path = str(tmp_path / "m.tttstate")
    s.save_state(path)
    after = s.forward([13], copy=True)
    other = bitttt.Session(model)
    other.load_state(tmp_path / "m.tttstate")
    assert other.position == 3
    np.testing.assert_array_equal(other.forward([13]), after)
    with pytest.raises(ValueError):
        bitttt.Session(bare_model).load_state(path)  # another model's memory
    with pytest.raises(OSError):
        other.load_state(str(tmp_path / "missing.tttstate"))
    with pytest.raises(OSError):
        s.save_state(str(tmp_path / "no" / "such" / "dir" / "x.tttstate"))


def test_bad_forward_arguments(model):
    s = bitttt.Session(model)
    with pytest.raises(ValueError, match="out of range"):
        s.forward([1, model.vocab_size])
    with pytest.raises(ValueError, match="out of range"):
        s.forward_token(-1)
    with pytest.raises(ValueError, match="no tokens"):
        s.forward([])
    with pytest.raises(TypeError):
        s.forward("abc")
    with pytest.raises(TypeError):
        s.forward([1.5])
    with pytest.raises(TypeError):
        s.forward([2**40])
    assert s.position == 0  # nothing was read
    with pytest.raises(ValueError, match="chunk"):
        bitttt.Session(model, max_chunk=0)
    with pytest.raises(TypeError):
        bitttt.Session("model")


def test_generate_iterator_matches_callback_and_tokens(model, tokenizer):
    opts = dict(max_new_tokens=20, temperature=0.9, seed=5, stop_at_end_of_text=False)
    pieces = list(bitttt.Session(model).generate("the cat", **opts))
    assert all(isinstance(p, str) and p for p in pieces)
    got = []
    result = bitttt.Session(model).generate("the cat", callback=got.append, **opts)
    assert got == pieces
    assert result.stop_reason == "token_limit" and len(result.tokens) == 20
    assert repr(result) == "GenerateResult(20 tokens, stop_reason='token_limit')"
    ids = bitttt.Session(model).generate_tokens(tokenizer.encode("the cat"), **opts)
    assert ids.tokens == result.tokens
    assert "".join(pieces) == tokenizer.decode(result.tokens)
    assert result.prompt_seconds >= 0 and result.generate_seconds >= 0


def test_generate_iterator_result_and_state(model):
    s = bitttt.Session(model)
    it = s.generate("the dog", max_new_tokens=5, temperature=0, stop_at_end_of_text=False)
    assert it.result is None
    text = "".join(it)
    assert it.result.stop_reason == "token_limit" and len(it.result.tokens) == 5
    assert s.position == len(model.tokenizer.encode("the dog")) + 5
    assert text == model.tokenizer.decode(it.result.tokens)
    # the session is free again
    s.forward_token(1)


def test_generate_greedy_is_deterministic_and_seeded_sampling_reproduces(model):
    a = bitttt.Session(model).generate_tokens([1, 2], max_new_tokens=8, temperature=0)
    b = bitttt.Session(model).generate_tokens([1, 2], max_new_tokens=8, temperature=0)
    assert a.tokens == b.tokens
    c = bitttt.Session(model).generate_tokens([1, 2], 8, temperature=1.5, seed=1, stop_at_end_of_text=False)
    d = bitttt.Session(model).generate_tokens([1, 2], 8, temperature=1.5, seed=1, stop_at_end_of_text=False)
    e = bitttt.Session(model).generate_tokens([1, 2], 8, temperature=1.5, seed=2, stop_at_end_of_text=False)
    assert c.tokens == d.tokens and c.tokens != e.tokens
    # greedy = argmax of the logits
    s = bitttt.Session(model)
    first = int(np.argmax(s.forward([1, 2])))
    if first != 0:
        assert a.tokens[0] == first


def test_breaking_out_of_the_iterator_stops_generation(model):
    s = bitttt.Session(model)
    prompt = model.tokenizer.encode("a cat")
    it = s.generate(prompt, max_new_tokens=50, temperature=0, stop_at_end_of_text=False)
    next(it)
    with pytest.raises(RuntimeError, match="busy"):
        s.forward([1])
    it.close()
    assert it.result.stop_reason == "callback"
    n = len(it.result.tokens)
    assert n < 50 and s.position == len(prompt) + n
    s.forward([1])  # free again
    assert list(it) == []  # closed
    it.close()  # idempotent
    # dropping an unfinished iterator frees the session too
    for _ in s.generate(prompt, max_new_tokens=50, stop_at_end_of_text=False):
        break
    gc.collect()
    s.forward([1])
    with s.generate(prompt, max_new_tokens=50) as it2:
        next(it2)
    s.reset()


def test_callback_can_stop_and_its_errors_propagate(model):
    s = bitttt.Session(model)
    seen = []

    def stop_after_three(tok):
        seen.append(tok)
        return len(seen) < 3

    r = s.generate_tokens([1], 30, temperature=0, stop_at_end_of_text=False, callback=stop_after_three)
    assert r.stop_reason == "callback" and r.tokens == seen and len(seen) == 3
    assert s.position == 1 + 3

    def boom(_):
        raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        s.generate("the", 10, callback=boom)
    s.forward([2])  # the session is usable afterwards


def test_generate_empty_prompt_continues_and_bad_options(model, bare_model):
    s = bitttt.Session(model)
    with pytest.raises(ValueError, match="empty prompt"):
        s.generate_tokens([], 3)
    s.forward([1, 2, 3])
    assert len(s.generate_tokens([], 3, stop_at_end_of_text=False).tokens) == 3
    with pytest.raises(ValueError, match="max_new_tokens"):
        s.generate("x", -1)
    with pytest.raises(ValueError, match="top.p"):
        s.generate("x", 3, top_p=0)
    with pytest.raises(ValueError, match="temperature"):
        s.generate("x", 3, temperature=-1)
    with pytest.raises(TypeError):
        s.generate(3.5, 3)
    with pytest.raises(TypeError):
        s.generate("x", 3, seed=-1)
    with pytest.raises(ValueError, match="out of range"):
        list(s.generate([model.vocab_size + 5], 3))
    s.forward([1])  # an error inside the iterator frees the session
    it = s.generate("the", 5)
    with pytest.raises(RuntimeError, match="busy"):
        s.generate("the", 5)  # one open iterator at a time
    it.close()
    with pytest.raises(ValueError, match="tokenizer"):
        bitttt.Session(bare_model).generate("hello", 3)
    with pytest.raises(ValueError, match="tokenizer"):
        bitttt.Session(bare_model).generate_tokens("hello", 3)
    assert len(bitttt.Session(bare_model).generate_tokens([1], 4, stop_at_end_of_text=False).tokens) == 4


def test_gil_is_released_during_forward(model):
    # Two threads over two sessions of one model give the same logits as one after the other.
    ids = list(range(1, 200)) * 3
    want = bitttt.Session(model).forward(ids, copy=True)
    out = [None, None]

    def work(i):
        bitttt.set_num_threads(1)  # per thread, as OpenMP's setting is
        out[i] = bitttt.Session(model).forward(ids, copy=True)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for o in out:
        np.testing.assert_array_equal(o, want)


def test_one_session_used_by_two_threads_gives_a_clean_error(model):
    s = bitttt.Session(model)
    errors = []
    long_ids = list(range(1, 300)) * 8

    def work():
        bitttt.set_num_threads(1)
        try:
            for _ in range(2):
                s.forward(long_ids)
        except RuntimeError as e:
            errors.append(str(e))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all("busy" in e for e in errors)


def test_session_model_property(model):
    s = bitttt.Session(model)
    assert s.model.identity_hash == model.identity_hash


def test_delta_rule_model_state_has_one_matrix_per_head():
    c = bitttt.ModelConfig(40, 32, 2, 0.1, ttt_rule="delta", ttt_heads=2)
    s = bitttt.Session(bitttt.Model.random(c, seed=2))
    logits = s.forward([1, 2, 3])
    assert logits.shape == (40,) and np.isfinite(logits).all()
    w = s.state(1)
    assert w.shape == (2, 4, 4) and np.abs(w).sum() > 0


def test_iterator_with_empty_prompt_continues_like_generate_tokens(model, tmp_path):
    opts = dict(max_new_tokens=6, temperature=0.7, seed=9, stop_at_end_of_text=False)
    a = bitttt.Session(model)
    a.forward([5, 6, 7])
    want = a.generate_tokens([], **opts).tokens
    b = bitttt.Session(model)
    b.forward([5, 6, 7])
    it = b.generate([], **opts)
    text = "".join(it)
    assert it.result.tokens == want and text == model.tokenizer.decode(want)
    assert b.position == a.position
    # after generation, the last logits are those of the last generated token: both continue alike
    assert "".join(b.generate([], **opts)) == model.tokenizer.decode(a.generate_tokens([], **opts).tokens)
    # no logits to continue from: after reset, after load_state, in a fresh session
    b.save_state(str(tmp_path / "s.tttstate"))
    b.load_state(str(tmp_path / "s.tttstate"))
    for s in (b, bitttt.Session(model)):
        with pytest.raises(ValueError, match="empty prompt"):
            next(s.generate([], 3))
        s.forward([1])  # the failed iterator freed the session
        s.reset()
        with pytest.raises(ValueError, match="empty prompt"):
            s.generate([], 3, callback=lambda piece: None)


def test_one_iterator_driven_from_two_threads_never_runs_twice_at_once(model):
    # A long prompt makes the first next() take a while, so the two threads do collide.
    prompt = list(range(1, 300)) * 60
    s = bitttt.Session(model)
    it = s.generate(prompt, 20, temperature=0, stop_at_end_of_text=False)
    pieces, errors = [], []

    def drain():
        bitttt.set_num_threads(1)
        while True:
            try:
                pieces.append(next(it))
            except StopIteration:
                return
            except RuntimeError as e:
                errors.append(str(e))
                time.sleep(0.001)

    threads = [threading.Thread(target=drain) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors and all("already running" in e for e in errors)
    assert it.result.stop_reason == "token_limit" and len(it.result.tokens) == 20
    assert s.position == len(prompt) + 20
    want = list(bitttt.Session(model).generate(prompt, 20, temperature=0, stop_at_end_of_text=False))
    assert sorted(pieces) == sorted(want)
