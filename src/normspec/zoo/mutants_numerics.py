"""Mutants of the numerics: eps, variance, precision, dtypes, degenerate inputs and
blocked ("kernel-style") reductions."""
from __future__ import annotations

import ml_dtypes
import numpy as np

from normspec.dtypes import HALF_DTYPES

from ._base import NUMERIC, Mutant, ops

_HALF = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))
BLOCK = 64


# ---------------------------------------------------------------- eps and variance

class EpsOutsideSqrt(Mutant):
    """1 / (sqrt(var) + eps): eps added to the standard deviation, not the variance."""
    id, violates = "mutant-eps-outside-sqrt", "NORM-4"
    caught_by = NUMERIC | {"NORM-5"}
    capabilities = ops("layer_norm")

    def inverse_std(self, variance, eps):
        return 1 / (np.sqrt(variance) + eps)


class EpsIgnored(Mutant):
    """1 / sqrt(var): eps never added (a zero-variance slice divides 0 by 0)."""
    id, violates = "mutant-eps-ignored", "NORM-4"
    caught_by = NUMERIC | {"NORM-5", "NUM-3.1"}
    capabilities = ops("group_norm")

    def inverse_std(self, variance, eps):
        return 1 / np.sqrt(variance)


class EpsHardcoded(Mutant):
    """eps fixed at the framework default 1e-5 whatever the caller passes (an ignored
    argument; shows only for eps != 1e-5 on slices whose variance is near eps)."""
    id, violates = "mutant-eps-hardcoded", "NORM-4"
    caught_by = NUMERIC | {"NORM-5"}
    capabilities = ops("instance_norm")

    def inverse_std(self, variance, eps):
        return super().inverse_std(variance, 1e-5)


class EpsZeroMeansDefault(Mutant):
    """eps = eps or 1e-5: eps = 0, a valid value (ERR-1.3), is falsy and replaced by the
    framework default."""
    id, violates = "mutant-eps-zero-means-default", "NORM-4"
    caught_by = NUMERIC | {"NORM-5"}
    capabilities = ops("layer_norm", dtypes=("float32",))

    def inverse_std(self, variance, eps):
        return super().inverse_std(variance, eps or 1e-5)


class EpsInInputDtype(Mutant):
    """eps rounded to the input dtype before it is added: 1e-6 becomes 1.013e-6 in float16
    (a subnormal there). Shows only for half inputs whose variance is near eps."""
    id, violates = "mutant-eps-in-input-dtype", "NORM-4"
    caught_by = NUMERIC | {"NORM-5"}
    capabilities = ops("layer_norm")

    def layer_norm(self, x, *, eps, **arguments):
        return super().layer_norm(x, eps=float(np.asarray(eps).astype(x.dtype)), **arguments)


class EvaluationWithoutEps(Mutant):
    """Evaluation-mode BatchNorm divides by sqrt(running_var): eps is added in training only."""
    id, violates = "mutant-evaluation-without-eps", "BN-3"
    caught_by = NUMERIC | {"NORM-4", "NORM-5"}
    capabilities = ops("batch_norm")

    def frozen(self, ncl, mean, variance, eps):
        return super().frozen(ncl, mean, variance, 0.0)


class UnbiasedNormalization(Mutant):
    """Normalizes with the unbiased variance sum(d^2) / (n - 1) instead of the population
    variance (the running-variance estimator leaking into the output)."""
    id, violates = "mutant-unbiased-normalization", "NORM-3"
    caught_by = NUMERIC | {"NORM-5"}
    capabilities = ops("batch_norm")

    def normalize_rows(self, rows, eps):
        _, mean, variance = super().normalize_rows(rows, eps)
        n = rows.shape[1]
        unbiased = variance * (n / (n - 1)) if n > 1 else variance
        return (rows - mean) * self.inverse_std(unbiased, eps), mean, variance


class OnePassVariance(Mutant):
    """var = E[x^2] - E[x]^2 in the compute precision (clamped at 0): cancellation on
    inputs with a large offset (ill-conditioned, NUM-1.2)."""
    id, violates = "mutant-one-pass-variance", "NUM-1.1"
    caught_by = NUMERIC | {"NUM-1.5"}
    capabilities = ops("batch_norm")

    def row_variance(self, rows, mean):
        return np.maximum((rows * rows).mean(axis=1, keepdims=True) - mean * mean, 0)


class OnePassVarianceLongRows(Mutant):
    """var = E[x^2] - E[x]^2 (clamped at 0) for rows of 1024 or more elements, two-pass for
    shorter ones: a kernel that switches to a single-read variance for long rows, where memory
    traffic dominates."""
    id, violates = "mutant-one-pass-variance-long-rows", "NUM-1.1"
    caught_by = NUMERIC | {"NUM-1.5"}
    capabilities = ops("layer_norm")
    threshold = 1024

    def row_variance(self, rows, mean):
        if rows.shape[1] < self.threshold:
            return super().row_variance(rows, mean)
        return np.maximum((rows * rows).mean(axis=1, keepdims=True) - mean * mean, 0)


# ---------------------------------------------------------------- precision and dtypes

class ApproximateRsqrt(Mutant):
    """1/sqrt by a hardware-style approximation good to 12 bits, without the Newton step
    (relative error up to 2^-12): hidden by the output rounding of float16, not float32."""
    id, violates = "mutant-approximate-rsqrt", "NUM-1.1"
    caught_by = NUMERIC | {"NORM-5"}
    capabilities = ops("layer_norm")

    def inverse_std(self, variance, eps):
        mantissa, exponent = np.frexp(super().inverse_std(variance, eps))
        return np.ldexp(np.round(mantissa * 2.0**12) / 2.0**12, exponent).astype(mantissa.dtype)


class HalfAccumulation(Mutant):
    """float16/bfloat16 inputs computed in the input dtype, sums accumulated element by
    element in it (the running sum of a long slice stalls)."""
    id, violates = "mutant-half-accumulation", "NUM-2.1"
    caught_by = NUMERIC | {"NUM-2.1", "NORM-5", "RMS-3"}
    capabilities = ops("layer_norm", "rms_norm")

    def compute_dtype(self, dtype):
        return np.dtype(dtype) if np.dtype(dtype) in _HALF else super().compute_dtype(dtype)

    @staticmethod
    def _mean(values):
        return np.add.accumulate(values, axis=1)[:, -1:] / values.dtype.type(values.shape[1])

    def row_mean(self, rows):
        return self._mean(rows)

    def row_variance(self, rows, mean):
        return self._mean((rows - mean) ** 2)

    def mean_square_rows(self, rows):
        return self._mean(rows * rows)


class HalfAffine(Mutant):
    """Statistics in float32, but x_hat rounded to float16/bfloat16 and the affine step
    computed there (three roundings in the input dtype instead of one)."""
    id, violates = "mutant-half-affine", "NUM-2.1"
    caught_by = NUMERIC
    capabilities = ops("layer_norm", dtypes=HALF_DTYPES)

    def layer_norm(self, x, **kwargs):
        self._dtype = x.dtype
        return super().layer_norm(x, **kwargs)

    def affine(self, x_hat, weight, bias):
        cast = (lambda a: None if a is None else a.astype(self._dtype)) if self._dtype in _HALF else (lambda a: a)
        return super().affine(cast(x_hat), cast(weight), cast(bias))


class Float32OutputForHalf(Mutant):
    """Returns the float32 compute result for float16/bfloat16 inputs (no cast back)."""
    id, violates = "mutant-float32-output-for-half", "NUM-2.2"
    caught_by = frozenset({"NUM-2.2"})
    capabilities = ops("rms_norm")

    def to_output(self, y, dtype):
        return y.astype(np.float32) if np.dtype(dtype) in _HALF else y.astype(dtype)


class Float64Output(Mutant):
    """Computes everything in float64 and returns float64 for every input dtype."""
    id, violates = "mutant-float64-output", "NUM-2.2"
    caught_by = frozenset({"NUM-2.2"})
    capabilities = ops("group_norm")

    def compute_dtype(self, dtype):
        return np.dtype(np.float64)

    def to_output(self, y, dtype):
        return y


class RunningStatsFloat32(Mutant):
    """Running statistics come back as float32 whatever dtype they were given in."""
    id, violates = "mutant-running-stats-float32", "NUM-2.2"
    caught_by = frozenset({"NUM-2.2"})
    capabilities = ops("batch_norm")

    def to_state(self, value, dtype):
        return value.astype(np.float32)


class OutputInInputBuffer(Mutant):
    """An in-place kernel: BatchNorm writes its output into the caller's input array and
    returns that array, so the caller's x is lost (the output itself is right)."""
    id, violates = "mutant-output-in-input-buffer", "GEN-6"
    caught_by = frozenset({"GEN-6"})
    capabilities = ops("batch_norm")

    def batch_norm(self, x, **arguments):
        y, running_mean, running_var = super().batch_norm(x, **arguments)
        x[...] = y
        return x, running_mean, running_var


class Float16Saturating(Mutant):
    """float16 outputs beyond the range are clamped to +-65504 before the cast, where the
    rounding of NUM-1.1 gives +-Inf (a kernel avoiding Inf)."""
    id, violates = "mutant-float16-saturating", "NUM-1.1"
    caught_by = NUMERIC | {"NUM-4.3"}
    capabilities = ops("layer_norm", dtypes=("float16",))

    def to_output(self, y, dtype):
        return np.clip(y, -65504, 65504).astype(dtype)


class BFloat16Truncation(Mutant):
    """Rounds the float32 result to bfloat16 by truncation (dropping the low 16 bits)
    instead of to nearest: up to one whole ulp of error."""
    id, violates = "mutant-bfloat16-truncation", "NUM-1.1"
    caught_by = NUMERIC
    capabilities = ops("layer_norm", dtypes=("bfloat16",))

    def to_output(self, y, dtype):
        if np.dtype(dtype) != np.dtype(ml_dtypes.bfloat16):
            return y.astype(dtype)
        bits = np.ascontiguousarray(y, np.float32).view(np.uint32) & np.uint32(0xFFFF0000)
        return bits.view(np.float32).astype(dtype)


# ---------------------------------------------------------------- degenerate inputs

class NanSkipped(Mutant):
    """Statistics with nanmean: a NaN is left out, so the rest of its slice stays finite."""
    id, violates = "mutant-nan-skipped", "NUM-4.1"
    caught_by = frozenset({"NUM-4.1"})
    capabilities = ops("layer_norm")

    def row_mean(self, rows):
        first = np.nanmean(rows, axis=1, keepdims=True)
        return first + np.nanmean(rows - first, axis=1, keepdims=True)

    def row_variance(self, rows, mean):
        return np.nanmean((rows - mean) ** 2, axis=1, keepdims=True)


class InfSaturated(Mutant):
    """Saturates +-Inf to the largest finite value before normalizing, so a slice with an
    infinity gives finite outputs. (The suite cites NUM-4.1 when the expected value is
    NaN, even for an infinite input: see the zoo report.)"""
    id, violates = "mutant-inf-saturated", "NUM-4.2"
    caught_by = frozenset({"NUM-4.2", "NUM-4.1"})
    capabilities = ops("group_norm")

    def normalize_rows(self, rows, eps):
        # Small enough that the saturated slice's squares stay finite (NUM-1.3's range): its outputs
        # are then finite, where NaN is due (a slice beyond the range may give NaN).
        big = np.sqrt(np.finfo(rows.dtype).max / rows.shape[1]) / 2
        return super().normalize_rows(np.clip(rows, -big, big), eps)


class ZeroVarianceNaN(Mutant):
    """x_hat = d / sqrt(var) * sqrt(var / (var + eps)): equal for var > 0, 0/0 = NaN for a
    zero-variance slice."""
    id, violates = "mutant-zero-variance-nan", "NUM-3.1"
    caught_by = frozenset({"NUM-3.1", "NUM-3.2"})
    capabilities = ops("instance_norm")

    def normalize_rows(self, rows, eps):
        _, mean, variance = super().normalize_rows(rows, eps)
        return (rows - mean) / np.sqrt(variance) * np.sqrt(variance / (variance + eps)), mean, variance


class ZeroVarianceZero(Mutant):
    """A zero-variance slice gives 0 (a shortcut skipping the affine step) instead of beta."""
    id, violates = "mutant-zero-variance-zero", "NUM-3.2"
    caught_by = frozenset({"NUM-3.2"})
    capabilities = ops("layer_norm")

    def layer_norm(self, x, *, normalized_shape, **kwargs):
        y = super().layer_norm(x, normalized_shape=normalized_shape, **kwargs)
        rows = x.astype(np.float64).reshape(-1, int(np.prod(normalized_shape)))
        constant = (rows == rows[:, :1]).all(axis=1, keepdims=True)
        return np.where(constant, 0, y.reshape(rows.shape)).astype(y.dtype).reshape(y.shape)


class NonFiniteParametersSanitized(Mutant):
    """NaN and +-Inf in weight and bias are replaced by finite numbers (nan_to_num), so they do
    not propagate as IEEE 754 arithmetic would."""
    id, violates = "mutant-nonfinite-parameters-sanitized", "NUM-4.3"
    caught_by = frozenset({"NUM-4.3", "NUM-4.1", "NUM-4.2"})
    capabilities = ops("layer_norm", dtypes=("float32",))

    def affine(self, x_hat, weight, bias):
        clean = (lambda a: None if a is None else np.nan_to_num(a))
        return super().affine(x_hat, clean(weight), clean(bias))


# ---------------------------------------------------------------- blocked kernels

def _blocked_sum(values, *, drop_tail: bool):
    """Row sums over blocks of BLOCK columns, as a tiled kernel does for rows longer than a
    block; with drop_tail the last partial block of such a row is lost."""
    n = values.shape[1]
    kept = n - n % BLOCK if drop_tail and n > BLOCK else n
    return values[:, :kept].sum(axis=1, keepdims=True)


class BlockDropsTail(Mutant):
    """Tiled reduction in blocks of 64 that drops the tail (n % 64 elements) of rows longer
    than 64, but divides by n: wrong statistics only for n > 64 not a multiple of 64."""
    id, violates = "mutant-block-drops-tail", "NORM-1"
    caught_by = NUMERIC | {"NORM-5"}
    capabilities = ops("layer_norm")

    def row_mean(self, rows):
        n = rows.dtype.type(rows.shape[1])
        first = _blocked_sum(rows, drop_tail=True) / n
        return first + _blocked_sum(rows - first, drop_tail=True) / n

    def row_variance(self, rows, mean):
        return _blocked_sum((rows - mean) ** 2, drop_tail=True) / rows.dtype.type(rows.shape[1])


class BlockPaddedLength(Mutant):
    """Rows longer than 64 are zero-padded to a multiple of 64 and the mean square divided
    by the padded length."""
    id, violates = "mutant-block-padded-length", "RMS-2"
    caught_by = NUMERIC | {"RMS-3"}
    capabilities = ops("rms_norm")

    def mean_square_rows(self, rows):
        n = rows.shape[1]
        padded = -(-n // BLOCK) * BLOCK if n > BLOCK else n
        return (rows * rows).sum(axis=1, keepdims=True) / rows.dtype.type(padded)


class BlockUnweightedMerge(Mutant):
    """Rows longer than 64 are reduced in blocks of 64 and the block means averaged with
    equal weights, so a short tail block counts as much as a full one."""
    id, violates = "mutant-block-unweighted-merge", "NORM-1"
    caught_by = NUMERIC | {"NORM-5"}
    capabilities = ops("group_norm")

    def row_mean(self, rows):
        n = rows.shape[1]
        if n <= BLOCK:
            return super().row_mean(rows)
        blocks = [super(BlockUnweightedMerge, self).row_mean(rows[:, i:i + BLOCK]) for i in range(0, n, BLOCK)]
        return np.mean(blocks, axis=0).astype(rows.dtype)


def without_vector_tail(values, threshold: int = 1024, vector: int = 8):
    """The columns of `values` (R, n) a vectorized path for rows of `threshold` or more elements
    reads when it loads whole vectors of `vector` and skips the last n % vector (shorter rows whole)."""
    n = values.shape[1]
    return values if n < threshold else values[:, : n - n % vector]


class VectorTailDroppedLongRows(Mutant):
    """Rows of 1024 or more elements take a vectorized path that loads whole vectors of 8 and
    skips the last n % 8 elements in its sums, dividing by n all the same: wrong only for long
    rows that 8 does not divide."""
    id, violates = "mutant-vector-tail-dropped-long-rows", "NORM-1"
    caught_by = NUMERIC | {"NORM-5"}
    capabilities = ops("layer_norm")

    def row_mean(self, rows):
        n = rows.dtype.type(rows.shape[1])
        first = without_vector_tail(rows).sum(axis=1, keepdims=True) / n
        return first + without_vector_tail(rows - first).sum(axis=1, keepdims=True) / n

    def row_variance(self, rows, mean):
        return without_vector_tail((rows - mean) ** 2).sum(axis=1, keepdims=True) / rows.dtype.type(rows.shape[1])


class GroupStatisticsFirstTile(Mutant):
    """GroupNorm whose statistics come from the first 4096 elements of each group (a kernel that
    loads one tile per group), while every element is normalized with them: wrong only for
    groups longer than a tile."""
    id, violates = "mutant-group-statistics-first-tile", "GN-2"
    caught_by = NUMERIC | {"GN-2", "NORM-5"}
    capabilities = ops("group_norm")
    tile = 4096

    def group_normalize(self, ncl, num_groups, eps):
        n, c, length = ncl.shape
        rows = ncl.reshape(n * num_groups, -1)
        tile = rows[:, : self.tile]
        mean = self.row_mean(tile)
        variance = self.row_variance(tile, mean)
        return ((rows - mean) * self.inverse_std(variance, eps)).reshape(n, c, length)


# ---------------------------------------------------------------- ignored validation (ERR-1)

class NegativeEpsAccepted(Mutant):
    """Accepts eps < 0 without an error (and normalizes with it)."""
    id, violates = "mutant-negative-eps-accepted", "ERR-1.3"
    caught_by = frozenset({"ERR-1.3"})
    capabilities = ops("layer_norm", dtypes=("float32",))

    @staticmethod
    def _check_eps(eps):
        return None


class UnevenGroupsAccepted(Mutant):
    """num_groups that does not divide the channels is accepted: the channels are split into
    nearly equal groups (np.array_split) instead of raising."""
    id, violates = "mutant-uneven-groups-accepted", "ERR-1.4"
    caught_by = frozenset({"ERR-1.4"})
    capabilities = ops("group_norm", dtypes=("float32",))

    def group_norm(self, x, *, num_groups, **kwargs):
        channels = x.shape[self.conventions.channel_axis % x.ndim]
        if num_groups >= 1 and channels % num_groups:
            self._uneven = num_groups
            return super().group_norm(x, num_groups=1, **kwargs)
        self._uneven = None
        return super().group_norm(x, num_groups=num_groups, **kwargs)

    def group_normalize(self, ncl, num_groups, eps):
        if not self._uneven:
            return super().group_normalize(ncl, num_groups, eps)
        parts = np.array_split(ncl, self._uneven, axis=1)
        return np.concatenate([super(UnevenGroupsAccepted, self).group_normalize(p, 1, eps) for p in parts], axis=1)


class NormalizedShapeUnchecked(Mutant):
    """normalized_shape is only counted, not compared: LayerNorm normalizes the trailing
    len(normalized_shape) axes whatever their sizes."""
    id, violates = "mutant-normalized-shape-unchecked", "ERR-1.5"
    caught_by = frozenset({"ERR-1.5"})
    capabilities = ops("layer_norm", dtypes=("float32",))

    @staticmethod
    def _normalized_shape(x, normalized_shape):
        return tuple(x.shape[x.ndim - len(np.atleast_1d(normalized_shape)):])


class MomentumOutOfRangeAccepted(Mutant):
    """Accepts a new-batch weight outside [0, 1] (momentum 1.5) without an error."""
    id, violates = "mutant-momentum-out-of-range-accepted", "ERR-1.6"
    caught_by = frozenset({"ERR-1.6"})
    capabilities = ops("batch_norm", dtypes=("float32",))

    def _check_momentum(self, momentum, allow_none):
        return None
