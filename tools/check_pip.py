"""Exit 0 when every named PyPI package is importable-installed, 1 otherwise (used by `make deps`)."""
import importlib.metadata
import sys

missing = []
for name in sys.argv[1:]:
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        missing.append(name)
if missing:
    print("deps: installing pip packages:", " ".join(missing))
sys.exit(1 if missing else 0)
