"""`sklearn`: scikit-learn's StandardScaler and MinMaxScaler (spec/scalers.md), fitted chunk by
chunk with partial_fit (the first call is the fit, SCALE-2)."""
from __future__ import annotations

import numpy as np
import sklearn.preprocessing

from .base import Adapter, Capabilities, Conventions, Scaler


class SklearnScaler(Scaler):
    """A scikit-learn scaler object; `names` maps the spec's statistics to its attributes."""

    def __init__(self, estimator, names: dict):
        self._estimator, self._names = estimator, names

    def partial_fit(self, x):
        self._estimator.partial_fit(x)

    def transform(self, x):
        return self._estimator.transform(x)

    def inverse_transform(self, y):
        return self._estimator.inverse_transform(y)

    def statistics(self):
        values = {name: getattr(self._estimator, attribute, None) for name, attribute in self._names.items()}
        return {name: None if value is None else np.asarray(value) for name, value in values.items()}


class SklearnAdapter(Adapter):
    id = "sklearn"
    framework = "scikit-learn"
    # Population variance (var_ divides by n_samples_seen_) and NaN skipped by fit, kept by transform.
    conventions = Conventions(scaler_ddof=0, scaler_nan="ignore")
    capabilities = Capabilities(ops=(), scalers=("standard_scaler", "minmax_scaler"), dtypes=("float32", "float64"))

    def standard_scaler(self, *, with_mean, with_std, device):
        estimator = sklearn.preprocessing.StandardScaler(with_mean=with_mean, with_std=with_std)
        return SklearnScaler(estimator, {"mean": "mean_", "variance": "var_", "scale": "scale_"})

    def minmax_scaler(self, *, feature_range, clip, device):
        estimator = sklearn.preprocessing.MinMaxScaler(feature_range=tuple(feature_range), clip=clip)
        return SklearnScaler(estimator, {"data_min": "data_min_", "data_max": "data_max_", "scale": "scale_"})
