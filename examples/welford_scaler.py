"""A third-party standardization scaler gated by normspec (spec/scalers.md): Welford's updating
algorithm sample by sample, in float64, as a streaming feature store might fit it.

    PYTHONPATH=examples normspec check welford_scaler:WelfordScalerAdapter

It declares the population variance (ddof 0) and skips NaN in the fit, and divides a constant
feature by 1 (SCALE-3.1).
"""
from __future__ import annotations

import numpy as np

from normspec.adapters import Adapter, Capabilities, Conventions, Scaler


class WelfordScaler(Scaler):
    """Per-feature count, mean and sum of squared deviations, updated one sample at a time."""

    def __init__(self, *, with_mean: bool, with_std: bool):
        self.with_mean, self.with_std = with_mean, with_std
        self.count = self.mean = self.m2 = self.low = self.high = None

    def partial_fit(self, x):
        x = np.asarray(x, dtype=np.float64)
        if self.count is None:
            features = x.shape[1]
            self.count, self.mean, self.m2 = np.zeros(features), np.zeros(features), np.zeros(features)
            self.low, self.high = np.full(features, np.inf), np.full(features, -np.inf)
        if x.ndim != 2 or x.shape[1] != self.count.size:
            raise ValueError(f"expected {self.count.size} features, got data of shape {x.shape}")
        for row in x:
            present = ~np.isnan(row)
            self.count[present] += 1
            delta = row[present] - self.mean[present]
            self.mean[present] += delta / self.count[present]
            self.m2[present] += delta * (row[present] - self.mean[present])
            self.low[present] = np.minimum(self.low[present], row[present])
            self.high[present] = np.maximum(self.high[present], row[present])

    def variance(self):
        """STD-2.2 with the declared ddof 0: the population variance."""
        return self.m2 / self.count

    def _affine(self, x):
        if self.count is None:
            raise ValueError("transform before fit")
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.count.size:
            raise ValueError(f"expected {self.count.size} features, got data of shape {x.shape}")
        variance = self.variance()
        scale = np.where((self.high == self.low) | (variance == 0) | (not self.with_std), 1.0, np.sqrt(variance))
        return x, (self.mean if self.with_mean else 0.0), scale

    def transform(self, x):
        x, shift, scale = self._affine(x)
        return ((x - shift) / scale).astype(x.dtype)

    def inverse_transform(self, y):
        y, shift, scale = self._affine(y)
        return (y * scale + shift).astype(y.dtype)

    def statistics(self):
        _, _, scale = self._affine(np.zeros((0, self.count.size)))
        return {"mean": self.mean.copy(), "variance": self.variance(), "scale": scale}


class WelfordScalerAdapter(Adapter):
    id = "welford-scaler"
    framework = "numpy"
    conventions = Conventions(scaler_ddof=0, scaler_nan="ignore")
    capabilities = Capabilities(ops=(), scalers=("standard_scaler",), dtypes=("float32", "float64"))

    def standard_scaler(self, *, with_mean, with_std, device):
        return WelfordScaler(with_mean=with_mean, with_std=with_std)
