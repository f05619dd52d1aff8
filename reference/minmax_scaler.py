"""Min-max scaling, spec section MINMAX (spec/ops/minmax_scaler.md) and SCALE (spec/scalers.md)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _scaler_steps as steps


@dataclass(frozen=True)
class FittedMinMaxScaler:
    """The exact fitted statistics of MINMAX-2 and the transform of MINMAX-4.

    `data_min`, `data_max`, `data_range` (r), `scale` (s of MINMAX-3), `feature_range` (a, b),
    `clip`, `constant` (SCALE-3).
    """

    data_min: np.ndarray
    data_max: np.ndarray
    data_range: np.ndarray
    scale: np.ndarray
    feature_range: tuple
    clip: bool
    constant: np.ndarray

    def transform(self, x, *, exact: bool = False) -> np.ndarray:
        """MINMAX-4: a + (x - min) s, clipped to [a, b] with `clip`."""
        x = steps.check_features(x, self.data_min.size, "minmax_scaler")
        a, b = self.feature_range
        with np.errstate(invalid="ignore"):
            y = a + (x.astype(np.float64) - self.data_min) * self.scale
            if self.clip:
                y = np.clip(y, a, b)
        return y if exact else y.astype(x.dtype)

    def inverse_transform(self, y, *, exact: bool = False) -> np.ndarray:
        """MINMAX-4: min + (y - a) / s."""
        y = steps.check_features(y, self.data_min.size, "minmax_scaler")
        with np.errstate(invalid="ignore"):
            x = self.data_min + (y.astype(np.float64) - self.feature_range[0]) / self.scale
        return x if exact else x.astype(y.dtype)


def minmax_scaler(chunks, *, feature_range=(0.0, 1.0), clip: bool = False, nan: str = "ignore") -> FittedMinMaxScaler:
    """Fit min-max scaling on `chunks` (a list of (n_c, F) arrays, or one array): MINMAX-2, MINMAX-3."""
    a, b = steps.feature_range_value(feature_range)
    data = steps.fitted_data(chunks, "minmax_scaler")
    steps.sample_counts(data, nan)  # checks the convention's name
    with np.errstate(invalid="ignore", over="ignore"):
        low = steps.extreme(data, nan, np.min)  # MINMAX-2: exact
        high = steps.extreme(data, nan, np.max)
        data_range = high - low
        constant = data_range == 0  # SCALE-3.1: the range treated as 1
        scale = (b - a) / np.where(constant, 1.0, data_range)  # MINMAX-3
    return FittedMinMaxScaler(data_min=low, data_max=high, data_range=data_range, scale=scale,
                              feature_range=(a, b), clip=bool(clip), constant=constant)
