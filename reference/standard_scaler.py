"""Standardization, spec section STD (spec/ops/standard_scaler.md) and SCALE (spec/scalers.md)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from normspec.errors import ConfigurationError

from . import _scaler_steps as steps


@dataclass(frozen=True)
class FittedStandardScaler:
    """The exact (float64) fitted statistics of STD-2 and the transform of STD-4.

    `mean`, `variance` (the declared estimator's, STD-2.2), `population_variance` (d = 0,
    for the bounds of SCALE-7.1), `scale` (the divisor s of STD-3), `subtrahend` (m),
    `count` (n per feature), `max_abs` (M of SCALE-7.1), `chunks` (k), `constant` (SCALE-3), and
    the options.
    """

    mean: np.ndarray
    mean_residual: np.ndarray  # mean = (its float64 value) + mean_residual, the two-part mean of STD-2.1
    variance: np.ndarray
    population_variance: np.ndarray
    scale: np.ndarray
    subtrahend: np.ndarray
    count: np.ndarray
    max_abs: np.ndarray
    chunks: int
    constant: np.ndarray
    ddof: int
    with_mean: bool
    with_std: bool

    def transform(self, x, *, exact: bool = False) -> np.ndarray:
        """STD-4: (x - m) / s, in the input dtype unless `exact`."""
        x = steps.check_features(x, self.mean.size, "standard_scaler")
        with np.errstate(invalid="ignore"):
            y = self._centred(x.astype(np.float64)) / self.scale
        return y if exact else y.astype(x.dtype)

    def inverse_transform(self, y, *, exact: bool = False) -> np.ndarray:
        """STD-4: y * s + m, in the input dtype unless `exact`."""
        y = steps.check_features(y, self.mean.size, "standard_scaler")
        with np.errstate(invalid="ignore"):
            x = y.astype(np.float64) * self.scale + self._residual() + self.subtrahend
        return x if exact else x.astype(y.dtype)

    def _residual(self) -> np.ndarray:
        return self.mean_residual if self.with_mean else 0.0

    def _centred(self, x: np.ndarray) -> np.ndarray:
        """x - m with the mean's two parts subtracted one after the other, so that the
        reference's transform stays accurate whatever the data's offset."""
        return (x - self.subtrahend) - self._residual()


def standard_scaler(chunks, *, with_mean: bool = True, with_std: bool = True, ddof: int = 0,
                    nan: str = "ignore") -> FittedStandardScaler:
    """Fit standardization on `chunks` (a list of (n_c, F) arrays, or one array): STD-2, STD-3."""
    if ddof not in (0, 1):
        raise ConfigurationError("STD-2.2", f"ddof={ddof!r}; the variance estimator is d = 0 or d = 1.")
    k = 1 if isinstance(chunks, np.ndarray) else len(chunks)
    data = steps.fitted_data(chunks, "standard_scaler")
    count = steps.sample_counts(data, nan)
    if ddof == 1 and np.any(count == 1):
        raise ConfigurationError("STD-2.2", "the sample variance (d = 1) of a feature with one sample is undefined.")
    # SCALE-3: all samples equal (an exact test; NaN samples skipped or propagated as SCALE-5 says).
    constant = steps.constant_features(data, nan)
    # A constant feature's mean is its value and its variance 0, exactly.
    high, low = steps.mean(data, nan)  # STD-2.1
    high, low = np.where(constant, steps.extreme(data, nan, np.max), high), np.where(constant, 0.0, low)
    population = np.where(constant, 0.0, steps.centred_square_mean(data, high, low, nan))
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = population * count / (count - ddof)  # STD-2.2
        scale = np.where(constant | (not with_std), 1.0, np.sqrt(variance))  # STD-3
        scale = np.where(np.isnan(variance) & with_std, np.nan, scale)
        max_abs = steps.extreme(np.abs(data), nan, np.max)
    subtrahend = high if with_mean else np.zeros_like(high)
    return FittedStandardScaler(mean=high, mean_residual=low, variance=variance, population_variance=population, scale=scale,
                                subtrahend=subtrahend, count=count, max_abs=max_abs, chunks=k, constant=constant,
                                ddof=ddof, with_mean=bool(with_mean), with_std=bool(with_std))
