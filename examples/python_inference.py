#!/usr/bin/env python3
"""The original Bit-TTT C-ABI example, through ctypes: one TTT layer (D=64) reads 10 tokens.

Usage: python3 examples/python_inference.py [path/to/libbitttt.so]
The library path comes from the first argument, else $BITTTT_LIB, else ./build/libbitttt.so.
"""
import ctypes
import math
import os
import random
import sys
import time

HIDDEN_DIM = 64
SEQ_LEN = 10
INNER_LR = 0.1


def load_library(path):
    lib = ctypes.CDLL(path)
    lib.bitttt_version.restype = ctypes.c_char_p
    lib.bitttt_version.argtypes = []
    lib.bitttt_last_error.restype = ctypes.c_char_p
    lib.bitttt_last_error.argtypes = []
    lib.ttt_create.restype = ctypes.c_void_p
    lib.ttt_create.argtypes = [ctypes.c_size_t, ctypes.c_float]
    lib.ttt_forward.restype = ctypes.c_int
    lib.ttt_forward.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t,
                                ctypes.POINTER(ctypes.c_float)]
    lib.ttt_destroy.restype = None
    lib.ttt_destroy.argtypes = [ctypes.c_void_p]
    lib.ttt_reset.restype = ctypes.c_int
    lib.ttt_reset.argtypes = [ctypes.c_void_p]
    lib.ttt_state_size.restype = ctypes.c_size_t
    lib.ttt_state_size.argtypes = [ctypes.c_void_p]
    lib.ttt_get_state.restype = ctypes.c_int
    lib.ttt_get_state.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t]
    lib.ttt_set_state.restype = ctypes.c_int
    lib.ttt_set_state.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t]
    return lib


def library_path():
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.environ.get("BITTTT_LIB", os.path.join(".", "build", "libbitttt.so"))


def get_state(lib, model):
    n = lib.ttt_state_size(model)
    state = (ctypes.c_float * n)()
    if lib.ttt_get_state(model, state, n) != 0:
        raise RuntimeError(lib.bitttt_last_error().decode())
    return list(state)


def main():
    path = library_path()
    lib = load_library(path)
    print(f"Bit-TTT C ABI via ctypes: {path} (version {lib.bitttt_version().decode()})")

    model = lib.ttt_create(HIDDEN_DIM, INNER_LR)
    if not model:
        print(f"ttt_create failed: {lib.bitttt_last_error().decode()}", file=sys.stderr)
        return 1
    try:
        print(f"Model created: hidden_dim={HIDDEN_DIM}, ttt_dim={HIDDEN_DIM // 4}, inner_lr={INNER_LR}")
        rng = random.Random(42)
        n = SEQ_LEN * HIDDEN_DIM
        inputs = (ctypes.c_float * n)(*[rng.gauss(0.0, 1.0) for _ in range(n)])
        outputs = (ctypes.c_float * n)()
        print(f"Input: {SEQ_LEN} tokens x {HIDDEN_DIM} dims")

        before = get_state(lib, model)
        start = time.perf_counter()
        status = lib.ttt_forward(model, inputs, SEQ_LEN, outputs)
        elapsed = time.perf_counter() - start
        if status != 0:
            print(f"ttt_forward failed ({status}): {lib.bitttt_last_error().decode()}", file=sys.stderr)
            return 1
        after = get_state(lib, model)

        print(f"Output Shape: {len(outputs)} floats")
        print(f"Forward time: {elapsed * 1e3:.3f} ms ({SEQ_LEN / elapsed:,.0f} tokens/s)")
        # Token 0's output is 0: W starts at 0, so z_0 = W f_hat = 0. The last token's is not.
        last = outputs[(SEQ_LEN - 1) * HIDDEN_DIM:(SEQ_LEN - 1) * HIDDEN_DIM + 4]
        print(f"Last token, first outputs: {[round(v, 4) for v in last]}")
        norm_before = math.sqrt(sum(v * v for v in before))
        norm_after = math.sqrt(sum(v * v for v in after))
        changed = any(a != b for a, b in zip(before, after))
        print(f"TTT state changed: {'yes' if changed else 'NO'} "
              f"(||W|| {norm_before:.4f} -> {norm_after:.4f}, {len(after)} floats)")
        finite = all(math.isfinite(v) for v in outputs)
        return 0 if changed and finite else 1
    finally:
        lib.ttt_destroy(model)


if __name__ == "__main__":
    sys.exit(main())
