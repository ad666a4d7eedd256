"""Compatibility module with the original Bit-TTT Python API (`cortex_rust`)."""
