"""A kernel author's normalization layers, checked by normspec as a third-party adapter.

This file stands for code that lives outside normspec: a float32 normalization
kernel (written here in NumPy so it runs anywhere) that computes its statistics
with Welford's triples (count, mean, M2) merged pairwise by the formula of Chan,
Golub and LeVeque, the way a GPU kernel reduces a row across threads. It does
not call normspec's reference; normspec only drives it and judges the results.

Its profile (spec GEN-4), declared in `conventions`:

- channels last: BatchNorm/GroupNorm/InstanceNorm inputs are (N, ..., C);
- momentum weights the old value: running <- m * running + (1 - m) * batch;
- biased running variance (BN-4.4): the batch variance fed to the update is M2 / m.

Every input is computed in float32: float16 and bfloat16 inputs accumulate in float32
(spec NUM-2.1) and the output is rounded once to the input dtype (NUM-2.2). There is no
float64 path, so `capabilities` declares float16, bfloat16 and float32 only, and
InstanceNorm keeps no running statistics (capabilities.instance_norm_running_stats=False).

Check it from the repository root (the `normspec` command does not add the current
directory to the import path, hence PYTHONPATH):

    PYTHONPATH=examples normspec check welford_kernel:WelfordKernel
"""
from __future__ import annotations

from importlib.metadata import version

import numpy as np

from normspec.adapters import Capabilities, Conventions, FunctionalAdapter

_FLOAT_DTYPES = ("float16", "bfloat16", "float32")  # a float32 kernel: no float64 path


# --- the kernel: statistics, normalization, validation ----------------------------------

def _compute_dtype(x):
    if x.dtype.name not in _FLOAT_DTYPES:  # no implicit conversion of other dtypes (spec ERR-1.1)
        raise TypeError(f"welford: dtype {x.dtype} not supported; use one of {', '.join(_FLOAT_DTYPES)}")
    return np.float32


def _moments(rows):
    """Mean and biased variance of each row of `rows` (S, n): every element starts as a
    Welford triple (count 1, mean x, M2 0); neighbouring triples merge with Chan's formula
    until one is left (an odd last triple waits for the next level)."""
    count = np.ones(rows.shape[1], rows.dtype)
    mean, m2 = rows, np.zeros_like(rows)
    while mean.shape[1] > 1:
        pairs = 2 * (mean.shape[1] // 2)
        na, nb = count[0:pairs:2], count[1:pairs:2]
        delta = mean[:, 1:pairs:2] - mean[:, 0:pairs:2]
        merged = na + nb
        merged_mean = mean[:, 0:pairs:2] + delta * (nb / merged)
        # Welford's M2 update, delta * (x - new mean), for a block: = delta^2 * na * nb / merged
        merged_m2 = m2[:, 0:pairs:2] + m2[:, 1:pairs:2] + delta * (mean[:, 1:pairs:2] - merged_mean) * nb
        count = np.concatenate([merged, count[pairs:]])
        mean = np.concatenate([merged_mean, mean[:, pairs:]], axis=1)
        m2 = np.concatenate([merged_m2, m2[:, pairs:]], axis=1)
    variance = m2[:, 0] / count[0]
    # Squares beyond the compute dtype's range: NaN, never the beta that 1/sqrt(Inf) = 0 gives (NUM-1.3).
    return mean[:, 0], np.where(np.isinf(variance), np.nan, variance)


def _normalize(rows, mean, var, eps):
    """(rows - mean) / sqrt(var + eps), eps inside the square root (spec NORM-4)."""
    inverse_std = 1 / np.sqrt(var + eps)
    return (rows - mean[:, None]) * inverse_std[:, None]


def _affine(y, weight, bias, shape, compute):
    """y * weight + bias; parameters must have exactly `shape` (spec ERR-1.2)."""
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and tuple(p.shape) != tuple(shape):
            raise ValueError(f"welford: {name} has shape {p.shape}, expected {tuple(shape)}")
    y = y if weight is None else y * weight.astype(compute)
    return y if bias is None else y + bias.astype(compute)


def _check(eps, momentum=0.0):
    if not np.isfinite(eps) or eps < 0:
        raise ValueError(f"welford: eps={eps} must be finite and >= 0")
    if momentum is None or not 0 <= momentum <= 1:
        raise ValueError(f"welford: momentum={momentum} must be in [0, 1] (it weights the old value)")


def _trailing_rows(x, normalized_shape, eps):
    """LayerNorm/RMSNorm: the compute dtype, the normalized shape and x as rows (one per
    slice) in the compute dtype, after the argument checks."""
    compute, shape = _compute_dtype(x), tuple(normalized_shape)
    _check(eps)
    if not shape or len(shape) > x.ndim or x.shape[x.ndim - len(shape):] != shape or x.size == 0:
        raise ValueError(f"welford: normalized_shape={shape} is not the trailing dims of {x.shape}")
    return compute, shape, x.astype(compute).reshape(-1, int(np.prod(shape)))


def _channels_last(x, ranks):
    if not ranks[0] <= x.ndim <= ranks[1] or x.size == 0:
        raise ValueError(f"welford: input of shape {x.shape} must have rank {ranks[0]} to {ranks[1]}, no empty axis")
    return x.shape[-1]


# --- the adapter: normspec's interface around the kernel -------------------------------

class WelfordKernel(FunctionalAdapter):
    id = "welford-kernel"
    framework = "numpy"  # the distribution whose version the report records
    conventions = Conventions(channel_axis=-1, momentum_weights="old_value", running_var_estimator="biased",
                              default_eps={op: 1e-5 for op in ("batch_norm", "layer_norm", "group_norm",
                                                                "instance_norm", "rms_norm")})
    capabilities = Capabilities(dtypes=_FLOAT_DTYPES, devices=("cpu",), cumulative_average=False,
                                instance_norm_running_stats=False)

    def framework_version(self):
        return f"welford-kernel 1.0 (numpy {version('numpy')})"

    def layer_norm(self, x, *, normalized_shape, weight, bias, eps, device):
        compute, shape, rows = _trailing_rows(x, normalized_shape, eps)
        with np.errstate(all="ignore"):
            y = _normalize(rows, *_moments(rows), eps).reshape(x.shape)
            return _affine(y, weight, bias, shape, compute).astype(x.dtype)

    def rms_norm(self, x, *, normalized_shape, weight, eps, device):
        compute, shape, rows = _trailing_rows(x, normalized_shape, eps)
        with np.errstate(all="ignore"):
            mean_square = np.sum(rows * rows, axis=1) / rows.shape[1]  # pairwise sum in the compute dtype
            mean_square = np.where(np.isinf(mean_square), np.nan, mean_square)  # NUM-1.3 (and NUM-4.2)
            y = (rows / np.sqrt(mean_square + eps)[:, None]).reshape(x.shape)
            return _affine(y, weight, None, shape, compute).astype(x.dtype)

    def group_norm(self, x, *, num_groups, weight, bias, eps, device):
        compute, channels = _compute_dtype(x), _channels_last(x, (2, 5))
        _check(eps)
        if not isinstance(num_groups, (int, np.integer)) or num_groups < 1 or channels % num_groups:
            raise ValueError(f"welford: num_groups={num_groups} must divide the {channels} channels")
        n, per_group = x.shape[0], channels // num_groups
        # (N, S, G, C/G) -> (N, G, S, C/G): one row per (sample, group)
        grouped = x.astype(compute).reshape(n, -1, num_groups, per_group).transpose(0, 2, 1, 3)
        rows = grouped.reshape(n * num_groups, -1)
        with np.errstate(all="ignore"):
            y = _normalize(rows, *_moments(rows), eps).reshape(grouped.shape).transpose(0, 2, 1, 3)
            return _affine(y.reshape(x.shape), weight, bias, (channels,), compute).astype(x.dtype)

    def instance_norm(self, x, *, weight, bias, running_mean, running_var, training, momentum, eps, device):
        compute, channels = _compute_dtype(x), _channels_last(x, (3, 5))
        _check(eps, momentum)
        # (N, S, C) -> (N, C, S): one row per (sample, channel); no running statistics kept
        spread = x.astype(compute).reshape(x.shape[0], -1, channels).transpose(0, 2, 1)
        rows = spread.reshape(-1, spread.shape[2])
        with np.errstate(all="ignore"):
            y = _normalize(rows, *_moments(rows), eps).reshape(spread.shape).transpose(0, 2, 1)
            return _affine(y.reshape(x.shape), weight, bias, (channels,), compute).astype(x.dtype), None, None

    def batch_norm(self, x, *, weight, bias, running_mean, running_var, training, momentum, eps,
                   num_batches_tracked, device):
        compute, channels = _compute_dtype(x), _channels_last(x, (2, 5))
        _check(eps, momentum)
        for name, stat in (("running_mean", running_mean), ("running_var", running_var)):
            if stat is None or stat.shape != (channels,):
                raise ValueError(f"welford: {name} must have shape ({channels},)")
        rows = x.astype(compute).reshape(-1, channels).T  # one row per channel
        with np.errstate(all="ignore"):
            if training:
                mean, var = _moments(rows)
                running_mean = (momentum * running_mean.astype(compute)
                                + (1 - momentum) * mean).astype(running_mean.dtype)
                running_var = (momentum * running_var.astype(compute)
                               + (1 - momentum) * var).astype(running_var.dtype)  # biased: M2 / m
            else:
                mean, var = running_mean.astype(compute), running_var.astype(compute)
            y = _normalize(rows, mean, var, eps).T.reshape(x.shape)
            return _affine(y, weight, bias, (channels,), compute).astype(x.dtype), running_mean, running_var
