"""Sort keys shared by the core modules: float32 values as unsigned integers that sort as
the values do, so that one integer sort orders pixels by (group, value)."""

from __future__ import annotations

import numpy as np


def sortable_bits(v32: np.ndarray) -> np.ndarray:
    """uint32 codes of float32 values (finite) that sort as the values do (IEEE 754 bits
    with the sign bit flipped for positives and every bit flipped for negatives)."""
    b = v32.view(np.uint32)
    return b ^ np.where(b >> np.uint32(31), np.uint32(0xFFFFFFFF), np.uint32(0x80000000))


def float_of_bits(packed: np.ndarray) -> np.ndarray:
    """float32 values back from the low 32 bits of ``packed`` (see :func:`sortable_bits`)."""
    b = (packed & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    b ^= np.where(b >> np.uint32(31), np.uint32(0x80000000), np.uint32(0xFFFFFFFF))
    return b.view(np.float32)
