"""The error model of spec NUM-1: every tolerance in normspec comes from here.

The bound for one output element depends on the unit roundoff of the compute
precision (u), of the output dtype (u_out), the reduction length n, the slice's
conditioning kappa and the exact values x_hat, gamma, beta, y (NUM-1.1). No test
carries a tolerance of its own.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

from normspec.reference import Steps

_FLOAT32_U = 2.0**-24


def unit_roundoff(dtype) -> float:
    """Half the distance from 1 to the next representable number."""
    return float(ml_dtypes.finfo(np.dtype(dtype)).eps) / 2


def compute_roundoff(input_dtype) -> float:
    """NUM-2.1: float16/bfloat16 inputs are computed in (at least) float32."""
    return max(unit_roundoff(np.float64), min(unit_roundoff(input_dtype), _FLOAT32_U))


def statistics_error(n: int, u: float, *, exact_statistics: bool) -> float:
    """epsilon_stat of NUM-1.1 and NUM-1.4: the relative budget for reduced quantities."""
    return 4 * u if exact_statistics else (n + 4) * u


def output_bound(steps: Steps, output: np.ndarray, weight, bias, *, input_dtype,
                 exact_statistics: bool = False) -> np.ndarray:
    """NUM-1.1: the largest error allowed for each output element.

    `steps` and `output` are the reference's float64 values (exact=True) in the
    input's layout; `weight` and `bias` broadcast against them (None: absent).
    """
    u = compute_roundoff(input_dtype)
    u_out = unit_roundoff(input_dtype)
    tiny_out = float(ml_dtypes.finfo(np.dtype(input_dtype)).smallest_subnormal)
    eps_stat = statistics_error(steps.reduction_length, u, exact_statistics=exact_statistics)
    kappa = steps.conditioning
    x_hat = np.abs(steps.normalized)
    error_x_hat = eps_stat * kappa + x_hat * (0.5 * eps_stat * (1 + kappa) + 3 * u)
    gamma = 1.0 if weight is None else np.abs(weight)
    beta = 0.0 if bias is None else np.abs(bias)
    with np.errstate(invalid="ignore", over="ignore"):
        return gamma * error_x_hat + 2 * u * (gamma * x_hat + beta) + u_out * np.abs(output) + tiny_out / 2


def running_bound(*, alpha: float, old, batch_statistic, new, batch_error, input_dtype) -> np.ndarray:
    """NUM-1.5: the error allowed in a running statistic after one training step.

    `batch_error` is the allowed error of the batch statistic (delta_s).
    """
    u = compute_roundoff(input_dtype)
    u_out = unit_roundoff(input_dtype)
    return (alpha * batch_error + 3 * u * (np.abs((1 - alpha) * old) + np.abs(alpha * batch_statistic))
            + u_out * np.abs(new))


def batch_statistic_errors(steps: Steps, *, input_dtype, exact_statistics: bool = False):
    """delta_mu and delta_sigma^2 of NUM-1.5 for per-slice Steps (rows = slices)."""
    u = compute_roundoff(input_dtype)
    eps_stat = statistics_error(steps.reduction_length, u, exact_statistics=exact_statistics)
    kappa = steps.conditioning
    spread = 1.0 / steps.inverse_std
    return eps_stat * kappa * spread, (eps_stat * (1 + kappa) + 2 * u)


# The reference itself (reference/_steps.py) forms centred values from a two-part mean,
# so each normalized value is within a few roundings of exact whatever the conditioning:
# measured at most 3 ulps of max(|x_hat|, 1) on offsets up to 1e12 times the spread.
# 8 ulps (16 u) leaves room for the affine step's two roundings.
REFERENCE_ULPS = 8


def reference_bound(normalized, weight, bias) -> np.ndarray:
    """How far the float64 reference may be from the exact value (tests/test_reference.py)."""
    u = unit_roundoff(np.float64)
    gamma = 1.0 if weight is None else np.abs(weight)
    beta = 0.0 if bias is None else np.abs(bias)
    return 2 * REFERENCE_ULPS * u * (gamma * (1 + np.abs(normalized)) + beta)
