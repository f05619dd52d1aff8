"""The dtypes the spec covers, by name, and their NumPy dtypes (bfloat16 from ml_dtypes)."""
from __future__ import annotations

import ml_dtypes
import numpy as np

DTYPES = ("float16", "bfloat16", "float32", "float64")
HALF_DTYPES = ("float16", "bfloat16")
# The (input, parameter) dtype pairs of mixed precision that NUM-2.3 defines.
MIXED_PRECISION = (("float16", "float32"), ("bfloat16", "float32"))


def numpy_dtype(name: str) -> np.dtype:
    """The NumPy dtype of a dtype name in DTYPES ("bfloat16": ml_dtypes.bfloat16)."""
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


def dtype_name(dtype) -> str:
    """The name in DTYPES of a NumPy dtype (or a dtype-like such as ml_dtypes.bfloat16)."""
    return np.dtype(dtype).name


def numpy_spelling(name: str) -> str:
    """How Python source spells the dtype `name` (for reproduction snippets)."""
    return "ml_dtypes.bfloat16" if name == "bfloat16" else f"np.{name}"
