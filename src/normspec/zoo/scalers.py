"""The fitted scalers in the zoo (spec/scalers.md): `StreamingScalerKernel` ("zoo-streaming-scaler"),
a correct streaming implementation written without normspec.reference, and the mutants of it
that the suite must kill.

The kernel computes in the data's dtype (float32 for float32 data, the precision SCALE-7 is
written for), fits each chunk by two passes and merges it into the running statistics with the
pairwise update of Chan, Golub and LeVeque, skips NaN per feature (SCALE-5 `ignore`, a chunk
without any value of a feature included), keeps each feature's extremes so that a constant
feature is known exactly (SCALE-3.1), and applies the folded forms x (1/s) - m/s and x s + t.
"""
from __future__ import annotations

import numpy as np

from normspec.adapters import Capabilities, Conventions, Scaler
from normspec.registry import SCALER_NAMES

from ._base import Mutant
from .kernel import TwoPassKernel

_SCALERS = Capabilities(ops=(), scalers=SCALER_NAMES, dtypes=("float32", "float64"))


def scalers(*names: str) -> Capabilities:
    """The capabilities of a scaler mutant: the scalers where its bug lives, no layer op."""
    return Capabilities(ops=(), scalers=names, dtypes=("float32", "float64"))


class StreamingScaler(Scaler):
    """Running per-feature count, mean, sum of squared deviations (M2), minimum and maximum, in
    the data's dtype; `kernel` supplies the steps the mutants override."""

    def __init__(self, kernel, op: str, options: dict):
        self.kernel, self.op, self.options = kernel, op, options
        if op == "minmax_scaler":
            a, b = (float(v) for v in options["feature_range"])
            if not (np.isfinite(a) and np.isfinite(b) and a < b):
                raise ValueError(f"feature_range={options['feature_range']!r}: need finite a < b (SCALE-8.3)")
        self.state = None  # (count, mean, m2, low, high)

    def partial_fit(self, x):
        x = np.asarray(x)
        if x.ndim != 2 or (self.state is not None and x.shape[1] != self.state[1].size):
            raise ValueError(f"data of shape {x.shape} does not have the fitted number of features (SCALE-8.1)")
        with np.errstate(all="ignore"):
            chunk = self.kernel.chunk_statistics(x)
            self.state = chunk if self.state is None else self.kernel.merge(self.state, chunk)

    def _fitted(self, x):
        x = np.asarray(x)
        if self.state is None:
            raise ValueError("transform before any partial_fit (SCALE-8.2)")
        if x.ndim != 2 or x.shape[1] != self.state[1].size:
            raise ValueError(f"data of shape {x.shape} does not have the fitted number of features (SCALE-8.1)")
        return x, [np.asarray(s, dtype=x.dtype) for s in self.state]

    def _standard(self, dtype):
        count, mean, m2, low, high = self.state
        variance = self.kernel.variance(self.state)
        with np.errstate(all="ignore"):
            root = np.sqrt(variance).astype(dtype)
        scale = self.kernel.divisor(root, high == low, self.options["with_std"])
        subtrahend = mean if self.options["with_mean"] else np.zeros_like(mean)
        return subtrahend.astype(dtype), scale.astype(dtype), variance

    def _minmax(self, dtype):
        count, mean, m2, low, high = self.state
        a, b = self.kernel.feature_range(self.options)
        span = dtype.type(b) - dtype.type(a)
        data_range = (high - low).astype(dtype)
        scale = span / self.kernel.divisor_range(data_range)
        return scale.astype(dtype), (dtype.type(a) - low * scale).astype(dtype), a, b

    def transform(self, x):
        x, _ = self._fitted(x)
        with np.errstate(all="ignore"):
            if self.op == "standard_scaler":
                subtrahend, scale, _ = self._standard(x.dtype)
                inverse = x.dtype.type(1) / scale
                return x * inverse - subtrahend * inverse
            scale, shift, a, b = self._minmax(x.dtype)
            y = x * scale + shift
            return np.clip(y, x.dtype.type(a), x.dtype.type(b)) if self.options["clip"] else y

    def inverse_transform(self, y):
        y, _ = self._fitted(y)
        with np.errstate(all="ignore"):
            if self.op == "standard_scaler":
                subtrahend, scale, _ = self._standard(y.dtype)
                return y * scale + subtrahend
            scale, shift, _, _ = self._minmax(y.dtype)
            return (y - shift) / scale

    def statistics(self):
        count, mean, m2, low, high = self.state
        dtype = mean.dtype
        with np.errstate(all="ignore"):
            if self.op == "standard_scaler":
                _, scale, variance = self._standard(dtype)
                return {"mean": mean, "variance": variance, "scale": scale}
            scale, _, _, _ = self._minmax(dtype)
            return {"data_min": low, "data_max": high, "scale": scale}


class StreamingScalerKernel(TwoPassKernel):
    """A correct streaming standardization and min-max scaling: two passes per chunk, chunks
    merged by Chan, Golub and LeVeque's update, in the data's dtype."""

    id = "zoo-streaming-scaler"
    conventions = Conventions(scaler_ddof=0, scaler_nan="ignore")
    capabilities = _SCALERS

    def standard_scaler(self, *, with_mean, with_std, device):
        return StreamingScaler(self, "standard_scaler", {"with_mean": with_mean, "with_std": with_std})

    def minmax_scaler(self, *, feature_range, clip, device):
        return StreamingScaler(self, "minmax_scaler", {"feature_range": feature_range, "clip": clip})

    # ------------------------------------------------------------------ the steps mutants override

    def chunk_statistics(self, x):
        """count, mean, M2, min, max of one chunk per feature, over its non-NaN values; a feature
        without any has count 0 (and is left out of the merge)."""
        present = ~np.isnan(x)
        count = present.sum(axis=0).astype(x.dtype)
        values = np.where(present, x, x.dtype.type(0))
        mean = values.sum(axis=0) / np.maximum(count, x.dtype.type(1))
        centred = np.where(present, x - mean, x.dtype.type(0))
        m2 = (centred * centred).sum(axis=0)
        low = np.where(present, x, np.inf).min(axis=0).astype(x.dtype)
        high = np.where(present, x, -np.inf).max(axis=0).astype(x.dtype)
        return count, mean, m2, low, high

    def merge(self, first, second):
        """Chan, Golub and LeVeque: mean_a + delta n_b / n and M2_a + M2_b + delta^2 n_a n_b / n."""
        (na, ma, sa, la, ha), (nb, mb, sb, lb, hb) = first, second
        n = na + nb
        safe = np.maximum(n, na.dtype.type(1))
        delta = mb - ma
        mean = np.where(nb == 0, ma, np.where(na == 0, mb, ma + delta * (nb / safe)))
        m2 = np.where(nb == 0, sa, np.where(na == 0, sb, sa + sb + delta * delta * (na * nb / safe)))
        return n, mean, m2, np.minimum(la, lb), np.maximum(ha, hb)

    def variance(self, state):
        """STD-2.2 with the declared d = 0, from the state (count, mean, M2, min, max)."""
        return state[2] / state[0]

    def divisor(self, root, constant, with_std):
        """STD-3: the standard deviation; 1 without with_std and for a constant feature (SCALE-3.1),
        and for a computed variance of 0, which only a numerically constant feature has (SCALE-3.2)."""
        return np.where(constant | (root == 0) | (not with_std), root.dtype.type(1), root)

    def feature_range(self, options):
        return tuple(float(v) for v in options["feature_range"])

    def divisor_range(self, data_range):
        """MINMAX-3: the range, and 1 for a constant feature (SCALE-3.1)."""
        return np.where(data_range == 0, data_range.dtype.type(1), data_range)


class ScalerMutant(Mutant, StreamingScalerKernel):
    """A scaler mutant: the streaming kernel with one bug."""

    base = StreamingScalerKernel


class UnbiasedVariance(ScalerMutant):
    """Standardizes with the sample variance M2/(n - 1) while declaring the population estimator."""
    id, violates = "mutant-scaler-unbiased-variance", "STD-2.2"
    caught_by = frozenset({"SCALE-7.1", "SCALE-7.2", "STD-4"})
    capabilities = scalers("standard_scaler")

    def variance(self, state):
        return state[2] / np.maximum(state[0] - 1, 1)


class OnePassVariance(ScalerMutant):
    """Variance from running sums of x and x^2 in the data's dtype: mean(x^2) - mean(x)^2."""
    id, violates = "mutant-scaler-one-pass-variance", "SCALE-7.1"
    caught_by = frozenset({"SCALE-7.1", "SCALE-7.2", "SCALE-3.2", "SCALE-2.1", "SCALE-2.2", "STD-4"})
    capabilities = scalers("standard_scaler")

    def chunk_statistics(self, x):
        count, mean, _, low, high = super().chunk_statistics(x)
        values = np.where(np.isnan(x), x.dtype.type(0), x)
        return count, mean, (values * values).sum(axis=0), low, high  # M2 slot holds the sum of squares

    def merge(self, first, second):
        (na, ma, qa, la, ha), (nb, mb, qb, lb, hb) = first, second
        n = na + nb
        return n, (ma * na + mb * nb) / np.maximum(n, na.dtype.type(1)), qa + qb, np.minimum(la, lb), np.maximum(ha, hb)

    def variance(self, state):
        count, mean, squares = state[0], state[1], state[2]
        return squares / count - mean * mean


class EqualWeightMerge(ScalerMutant):
    """Merges a chunk's mean into the running mean with equal weights, (mean_a + mean_b) / 2."""
    id, violates = "mutant-scaler-equal-weight-merge", "SCALE-2.1"
    caught_by = frozenset({"SCALE-7.1", "SCALE-7.2", "SCALE-2.1", "STD-4"})
    capabilities = scalers("standard_scaler")

    def merge(self, first, second):
        n, _, m2, low, high = super().merge(first, second)
        (_, ma, _, _, _), (_, mb, _, _, _) = first, second
        return n, (ma + mb) / ma.dtype.type(2), m2, low, high


class RangeIgnoresFeatureRange(ScalerMutant):
    """Min-max scaling onto [0, 1] whatever feature_range says."""
    id, violates = "mutant-minmax-ignores-feature-range", "MINMAX-4"
    caught_by = frozenset({"SCALE-7.1", "SCALE-7.2", "SCALE-3.1", "MINMAX-4"})
    capabilities = scalers("minmax_scaler")

    def feature_range(self, options):
        return 0.0, 1.0


class AbsoluteRangeThreshold(ScalerMutant):
    """Treats a range below ten machine epsilons of the dtype as constant, as a fixed threshold would."""
    id, violates = "mutant-minmax-absolute-threshold", "SCALE-3.2"
    caught_by = frozenset({"SCALE-3.2", "SCALE-7.2"})
    capabilities = scalers("minmax_scaler")

    def divisor_range(self, data_range):
        small = data_range < 10 * np.finfo(data_range.dtype).eps
        return np.where(small, data_range.dtype.type(1), data_range)


class StdFloor(ScalerMutant):
    """Divides by max(sigma, 1e-7), a floor in place of SCALE-3.1's divisor 1 for constant features."""
    id, violates = "mutant-scaler-std-floor", "SCALE-3.1"
    caught_by = frozenset({"SCALE-3.1", "SCALE-3.2", "SCALE-7.2", "STD-4"})
    capabilities = scalers("standard_scaler")

    def divisor(self, root, constant, with_std):
        return np.where(not with_std, root.dtype.type(1), np.maximum(root, root.dtype.type(1e-7)))


SCALER_MUTANTS = (UnbiasedVariance, OnePassVariance, EqualWeightMerge, RangeIgnoresFeatureRange,
                  AbsoluteRangeThreshold, StdFloor)
