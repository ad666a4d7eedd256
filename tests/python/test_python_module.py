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
