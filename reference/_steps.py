"""The named steps every normalization shares (spec clauses NORM-1 .. NORM-6).

Each op file reshapes its input into *slices*: a 2-D float64 array of shape
(S, n) whose rows are the sets the statistics are taken over, calls
`normalize_slices`, and maps the result back. The names below are the names
of the steps in spec/normalization.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Steps:
    """The intermediate values of one normalization, per slice (S, 1) or per element (S, n).

    `conditioning` is kappa = mean(|x|) / sqrt(variance + eps) of each slice, the
    amplification factor of rounding errors in the mean (spec NUM-1.2); 0 for RMSNorm.
    """

    reduction_length: int
    mean: np.ndarray | None  # None for RMSNorm, which does not centre
    variance: np.ndarray  # population variance, or mean square for RMSNorm
    inverse_std: np.ndarray
    normalized: np.ndarray
    conditioning: np.ndarray

    def per_element(self, to_input) -> "Steps":
        """These steps with each per-slice value spread over its slice (S, n), then
        mapped to the input's layout by `to_input`."""
        full = self.normalized.shape

        def spread(a):
            return None if a is None else to_input(np.broadcast_to(a, full))

        return Steps(self.reduction_length, spread(self.mean), spread(self.variance),
                     spread(self.inverse_std), spread(self.normalized), spread(self.conditioning))


def normalize_slices(slices: np.ndarray, eps: float, *, center: bool = True) -> Steps:
    """Normalize each row of `slices` (float64, shape (S, n)) as NORM-1 .. NORM-5 define."""
    n = slices.shape[1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        magnitude = np.abs(slices).mean(axis=1, keepdims=True)
        if center:
            # The mean is kept as two parts (first + residual_mean), and the centred
            # values are formed from the parts, so that a large common offset costs no
            # accuracy: the oracle stays accurate on ill-conditioned inputs.
            first = slices.mean(axis=1, keepdims=True)
            residual = slices - first
            residual_mean = residual.mean(axis=1, keepdims=True)
            mean = first + residual_mean  # NORM-1
            centred = residual - residual_mean  # NORM-2
        else:
            mean, centred = None, slices
        # Squares are formed of values scaled by the slice's largest magnitude, so that
        # float64 inputs near the top of the range do not overflow (NUM-1.3).
        # (Only ever scaled down: scaling tiny values up would overflow eps / scale^2, and
        # their squares are negligible beside eps > 0 anyway; with eps = 0 any scale is safe.)
        scale = np.max(np.abs(centred), axis=1, keepdims=True)
        scale = np.where((scale > 0) & np.isfinite(scale), scale, 1.0)
        scale = scale if eps == 0 else np.maximum(scale, 1.0)
        scaled = centred / scale
        scaled_variance = np.mean(scaled * scaled, axis=1, keepdims=True)
        variance = scaled_variance * scale * scale  # NORM-3 (RMS-2: the mean square)
        root = np.sqrt(scaled_variance + eps / (scale * scale))
        inverse_std = 1.0 / (root * scale)  # NORM-4: eps inside the square root
        normalized = scaled / root  # NORM-5
        # Without centring there is no cancellation, so nothing amplifies rounding errors.
        conditioning = magnitude / (root * scale) if center else np.zeros_like(inverse_std)
    return Steps(n, mean, variance, inverse_std, normalized, conditioning)


def affine(normalized: np.ndarray, weight, bias, axis: int | None = None) -> np.ndarray:
    """NORM-6: y = gamma * normalized + beta (gamma = 1 and beta = 0 when absent).

    With `axis`, gamma and beta are per-channel vectors along that axis of
    `normalized`; otherwise they broadcast against its trailing dimensions.
    """
    def along(p):
        if p is None or axis is None:
            return p
        shape = [1] * normalized.ndim
        shape[axis] = -1
        return p.reshape(shape)

    with np.errstate(invalid="ignore"):  # 0 * Inf and Inf - Inf are NaN as IEEE 754 evaluates them (NUM-4.3)
        output = normalized if weight is None else normalized * along(weight)
        return output if bias is None else output + along(bias)


def trailing_slices(x: np.ndarray, shape: tuple):
    """Slices of LayerNorm and RMSNorm (LN-2, RMS-2): one per leading index, over the trailing
    axes of `shape`, as float64 rows; and the map back to the input layout."""
    return x.astype(np.float64).reshape(-1, int(np.prod(shape))), lambda a: a.reshape(x.shape)


def channel_slices(x: np.ndarray, axis: int, per_slice_channels: int | None = None):
    """Slices of a channel-axis op and the map back to the input layout.

    The channel axis is moved to position 1 ((N, C, ...) order). Each slice holds
    `per_slice_channels` consecutive channels of one sample and all their spatial
    positions (GroupNorm, InstanceNorm); with None, a slice is one channel over the
    whole batch (BatchNorm).
    """
    moved = np.moveaxis(x, axis, 1)
    if per_slice_channels is None:
        channel_major = np.moveaxis(moved, 1, 0)
        slices = channel_major.reshape(moved.shape[1], -1)

        def to_input(a):
            return np.moveaxis(a.reshape(channel_major.shape), 0, axis)
    else:
        slices = moved.reshape(moved.shape[0] * (moved.shape[1] // per_slice_channels), -1)

        def to_input(a):
            return np.moveaxis(a.reshape(moved.shape), 1, axis)
    return slices, to_input
