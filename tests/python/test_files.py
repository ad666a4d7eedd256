"""File interop (DESIGN.md §3): safetensors files written by the Python `safetensors` package load
with the engine's reader and the engine's files load with the package; .bitt files are read back
with an independent NumPy implementation of the format and of the packed ternary layout
(src/kernels/cpu/ternary.hpp), and compared with NumPy's own absmean quantization (§2.1).

The engine side is driven through the test tool `st_tool` (tests/tools/st_tool.cpp)."""
import ctypes
import ctypes.util
import json
import struct
import subprocess

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load, load_file, save_file


@pytest.fixture(scope="session")
def st_tool(build_dir):
    path = build_dir / "tests" / "st_tool"
    if not path.exists():
        pytest.fail(f"no {path}: build the st_tool target")
    return path


def run(tool, *args):
    return subprocess.run([str(tool), *map(str, args)], check=True, capture_output=True,
                          text=True).stdout


def xxh3_64(data: bytes) -> int:
    """XXH3-64 from the system libxxhash (the reference implementation), through ctypes."""
    name = ctypes.util.find_library("xxhash") or "libxxhash.so.0"
    lib = ctypes.CDLL(name)
    lib.XXH3_64bits.restype = ctypes.c_uint64
    lib.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    return lib.XXH3_64bits(data, len(data))


# ---- plain safetensors -------------------------------------------------------------------------

def test_package_files_load_in_engine(tmp_path, st_tool):
    rng = np.random.default_rng(0)
    tensors = {
        "a": rng.standard_normal((3, 5)).astype(np.float32),
        "h": rng.standard_normal(7).astype(np.float16),
        "u": rng.integers(0, 256, (2, 3, 4), dtype=np.uint8),
        "s": np.array(2.5, dtype=np.float32),
        "z": np.zeros((0, 3), dtype=np.float32),
    }
    path = tmp_path / "py.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt", "note": "\u00e9t\u00e9"})
    out = json.loads(run(st_tool, "dump", path))
    assert out["metadata"] == {"format": "pt", "note": "\u00e9t\u00e9"}
    assert set(out["tensors"]) == set(tensors)
    names = {np.float32: "F32", np.float16: "F16", np.uint8: "U8"}
    for name, value in tensors.items():
        got = out["tensors"][name]
        assert got["dtype"] == names[value.dtype.type]
        assert got["shape"] == list(value.shape)
        assert got["xxh3_64"] == f"{xxh3_64(value.tobytes()):016x}"
        if value.dtype != np.uint8:
            assert np.array_equal(np.array(got["f32"], dtype=np.float64),
                                  value.astype(np.float32).ravel().astype(np.float64))


def test_bf16_written_by_hand_decodes(tmp_path, st_tool):
    # NumPy has no bfloat16: write the file from the format description, BF16 = the upper half of
    # the fp32 bits.
    values = np.array([1.0, -2.5, 3.140625, 0.0, -0.0, 1e-38, 3e38], dtype=np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2")
    header = json.dumps({"x": {"dtype": "BF16", "shape": [7], "data_offsets": [0, 14]}}).encode()
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bf16.tobytes())
    got = np.array(json.loads(run(st_tool, "dump", path))["tensors"]["x"]["f32"], dtype=np.float32)
    assert np.array_equal(got.view(np.uint32), bf16.astype(np.uint32) << 16)


def test_engine_files_load_in_package(tmp_path, st_tool):
    rng = np.random.default_rng(1)
    tensors = {
        "w": rng.standard_normal((4, 6)).astype(np.float32),
        "odd": rng.standard_normal(3).astype(np.float32),
        "h": rng.standard_normal((2, 2)).astype(np.float16),
        "codes": rng.integers(0, 256, 65, dtype=np.uint8),
    }
    src, dst = tmp_path / "in.safetensors", tmp_path / "out.safetensors"
    save_file(tensors, str(src), metadata={"k": "v"})
    run(st_tool, "roundtrip", src, dst)
    back = load_file(str(dst))
    assert set(back) == set(tensors)
    for name, value in tensors.items():
        assert back[name].dtype == value.dtype and np.array_equal(back[name], value)
    with safe_open(str(dst), framework="np") as f:
        assert f.metadata() == {"k": "v"}


def test_f16_conversion_matches_numpy(tmp_path, st_tool):
    rng = np.random.default_rng(2)
    # Random floats across the f16 range plus its edges: ties, subnormals, overflow.
    x = np.concatenate([
        (rng.standard_normal(5000) * np.exp2(rng.integers(-26, 17, 5000))).astype(np.float32),
        np.array([1 + 2.0**-11, 1 + 3 * 2.0**-11, 65504, 65519, 65520, 1e9, 2.0**-24, 2.0**-25,
                  3 * 2.0**-26, 2.0**-26, -0.0], dtype=np.float32),
    ])
    src, dst = tmp_path / "f32.safetensors", tmp_path / "f16.safetensors"
    save_file({"x": x}, str(src))
    run(st_tool, "convert", src, dst, "F16")
    got = load_file(str(dst))["x"]
    assert got.dtype == np.float16
    with np.errstate(over="ignore"):
        want = x.astype(np.float16)
    assert np.array_equal(got.view(np.uint16), want.view(np.uint16))


def test_damaged_file_error_names_file(tmp_path, st_tool):
    path = tmp_path / "cut.safetensors"
    save_file({"a": np.ones(10, dtype=np.float32)}, str(path))
    path.write_bytes(path.read_bytes()[:-4])
    r = subprocess.run([str(st_tool), "dump", str(path)], capture_output=True, text=True)
    assert r.returncode == 1
    assert f"{path}: tensor 'a': data_offsets [0, 40] run past the end of the data" in r.stderr


# ---- models: directory <-> .bitt ---------------------------------------------------------------

def param_table(cfg):
    """Tensor names and shapes of DESIGN.md §3, written out here independently of the engine.
    kind: "bit" for BitLinear (packed in .bitt files), "fp" otherwise."""
    V, D, L = cfg["vocab_size"], cfg["hidden_dim"], cfg["num_layers"]
    Dt, M, H = cfg["ttt_dim"], cfg["mlp_dim"], cfg.get("ttt_heads", 1)
    table = [("embed.weight", (V, D), "fp")]
    for i in range(L):
        p = f"layers.{i}."
        table.append((p + "norm1.weight", (D,), "fp"))
        if cfg.get("ttt_rule", "reconstruct") == "reconstruct":
            table += [(p + "ttt.down.weight", (Dt, D), "bit"), (p + "ttt.up.weight", (D, Dt), "bit")]
        else:
            table += [(p + f"ttt.{x}.weight", (Dt, D), "bit") for x in "qkv"]
            table += [(p + "ttt.o.weight", (D, Dt), "bit"), (p + "ttt.lr.weight", (H, D), "fp"),
                      (p + "ttt.lr.bias", (H,), "fp")]
        table += [(p + "norm2.weight", (D,), "fp"),
                  (p + "mlp.gate_proj.weight", (M, D), "bit"),
                  (p + "mlp.up_proj.weight", (M, D), "bit"),
                  (p + "mlp.down_proj.weight", (D, M), "bit")]
    table += [("norm_f.weight", (D,), "fp"), ("lm_head.weight", (V, D), "fp")]
    return table


def pad16(n):
    return (n + 15) // 16 * 16


def unpack_tq2(codes, rows, cols):
    """The packed layout of kernels/cpu/ternary.hpp: 64-byte blocks per (16-row group, 16-column
    block); byte r*4 + j of a block holds, in bits 2s..2s+1, the code (w + 1) of row r, column
    4s + j of the block."""
    flat = codes.reshape(-1)
    r = np.arange(rows)[:, None]
    c = np.arange(cols)[None, :]
    index = ((r // 16) * (pad16(cols) // 16) + c // 16) * 64 + (r % 16) * 4 + c % 4
    shift = 2 * ((c % 16) // 4)
    return ((flat[index] >> shift) & 3).astype(np.int8) - 1


def absmean_quantize(w):
    """§2.1: beta = mean|W|, q = clamp(round(W / (beta + 1e-8)), -1, 1), in NumPy."""
    beta = np.float32(np.abs(w.astype(np.float64)).mean())
    q = np.clip(np.rint(w / (beta + np.float32(1e-8))), -1, 1).astype(np.int8)
    return beta, q


CONFIGS = [
    {"vocab_size": 37, "hidden_dim": 20, "num_layers": 2, "ttt_dim": 8, "mlp_dim": 44},
    {"vocab_size": 33, "hidden_dim": 16, "num_layers": 1, "ttt_dim": 12, "mlp_dim": 24,
     "ttt_rule": "delta", "ttt_heads": 3},
]


def write_model_dir(path, cfg, seed):
    rng = np.random.default_rng(seed)
    master = {name: (rng.standard_normal(shape) * 0.05).astype(np.float32)
              for name, shape, _ in param_table(cfg)}
    path.mkdir()
    (path / "config.json").write_text(json.dumps(cfg))
    save_file(master, str(path / "model.safetensors"))
    tokenizer = {"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0, "\u00e9": 1}}}
    (path / "tokenizer.json").write_text(json.dumps(tokenizer))
    return master, tokenizer


@pytest.mark.parametrize("cfg", CONFIGS, ids=["reconstruct", "delta"])
def test_bitt_file_read_independently(tmp_path, st_tool, cfg):
    master, tokenizer = write_model_dir(tmp_path / "model", cfg, seed=3)
    bitt = tmp_path / "model.bitt"
    run(st_tool, "save-bitt", tmp_path / "model", bitt)

    raw = bitt.read_bytes()
    assert raw[:4] == b"BITT"
    (n,) = struct.unpack("<Q", raw[4:12])
    header = json.loads(raw[12:12 + n].decode("utf-8"))
    body_offset = 12 + n
    assert body_offset % 64 == 0
    body = raw[body_offset:]
    assert header["format_version"] == 1
    assert header["body_bytes"] == len(body)
    assert header["checksum"] == {"xxh3_64": f"{xxh3_64(body):016x}"}
    assert header["tokenizer"] == tokenizer
    assert {k: header["config"][k] for k in cfg} == cfg
    assert header["ternary"]["layout"] == "tq2_rg16"
    (bn,) = struct.unpack("<Q", body[:8])
    assert (body_offset + 8 + bn) % 64 == 0, "tensor data not 64-byte aligned"

    tensors = load(body)  # the body is a standard safetensors file
    table = param_table(cfg)
    expected = {name for name, _, _ in table} | {name + "_scale" for name, _, k in table if k == "bit"}
    assert set(tensors) == expected
    for name, shape, kind in table:
        if kind == "fp":
            assert np.array_equal(tensors[name], master[name]), name
            continue
        assert header["ternary"]["shapes"][name] == list(shape)
        codes = tensors[name]
        assert codes.dtype == np.uint8 and codes.shape == (pad16(shape[0]), pad16(shape[1]) // 4)
        beta, q = absmean_quantize(master[name])
        scale = tensors[name + "_scale"]
        assert scale.dtype == np.float32 and scale.shape == (1,)
        np.testing.assert_allclose(scale[0], beta, rtol=1e-6)
        assert np.array_equal(unpack_tq2(codes, *shape), q), name


@pytest.mark.parametrize("cfg", CONFIGS, ids=["reconstruct", "delta"])
def test_export_back_to_safetensors(tmp_path, st_tool, cfg):
    master, tokenizer = write_model_dir(tmp_path / "model", cfg, seed=4)
    bitt = tmp_path / "model.bitt"
    run(st_tool, "save-bitt", tmp_path / "model", bitt)
    run(st_tool, "export", bitt, tmp_path / "exported")

    exported = load_file(str(tmp_path / "exported" / "model.safetensors"))
    assert json.loads((tmp_path / "exported" / "tokenizer.json").read_text()) == tokenizer
    config = json.loads((tmp_path / "exported" / "config.json").read_text())
    assert {k: config[k] for k in cfg} == cfg
    for name, shape, kind in param_table(cfg):
        w = exported[name]
        assert w.shape == shape and w.dtype == np.float32
        if kind == "fp":
            assert np.array_equal(w, master[name])
            continue
        # Dequantized: sign pattern = the codes, magnitudes one float or two adjacent ones, and
        # NumPy's absmean quantization gives back the same codes and exactly the same scale.
        beta, q = absmean_quantize(master[name])
        beta2, q2 = absmean_quantize(w)
        assert np.array_equal(q2, q), name
        np.testing.assert_allclose(beta2, beta, rtol=1e-6)
        magnitudes = np.unique(np.abs(w[w != 0]))
        assert len(magnitudes) <= 2
        if len(magnitudes) == 2:
            assert np.nextafter(magnitudes[0], np.float32(np.inf)) == magnitudes[1]

    # Loading the exported directory gives the same model as the .bitt file.
    assert run(st_tool, "model-dump", tmp_path / "exported") == run(st_tool, "model-dump", bitt)
