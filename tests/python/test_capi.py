"""The C ABI through ctypes: the seed's example (examples/python_inference.py) and misuse."""
import ctypes
import importlib.util
import math
import os
import random
import subprocess
import sys

import pytest

from conftest import ROOT

EXAMPLE = ROOT / "examples" / "python_inference.py"

OK, NULL_POINTER, DIMENSION_MISMATCH, INVALID_ARGUMENT, INVALID_HANDLE = 0, 1, 2, 3, 4


def load_example_module():
    spec = importlib.util.spec_from_file_location("python_inference", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lib(libbitttt):
    return load_example_module().load_library(str(libbitttt))


def floats(values):
    return (ctypes.c_float * len(values))(*values)


def random_floats(n, seed):
    rng = random.Random(seed)
    return floats([rng.gauss(0.0, 1.0) for _ in range(n)])


def last_error(lib):
    return lib.bitttt_last_error().decode()


def state_of(lib, model):
    n = lib.ttt_state_size(model)
    buf = (ctypes.c_float * n)()
    assert lib.ttt_get_state(model, buf, n) == OK
    return list(buf)


def test_example_prints_what_the_seed_showed(libbitttt):
    env = dict(os.environ, BITTTT_LIB=str(libbitttt))
    r = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Input: 10 tokens x 64 dims" in r.stdout
    assert "Output Shape: 640 floats" in r.stdout
    assert "Forward time: " in r.stdout and " ms" in r.stdout
    assert "TTT state changed: yes" in r.stdout
    # ||W|| went from 0 to something positive.
    line = next(l for l in r.stdout.splitlines() if l.startswith("TTT state changed"))
    after = float(line.split("->")[1].split(",")[0])
    assert after > 0.0


def test_example_takes_the_library_path_as_argument(libbitttt):
    r = subprocess.run([sys.executable, str(EXAMPLE), str(libbitttt)], capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, BITTTT_LIB="/nonexistent.so"))
    assert r.returncode == 0, r.stderr
    assert "Output Shape: 640 floats" in r.stdout


def test_first_token_gives_the_closed_form_state(lib):
    # W0 = 0, so after one token W = eta f_hat f_hat^T: symmetric, rank one, trace eta ||f_hat||^2.
    model = lib.ttt_create(64, 0.25)
    try:
        x = random_floats(64, 1)
        y = (ctypes.c_float * 64)()
        assert lib.ttt_forward(model, x, 1, y) == OK
        assert all(v == 0.0 for v in y)  # z0 = W0 f_hat = 0, and up(0) = 0
        w = state_of(lib, model)
        dt = 16
        assert math.isclose(sum(w[i * dt + i] for i in range(dt)), 0.25, rel_tol=1e-4)
        for i in range(dt):
            for j in range(dt):
                assert math.isclose(w[i * dt + j], w[j * dt + i], abs_tol=1e-7)
                # rank one: w_ij^2 = w_ii w_jj
                assert math.isclose(w[i * dt + j] ** 2, w[i * dt + i] * w[j * dt + j], abs_tol=1e-7)
    finally:
        lib.ttt_destroy(model)


def test_version_and_status_names(lib):
    assert lib.bitttt_version().decode().count(".") == 2
    lib.bitttt_status_name.restype = ctypes.c_char_p
    lib.bitttt_status_name.argtypes = [ctypes.c_int]
    assert lib.bitttt_status_name(99) == b"BITTTT_PANIC"
    lib.bitttt_selftest_exception.argtypes = [ctypes.c_int]
    assert lib.bitttt_selftest_exception(1) == 99
    assert "internal error" in last_error(lib)


@pytest.mark.parametrize("dim,lr", [(0, 0.1), (63, 0.1), (2**64 - 1, 0.1), (64, float("nan")),
                                    (64, float("inf")), (64, -0.1), (64, 3.0)])
def test_create_rejects_bad_arguments(lib, dim, lr):
    assert lib.ttt_create(dim, lr) is None
    assert last_error(lib).startswith("ttt_create: ")


def test_misuse_returns_codes(lib):
    model = lib.ttt_create(64, 0.1)
    assert model
    x = random_floats(640, 2)
    y = (ctypes.c_float * 640)()
    try:
        assert lib.ttt_forward(None, x, 10, y) == NULL_POINTER
        assert lib.ttt_forward(model, None, 10, y) == NULL_POINTER
        assert lib.ttt_forward(model, x, 10, None) == NULL_POINTER
        assert lib.ttt_forward(model, x, 0, y) == DIMENSION_MISMATCH
        assert lib.ttt_forward(model, x, 2**64 - 1, y) == DIMENSION_MISMATCH
        assert lib.ttt_forward(model, x, 2**62, y) == DIMENSION_MISMATCH
        n = lib.ttt_state_size(model)
        assert n == 256
        buf = (ctypes.c_float * n)()
        assert lib.ttt_get_state(model, buf, n + 1) == DIMENSION_MISMATCH
        assert lib.ttt_set_state(model, buf, 0) == DIMENSION_MISMATCH
        assert lib.ttt_forward(12345, x, 10, y) == INVALID_HANDLE
        assert lib.ttt_reset(ctypes.addressof(x)) == INVALID_HANDLE
        lib.ttt_destroy(ctypes.addressof(y))  # not a handle: ignored, nothing freed
        assert "not a live" in last_error(lib)
    finally:
        lib.ttt_destroy(model)
    assert lib.ttt_forward(model, x, 10, y) == INVALID_HANDLE  # use after destroy
    assert lib.ttt_state_size(model) == 0
    lib.ttt_destroy(model)  # double destroy: ignored


def test_nan_and_inf_are_rejected_and_leave_the_state(lib):
    model = lib.ttt_create(64, 0.1)
    try:
        x = random_floats(640, 3)
        y = (ctypes.c_float * 640)()
        assert lib.ttt_forward(model, x, 10, y) == OK
        before = state_of(lib, model)
        out_before = list(y)
        for bad in (float("nan"), float("inf"), float("-inf")):
            x[639] = bad
            assert lib.ttt_forward(model, x, 10, y) == INVALID_ARGUMENT
            assert "NaN or Inf" in last_error(lib)
            assert state_of(lib, model) == before
            assert list(y) == out_before
        w = floats(before)
        w[5] = float("nan")
        assert lib.ttt_set_state(model, w, len(before)) == INVALID_ARGUMENT
        assert state_of(lib, model) == before
    finally:
        lib.ttt_destroy(model)


def test_state_round_trip_and_reset(lib):
    a, b = lib.ttt_create(128, 0.1), lib.ttt_create(128, 0.1)
    try:
        x = random_floats(20 * 128, 4)
        ya, yb = (ctypes.c_float * (20 * 128))(), (ctypes.c_float * (20 * 128))()
        assert lib.ttt_forward(a, x, 20, ya) == OK
        w = state_of(lib, a)
        assert any(v != 0.0 for v in w)
        assert lib.ttt_set_state(b, floats(w), len(w)) == OK
        assert lib.ttt_forward(a, x, 20, ya) == OK
        assert lib.ttt_forward(b, x, 20, yb) == OK
        assert list(ya) == list(yb)
        assert lib.ttt_reset(a) == OK
        assert all(v == 0.0 for v in state_of(lib, a))
    finally:
        lib.ttt_destroy(a)
        lib.ttt_destroy(b)


def test_demo_shows_the_memory_effect(bitttt_cli):
    # `make run` runs this until a trained model ships: it must show the memory effect and finish
    # in a few seconds.
    r = subprocess.run([str(bitttt_cli), "demo"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    means = {}
    for line in r.stdout.splitlines():
        if " mean " in line:
            label, rest = line.split(" mean ")
            means[label.strip()] = float(rest.split()[0])
    assert means["pass 1 (new to W)"] > 0.9  # W = 0 knows nothing: error ~1
    assert means["pass 2 (same sequence)"] < 0.3 * means["pass 1 (new to W)"]
    assert means["a fresh random sequence"] > 0.8  # the memory is of this sequence
    assert means["after reset()"] == means["pass 1 (new to W)"]
    assert means["set_state(W after pass 2)"] < means["pass 2 (same sequence)"]
    assert "M tokens/s" in r.stdout
    assert "kernels: " in r.stdout
