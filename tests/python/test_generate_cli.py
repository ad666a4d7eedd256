"""The model commands end to end: generate, chat, info, eval, export on small random models
written with the Python `safetensors` and `tokenizers` packages."""
import json
import math
import subprocess

import numpy as np
import pytest

safetensors_numpy = pytest.importorskip("safetensors.numpy")
tokenizers = pytest.importorskip("tokenizers")

TEXT = ("Once upon a time there was a little fox. The fox liked to run in the forest. "
        "Héllo wörld, 日本語 and 🙂 make multi-byte characters. ") * 20


def run(cli, *args, input=None):
    return subprocess.run([str(cli), *map(str, args)], capture_output=True, input=input,
                          timeout=120)


def write_model(path, vocab, rule="delta", seed=0, tokenizer_json=None):
    rng = np.random.default_rng(seed)
    D, Dt, M, L = 32, 8, 48, 2
    cfg = dict(vocab_size=vocab, hidden_dim=D, num_layers=L, ttt_dim=Dt, mlp_dim=M, inner_lr=0.5,
               ttt_rule=rule, ttt_heads=2 if rule == "delta" else 1)
    lin = lambda o, i: (rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)
    p = {"embed.weight": rng.standard_normal((vocab, D)).astype(np.float32),
         "norm_f.weight": np.ones(D, np.float32), "lm_head.weight": 3 * lin(vocab, D)}
    for i in range(L):
        pre = f"layers.{i}."
        p[pre + "norm1.weight"] = np.ones(D, np.float32)
        p[pre + "norm2.weight"] = np.ones(D, np.float32)
        if rule == "delta":
            for n in "qkv":
                p[pre + f"ttt.{n}.weight"] = lin(Dt, D)
            p[pre + "ttt.o.weight"] = lin(D, Dt)
            p[pre + "ttt.lr.weight"] = lin(2, D)
            p[pre + "ttt.lr.bias"] = np.zeros(2, np.float32)
        else:
            p[pre + "ttt.down.weight"] = lin(Dt, D)
            p[pre + "ttt.up.weight"] = lin(D, Dt)
        p[pre + "mlp.gate_proj.weight"] = lin(M, D)
        p[pre + "mlp.up_proj.weight"] = lin(M, D)
        p[pre + "mlp.down_proj.weight"] = lin(D, M)
    path.mkdir()
    (path / "config.json").write_text(json.dumps(cfg))
    safetensors_numpy.save_file(p, str(path / "model.safetensors"))
    if tokenizer_json:
        (path / "tokenizer.json").write_text(tokenizer_json)
    return path


@pytest.fixture(scope="module")
def tok():
    t = tokenizers.Tokenizer(tokenizers.models.BPE())
    t.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<|endoftext|>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    t.train_from_iterator([TEXT], trainer)
    return t


@pytest.fixture(scope="module")
def models(tmp_path_factory, tok):
    d = tmp_path_factory.mktemp("models")
    return {
        "text": write_model(d / "text", tok.get_vocab_size(), tokenizer_json=tok.to_str()),
        "ids": write_model(d / "ids", 50, rule="reconstruct"),
        "other": write_model(d / "other", tok.get_vocab_size(), seed=1,
                             tokenizer_json=tok.to_str()),
    }


def one_line_error(r):
    """The error is one line, flag parse errors included."""
    assert r.returncode != 0
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_generate_ids_without_tokenizer(bitttt_cli, models):
    r = run(bitttt_cli, "generate", models["ids"], "--ids", "1,2,3", "-n", "12", "--no-stop",
            "--temperature", "0")
    assert r.returncode == 0, r.stderr
    ids = [int(x) for x in r.stdout.split()]
    assert ids[:3] == [1, 2, 3] and len(ids) == 15 and all(0 <= i < 50 for i in ids)
    assert "tokens/s" in r.stderr.decode()
    # Greedy is deterministic; sampling follows the seed.
    assert run(bitttt_cli, "generate", models["ids"], "--ids", "1,2,3", "-n", "12", "--no-stop",
               "--temperature", "0").stdout == r.stdout
    a = run(bitttt_cli, "generate", models["ids"], "--ids", "1", "-n", "30", "--no-stop",
            "--temperature", "1.5", "--top-k", "0", "--seed", "1").stdout
    b = run(bitttt_cli, "generate", models["ids"], "--ids", "1", "-n", "30", "--no-stop",
            "--temperature", "1.5", "--top-k", "0", "--seed", "1").stdout
    c = run(bitttt_cli, "generate", models["ids"], "--ids", "1", "-n", "30", "--no-stop",
            "--temperature", "1.5", "--top-k", "0", "--seed", "2").stdout
    assert a == b and a != c


def test_generate_text_streams_valid_utf8(bitttt_cli, models, tok):
    prompt = "Héllo wörld, 日本"
    r = run(bitttt_cli, "generate", models["text"], "--prompt", prompt, "-n", "60", "--no-stop",
            "--temperature", "2", "--top-k", "0", "--seed", "5")
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode("utf-8")  # strict: a token ending inside a character must not break it
    assert text.startswith(prompt)
    # The prompt's tokens are re-decoded, and the output holds about 60 more tokens of text.
    assert len(tok.encode(text[len(prompt):]).ids) >= 30


def test_state_files_carry_memory_and_belong_to_one_model(bitttt_cli, models, tmp_path):
    state = tmp_path / "m.tttstate"
    args = ["--ids", "5,6,7,8,9,10,11,12", "-n", "8", "--no-stop", "--temperature", "0"]
    r = run(bitttt_cli, "generate", models["text"], *args, "--state-out", state)
    assert r.returncode == 0 and state.exists()
    fresh = run(bitttt_cli, "generate", models["text"], "--ids", "5", "-n", "8", "--no-stop",
                "--temperature", "0")
    primed = run(bitttt_cli, "generate", models["text"], "--ids", "5", "-n", "8", "--no-stop",
                 "--temperature", "0", "--state-in", state)
    assert primed.returncode == 0 and primed.stdout != fresh.stdout
    err = one_line_error(run(bitttt_cli, "generate", models["other"], "--ids", "5",
                             "--state-in", state))
    assert "different model" in err
    state.write_bytes(state.read_bytes()[:-3])
    assert "truncated" in one_line_error(
        run(bitttt_cli, "generate", models["text"], "--ids", "5", "--state-in", state))


@pytest.mark.parametrize("args,message", [
    (["generate", "/no/such/model", "--ids", "1"], "/no/such/model"),
    (["generate", "MODEL_IDS", "--prompt", "hi"], "no tokenizer"),
    (["generate", "MODEL_IDS", "--ids", "1", "--prompt", "hi"], "exactly one"),
    (["generate", "MODEL_IDS", "--ids", "1,x"], "bad token id 'x'"),
    (["generate", "MODEL_IDS", "--ids", "1,50"], "out of range"),
    (["generate", "MODEL_IDS", "--ids", "1", "--top-p", "2"], "top-p"),
    (["generate", "MODEL_IDS", "--ids", "1", "--temperature", "-1"], "temperature"),
    (["generate", "MODEL_IDS", "--ids", "1", "--threads", "-1"], "threads"),
    (["generate", "MODEL_IDS", "--ids", "1", "--state-in", "/no/state"], "/no/state"),
    (["info", "/no/such/model"], "/no/such/model"),
    (["eval", "MODEL_IDS", "/etc/hostname"], "no tokenizer"),
    (["export", "MODEL_IDS", "/tmp/x.bitt", "--dtype", "f8"], "f8"),
])
def test_bad_input_is_a_one_line_error(bitttt_cli, models, args, message):
    args = [str(models["ids"]) if a == "MODEL_IDS" else a for a in args]
    err = one_line_error(run(bitttt_cli, *args))
    assert message in err, err


@pytest.mark.parametrize("cmd", ["generate", "chat", "info", "eval", "export"])
def test_help(bitttt_cli, cmd):
    r = run(bitttt_cli, cmd, "--help")
    assert r.returncode == 0 and b"model" in r.stdout.lower()


def test_chat_from_a_pipe_keeps_memory_across_turns(bitttt_cli, models, tmp_path):
    state = tmp_path / "chat.tttstate"
    script = f"Once upon a time\n/save {state}\n/reset\n/load {state}\n/nope\nThe fox\n/quit\n"
    r = run(bitttt_cli, "chat", models["text"], "-n", "5", "--temperature", "0",
            input=script.encode())
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert "saved" in err and "memory reset" in err and "loaded" in err and "unknown command" in err
    assert state.exists() and len(r.stdout.decode().splitlines()) == 2  # two replies
    # The state saved after one turn equals the one generate leaves after the same tokens.
    gen_state = tmp_path / "gen.tttstate"
    assert run(bitttt_cli, "generate", models["text"], "--prompt", "Once upon a time", "-n", "5",
               "--temperature", "0", "--state-out", gen_state).returncode == 0
    assert gen_state.read_bytes() == state.read_bytes()


def test_export_round_trip_keeps_the_model(bitttt_cli, models, tmp_path):
    bitt = tmp_path / "m.bitt"
    back = tmp_path / "back"
    assert run(bitttt_cli, "export", models["text"], bitt).returncode == 0
    assert run(bitttt_cli, "export", bitt, back).returncode == 0
    outs, idents = set(), set()
    for m in (models["text"], bitt, back):
        r = run(bitttt_cli, "generate", m, "--prompt", "The fox", "-n", "10", "--temperature", "0")
        assert r.returncode == 0, r.stderr
        outs.add(r.stdout)
        info = run(bitttt_cli, "info", m).stdout.decode()
        idents.add([l for l in info.splitlines() if l.startswith("identity")][0])
    assert len(outs) == 1 and len(idents) == 1
    info = run(bitttt_cli, "info", bitt).stdout.decode()
    assert "parameters" in info and "bits per parameter" in info and "tokenizer: 320" in info


def test_eval_loss_matches_logits(bitttt_cli, models, tok, tmp_path):
    text_file = tmp_path / "t.txt"
    text_file.write_text(TEXT[:400])
    n = 50
    r = run(bitttt_cli, "eval", models["text"], text_file, "--max-tokens", n, "--chunk", "16")
    assert r.returncode == 0, r.stderr
    out = dict(line.split(": ") for line in r.stdout.decode().splitlines())
    loss, ppl = float(out["loss"]), float(out["perplexity"])
    assert int(out["tokens"]) == n - 1
    assert math.isclose(ppl, math.exp(loss), rel_tol=1e-4)
    # The same mean cross-entropy from the dumped logits of the first n - 1 tokens.
    ids = tok.encode(TEXT[:400]).ids[:n]
    dump = tmp_path / "l.bin"
    assert run(bitttt_cli, "generate", models["text"], "--ids", ",".join(map(str, ids[:-1])),
               "-n", "0", "--dump-logits", dump).returncode == 0
    logits = np.fromfile(dump, "<f4").reshape(n - 1, -1).astype(np.float64)
    m = logits.max(axis=1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    ce = -logp[np.arange(n - 1), ids[1:]].mean()
    assert abs(ce - loss) < 1e-4, (ce, loss)


def test_export_training_checkpoint(bitttt_cli, tmp_path):
    if run(bitttt_cli, "train", "--help").returncode != 0:
        pytest.skip("this build has no `bitttt train`")
    data = tmp_path / "d.txt"
    data.write_text(TEXT)
    out = tmp_path / "out"
    r = run(bitttt_cli, "train", "--data", data, "--vocab-size", "257", "--dim", "32", "--layers",
            "1", "--context-len", "16", "--batch-size", "2", "--steps", "3", "--eval-interval",
            "0", "--out", out, "--quiet", "--threads", "1")
    assert r.returncode == 0, r.stderr
    ckpt = out / "checkpoint.safetensors"
    assert run(bitttt_cli, "export", ckpt, tmp_path / "ck.bitt").returncode == 0
    # The checkpoint's master weights quantize to the model the trainer exported itself.
    ident = lambda m: [l for l in run(bitttt_cli, "info", m).stdout.decode().splitlines()
                       if l.startswith("identity")]
    assert ident(tmp_path / "ck.bitt") == ident(out / "model.bitt")


def test_model_benchmarks_quick(bitttt_cli):
    r = run(bitttt_cli, "bench", "decode", "prompt", "--quick", "--json", "--threads", "1")
    assert r.returncode == 0, r.stderr
    rows = {j["name"]: j for j in map(json.loads, r.stdout.decode().splitlines())}
    assert set(rows) == {"decode.quick", "decode.quick.stream", "prompt.quick.64tok"}
    assert all(j["value"] > 0 for j in rows.values())
    # The stream figure is tokens/s times the bytes a token reads (19 MB-class models: > 1 MB).
    assert rows["decode.quick.stream"]["value"] * 1e9 / rows["decode.quick"]["value"] > 1e6


def test_model_benchmarks_run_a_model_file_once(bitttt_cli, tmp_path):
    # --model replaces the built-in shapes: one decode and one prompt row (not one per shape).
    import bitttt

    path = tmp_path / "m.bitt"
    config = bitttt.ModelConfig(vocab_size=300, hidden_dim=64, num_layers=2)
    bitttt.Model.random(config, seed=1).save_bitt(path)
    r = run(bitttt_cli, "bench", "decode", "prompt", "--quick", "--json", "--threads", "1",
            "--model", path)
    assert r.returncode == 0, r.stderr
    names = [json.loads(line)["name"] for line in r.stdout.decode().splitlines()]
    assert names == ["decode.model", "decode.model.stream", "prompt.model.64tok"]


@pytest.mark.parametrize("args", [["generate", "random", "--ids", "1,2", "-n", "2"],
                                  ["bench", "decode", "--quick"]])
def test_device_cuda_without_a_gpu_is_a_one_line_error(bitttt_cli, args):
    r = subprocess.run([str(bitttt_cli), *args, "--device", "cuda"], capture_output=True,
                       text=True, timeout=300)
    if r.returncode == 0:
        pytest.skip("this machine has a GPU: --device cuda ran (tests/cuda cover it)")
    assert "no CUDA GPU is available" in r.stderr or "no CUDA backend" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_n_gpu_layers_needs_device_cuda(bitttt_cli):
    r = run(bitttt_cli, "generate", "random", "--ids", "1", "-n", "1", "--n-gpu-layers", "2")
    assert r.returncode != 0 and b"--n-gpu-layers needs --device cuda" in r.stderr
    r = run(bitttt_cli, "generate", "random", "--ids", "1", "-n", "1", "--device", "tpu")
    assert r.returncode != 0 and b"device must be" in r.stderr
