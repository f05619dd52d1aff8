"""`keras-normalization`: Keras 3's `keras.layers.Normalization` on the TensorFlow backend as a
fitted standardization (spec/scalers.md, STD).

The chunks fitted so far are adapted in one streaming `adapt` call over the list of them (Keras
merges each batch's mean and variance into the running ones), so that the layer's statistics are
those of every chunk, as SCALE-2.1 asks of a partial fit; the transform is the layer's call, the
inverse a second layer with `invert=True` and the same statistics. The layer is created with
dtype = the data's dtype. Normalization always subtracts the mean and divides by
max(sqrt(variance), keras.backend.epsilon()), so it supports with_mean = with_std = True only.
Checked against keras 3.15.1 with tensorflow-cpu 2.21.0.
"""
from __future__ import annotations

import numpy as np

from ._keras_common import import_keras
from ._tf_common import tf_version
from .base import Adapter, Capabilities, Conventions, Scaler

keras = import_keras("tensorflow", "keras-normalization")


class KerasNormalizationScaler(Scaler):
    def __init__(self):
        self._chunks, self._layer, self._inverse = [], None, None

    def partial_fit(self, x):
        if self._chunks and x.shape[1] != self._chunks[0].shape[1]:
            # Keras adapts every chunk again at the next use; the check there would come too late.
            raise ValueError(f"data with {x.shape[1]} features; the layer was adapted with {self._chunks[0].shape[1]}")
        self._chunks.append(np.array(x))
        self._layer = self._inverse = None

    def _layers(self):
        if not self._chunks:
            raise ValueError("the Normalization layer has not been adapted")
        if self._layer is None:
            dtype = str(self._chunks[0].dtype)
            self._layer = keras.layers.Normalization(axis=-1, dtype=dtype)
            self._layer.adapt(list(self._chunks))  # an iterable of batches: Keras' streaming adapt
            self._inverse = keras.layers.Normalization(axis=-1, dtype=dtype, invert=True,
                                                       mean=self._statistic("mean"),
                                                       variance=self._statistic("variance"))
        return self._layer, self._inverse

    def _statistic(self, name):
        return np.asarray(getattr(self._layer, name)).reshape(-1)

    def transform(self, x):
        layer, _ = self._layers()
        return np.asarray(layer(x))

    def inverse_transform(self, y):
        _, inverse = self._layers()
        return np.asarray(inverse(y))

    def statistics(self):
        self._layers()
        # The divisor, max(sqrt(variance), epsilon), is formed in each call and not kept.
        return {"mean": self._statistic("mean"), "variance": self._statistic("variance"), "scale": None}


class KerasGivenStatistics(Scaler):
    """Normalization(mean=..., variance=...): Keras takes the variance, given here as std squared with
    the sign of std, so that a negative std reaches Keras as the negative variance it stands for."""

    def __init__(self, mean, std):
        std, dtype = np.asarray(std, dtype=np.float64), np.asarray(mean).dtype
        self._layer = keras.layers.Normalization(axis=-1, dtype=str(dtype), mean=np.asarray(mean),
                                                 variance=np.copysign(std * std, std).astype(dtype))

    def transform(self, x):
        return np.asarray(self._layer(x))


class KerasNormalizationAdapter(Adapter):
    id = "keras-normalization"
    framework = "keras"
    environment = {"KERAS_BACKEND": "tensorflow"}
    # adapt() computes population variances (ops.var) and lets NaN through to the statistics.
    conventions = Conventions(scaler_ddof=0, scaler_nan="propagate")
    capabilities = Capabilities(ops=(), scalers=("standard_scaler",), dtypes=("float32", "float64"),
                                scaler_options={"with_mean": (True,), "with_std": (True,)},
                                given_statistics=("standard_scaler",))

    def framework_version(self) -> str:
        return f"keras {keras.__version__} ({tf_version()})"

    def standard_scaler(self, *, with_mean, with_std, device):
        if not (with_mean and with_std):
            raise NotImplementedError("keras.layers.Normalization always centres and scales (STD-1)")
        return KerasNormalizationScaler()

    def standard_scaler_given(self, *, mean, std, device):
        return KerasGivenStatistics(mean, std)

