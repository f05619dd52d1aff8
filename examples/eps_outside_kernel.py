"""A deliberate deviation: LayerNorm with eps outside the square root.

    y = gamma * (x - mean) / (sigma + eps) + beta        (spec NORM-4 requires 1 / sqrt(sigma^2 + eps))

Everything else is correct: two-pass statistics in float32 (float64 for float64
inputs), output rounded once to the input dtype, invalid configurations rejected.
The gate finds the deviation; examples/eps_outside_expectations.toml records it as a
known finding so that a gate can pass while it is being fixed. From the repository root:

    PYTHONPATH=examples normspec check eps_outside_kernel:EpsOutside          # exit 1
    PYTHONPATH=examples normspec check eps_outside_kernel:EpsOutside \\
        --expectations examples/eps_outside_expectations.toml                 # exit 0
"""
from __future__ import annotations

import numpy as np

from normspec.adapters import Capabilities, FunctionalAdapter


def layer_norm_eps_outside(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    if np.dtype(x.dtype).name not in ("float16", "bfloat16", "float32", "float64"):
        raise TypeError(f"x has dtype {x.dtype}; use float16, bfloat16, float32 or float64")
    shape = tuple(normalized_shape)
    if not shape or x.shape[x.ndim - len(shape):] != shape or len(shape) > x.ndim or x.size == 0:
        raise ValueError(f"normalized_shape={shape} is not the trailing dims of {x.shape}")
    if not np.isfinite(eps) or eps < 0:
        raise ValueError(f"eps={eps} must be finite and >= 0")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != shape:
            raise ValueError(f"{name} has shape {p.shape}, expected {shape}")
    compute = np.float64 if x.dtype == np.float64 else np.float32
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    with np.errstate(all="ignore"):
        xc = x.astype(compute)
        d = xc - xc.mean(axis=axes, keepdims=True)
        sigma = np.sqrt((d * d).mean(axis=axes, keepdims=True))
        sigma = np.where(np.isinf(sigma), np.nan, sigma)  # squares beyond the range: NaN, never beta (NUM-1.3)
        y = d / (sigma + compute(eps))  # the deviation: eps belongs inside the square root
        y = y if weight is None else y * weight.astype(compute)
        y = y if bias is None else y + bias.astype(compute)
    return y.astype(x.dtype)


class EpsOutside(FunctionalAdapter):
    id = "eps-outside"
    framework = "numpy"
    capabilities = Capabilities(ops=("layer_norm",))

    def layer_norm(self, x, *, normalized_shape, weight, bias, eps, device):
        return layer_norm_eps_outside(x, normalized_shape, weight, bias, eps)
