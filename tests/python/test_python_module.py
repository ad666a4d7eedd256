"""The `bitttt` Python module: installed by `make test` (pip install .), thin over the C++ core."""
import bitttt
import pytest


def test_version_and_isa():
    assert bitttt.__version__ == bitttt.version()
    assert bitttt.__version__.count(".") == 2
    assert bitttt.cpu_isa() in {"scalar", "avx2", "avx512"}


def test_threads_setting_and_bad_values():
    before = bitttt.num_threads()
    bitttt.set_num_threads(1)
    assert bitttt.num_threads() == 1
    bitttt.set_num_threads(0)
    assert bitttt.num_threads() == before
    with pytest.raises(ValueError, match="out of range"):
        bitttt.set_num_threads(100000)
    with pytest.raises(TypeError):
        bitttt.set_num_threads("two")


def test_every_public_name_has_a_docstring():
    import cortex_rust

    missing = []
    for module in (bitttt, cortex_rust):
        for name in module.__all__:
            obj = getattr(module, name)
            if name.startswith("__"):
                continue
            if not (obj.__doc__ or "").strip():
                missing.append(f"{module.__name__}.{name}")
            if isinstance(obj, type):
                for attr, member in vars(obj).items():
                    if attr.startswith("_") or not callable(member) and not isinstance(member, property):
                        continue
                    if not (getattr(member, "__doc__", "") or "").strip():
                        missing.append(f"{module.__name__}.{name}.{attr}")
    assert missing == []


def test_type_stubs_are_shipped_and_describe_the_module():
    import ast
    import pathlib
    import re

    package = pathlib.Path(bitttt.__file__).parent
    assert (package / "py.typed").exists()
    stub = (package / "_ext.pyi").read_text()
    tree = ast.parse(stub)  # valid Python
    defined = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    public = {n for n in bitttt.__all__ if not n.startswith("__") and n != "train"}
    assert public <= defined
    assert re.search(r"def forward\(self, ids: (collections\.abc\.)?Sequence\[int\].*"
                     r"-> numpy\.typing\.NDArray\[numpy\.float32\]", stub)
    assert re.search(r"def generate\(self, prompt: str \| (collections\.abc\.)?Sequence\[int\]", stub)
