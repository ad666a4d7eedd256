"""Bit-TTT engine: ternary BitNet b1.58 language models with Test-Time-Training layers."""
from bitttt._ext import cpu_isa, num_threads, set_num_threads, version

__version__ = version()
__all__ = ["cpu_isa", "num_threads", "set_num_threads", "version", "__version__"]
