"""Shared fixtures: where the build lives (BITTTT_BUILD_DIR, set by `make test`)."""
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def build_dir() -> pathlib.Path:
    path = pathlib.Path(os.environ.get("BITTTT_BUILD_DIR", ROOT / "build"))
    if not (path / "bitttt").exists():
        pytest.fail(f"no build at {path}: run `make build` first (or set BITTTT_BUILD_DIR)")
    return path


@pytest.fixture(scope="session")
def bitttt_cli(build_dir) -> pathlib.Path:
    return build_dir / "bitttt"


@pytest.fixture(scope="session")
def libbitttt(build_dir) -> pathlib.Path:
    return build_dir / "libbitttt.so"


@pytest.fixture(scope="module")
def one_kernel_thread():
    """One kernel thread for a module of the Python API's tests (`pytestmark =
    pytest.mark.usefixtures("one_kernel_thread")`): their tiny shapes gain nothing from more, and
    on a busy machine the OpenMP barriers of oversubscribed threads cost seconds per test."""
    import bitttt

    bitttt.set_num_threads(1)
    yield
    bitttt.set_num_threads(0)
