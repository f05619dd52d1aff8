"""Input checks every reference op runs first (spec section ERR).

Each check raises ConfigurationError naming the clause, the offending value and
the fix, so a bad configuration never surfaces as a traceback from deep inside.
"""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np

from normspec.errors import ConfigurationError

SUPPORTED_DTYPES = {
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
}


def input_array(x, name: str = "x") -> np.ndarray:
    """ERR-1.1: a floating array of a supported dtype, or an error naming the dtype."""
    array = np.asarray(x)
    if array.dtype not in SUPPORTED_DTYPES.values():
        raise ConfigurationError(
            "ERR-1.1",
            f"{name} has dtype {array.dtype}; normalization is defined for "
            f"{', '.join(SUPPORTED_DTYPES)}. Cast {name} to one of them.",
        )
    return array


def eps_value(eps) -> float:
    """ERR-1.3: eps is a finite number >= 0."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)):
        raise ConfigurationError("ERR-1.3", f"eps={eps!r} is not a number; pass a float >= 0.")
    if not math.isfinite(eps) or eps < 0:
        raise ConfigurationError("ERR-1.3", f"eps={eps!r} is not a finite value >= 0; pass eps >= 0.")
    return float(eps)


def momentum_value(momentum) -> float | None:
    """ERR-1.6: the new-batch weight alpha lies in [0, 1] (None: cumulative average)."""
    if momentum is None:
        return None
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float, np.floating)) or not 0 <= momentum <= 1:
        raise ConfigurationError(
            "ERR-1.6",
            f"momentum={momentum!r} is not a new-batch weight in [0, 1]; an old-value "
            f"weight m translates as alpha = 1 - m (BN-4.1).",
        )
    return float(momentum)


def channel_axis_index(x: np.ndarray, channel_axis: int, *, min_rank: int, max_rank: int, op: str) -> int:
    """ERR-1.7: rank within [min_rank, max_rank] and a channel axis inside it."""
    if not min_rank <= x.ndim <= max_rank:
        raise ConfigurationError(
            "ERR-1.7", f"{op} takes inputs of rank {min_rank} to {max_rank}; got shape {x.shape}."
        )
    if not -x.ndim <= channel_axis < x.ndim or channel_axis % x.ndim == 0:
        raise ConfigurationError(
            "ERR-1.7",
            f"channel_axis={channel_axis} is not a non-batch axis of an input of shape {x.shape}; "
            f"use 1 (channels first) or -1 (channels last).",
        )
    return channel_axis % x.ndim


def parameter(value, shape: tuple, name: str, op: str):
    """ERR-1.2: an affine parameter or running statistic has exactly the declared shape."""
    if value is None:
        return None
    array = input_array(value, name)
    if array.shape != tuple(shape):
        raise ConfigurationError(
            "ERR-1.2", f"{op}: {name} has shape {array.shape}, but the input needs shape {tuple(shape)}."
        )
    return array.astype(np.float64)


def normalized_shape_value(x: np.ndarray, normalized_shape, op: str) -> tuple:
    """ERR-1.5: normalized_shape equals the trailing dimensions of x."""
    shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
    k = len(shape)
    if k == 0 or k > x.ndim or tuple(x.shape[x.ndim - k:]) != shape:
        raise ConfigurationError(
            "ERR-1.5",
            f"{op}: normalized_shape={shape} is not the trailing dimensions of an input of shape {x.shape}.",
        )
    return shape


def nonempty(reduction_length: int, op: str, shape: tuple) -> None:
    """ERR-1.9: every slice has at least one element, and there is at least one slice."""
    if reduction_length < 1 or 0 in shape:
        raise ConfigurationError("ERR-1.9", f"{op}: input of shape {shape} has an empty slice or no slices.")


def rounded(values: np.ndarray, dtype, exact: bool) -> np.ndarray:
    """NUM-2.2: results come in `dtype` (the input's, or the running statistics' own);
    exact=True keeps the float64 oracle values."""
    with np.errstate(over="ignore"):  # beyond the dtype's range, values round to infinity
        return values if exact else values.astype(dtype)


def trailing_arguments(x, normalized_shape, weight, bias, eps, op: str):
    """The checked arguments of an op over the trailing axes (LayerNorm, RMSNorm):
    x as an array, normalized_shape as a tuple (ERR-1.5), eps (ERR-1.3), then weight and
    bias of that shape (ERR-1.2), checked in that order."""
    x = input_array(x)
    shape = normalized_shape_value(x, normalized_shape, op)
    eps = eps_value(eps)
    return x, shape, parameter(weight, shape, "weight", op), parameter(bias, shape, "bias", op), eps
