"""The named steps of the fitted scalers (spec/scalers.md, SCALE; STD; MINMAX).

The data arrive as a list of chunks, each (n_c, F), fitted one after the other
(SCALE-2.1). The references fit the concatenation, which is what every chunking must
give: the chunking is kept only to check its shapes and to count the chunks k of the
bound (SCALE-7.1).
"""
from __future__ import annotations

import numpy as np

from normspec.errors import ConfigurationError

SCALER_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def fitted_data(chunks, op: str) -> np.ndarray:
    """SCALE-1, SCALE-8.1: the chunks' concatenation as float64 (n, F), after checking that each
    chunk is a non-empty 2-D float32/float64 array with the first one's number of features."""
    if isinstance(chunks, np.ndarray):
        chunks = [chunks]
    if not chunks:
        raise ConfigurationError("SCALE-8.2", f"{op}: no chunk was fitted; fit at least one (n, F) chunk.")
    arrays = []
    for index, chunk in enumerate(chunks):
        array = np.asarray(chunk)
        if array.dtype not in SCALER_DTYPES:
            raise ConfigurationError("SCALE-1", f"{op}: chunk {index} has dtype {array.dtype}; the scalers are "
                                                f"defined for float32 and float64 data.")
        if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
            raise ConfigurationError("SCALE-1", f"{op}: chunk {index} has shape {array.shape}; a chunk is "
                                                f"(n_samples >= 1, n_features >= 1).")
        if arrays and array.shape[1] != arrays[0].shape[1]:
            raise ConfigurationError("SCALE-8.1", f"{op}: chunk {index} has {array.shape[1]} features, the "
                                                  f"scaler was fitted with {arrays[0].shape[1]}.")
        arrays.append(array.astype(np.float64))
    return np.concatenate(arrays, axis=0)


def sample_counts(data: np.ndarray, nan: str) -> np.ndarray:
    """n per feature (SCALE-5): the non-NaN samples under `ignore`, all samples under `propagate`."""
    if nan not in ("ignore", "propagate"):
        raise ConfigurationError("SCALE-5", f"nan={nan!r}; the NaN convention is 'ignore' or 'propagate'.")
    return np.sum(~np.isnan(data), axis=0) if nan == "ignore" else np.full(data.shape[1], data.shape[0])


def mean(data: np.ndarray, nan: str) -> tuple:
    """STD-2.1 as two parts (high, low) whose sum is the mean: the float64 mean and the mean of
    the residuals, as NORM-1's reference keeps it, so that a large common offset costs no accuracy."""
    with np.errstate(invalid="ignore"):
        reduce = np.nanmean if nan == "ignore" else np.mean
        first = reduce(data, axis=0)
        residual = reduce(data - first, axis=0)
        high = first + residual
        return high, residual - (high - first)


def extreme(data: np.ndarray, nan: str, reduce) -> np.ndarray:
    """np.min or np.max per feature (MINMAX-2), over the non-NaN samples under `ignore` (SCALE-5);
    NaN for a feature without any."""
    if nan == "ignore":
        present = ~np.isnan(data)
        fill = np.inf if reduce is np.min else -np.inf
        values = reduce(np.where(present, data, fill), axis=0)
        return np.where(present.any(axis=0), values, np.nan)
    return reduce(data, axis=0)


def constant_features(data: np.ndarray, nan: str) -> np.ndarray:
    """SCALE-3: the features whose (non-NaN, under `ignore`) samples are all equal."""
    with np.errstate(invalid="ignore"):
        return extreme(data, nan, np.max) == extreme(data, nan, np.min)


def centred_square_mean(data: np.ndarray, high: np.ndarray, low: np.ndarray, nan: str) -> np.ndarray:
    """The population variance (STD-2.2 with d = 0): the mean of the squared centred values, each
    centred by the two parts of the mean."""
    with np.errstate(invalid="ignore", over="ignore"):
        reduce = np.nanmean if nan == "ignore" else np.mean
        centred = (data - high) - low
        scale = np.nanmax(np.abs(np.where(np.isnan(centred), 0.0, centred)), axis=0)
        scale = np.where((scale > 0) & np.isfinite(scale), scale, 1.0)  # squares of scaled values do not overflow
        return reduce((centred / scale) ** 2, axis=0) * scale * scale


def feature_range_value(feature_range) -> tuple:
    """MINMAX-1, SCALE-8.3: a pair of finite numbers a < b."""
    try:
        a, b = (float(v) for v in feature_range)
    except (TypeError, ValueError):
        raise ConfigurationError("SCALE-8.3", f"feature_range={feature_range!r} is not a pair of numbers (a, b)."
                                 ) from None
    if not (np.isfinite(a) and np.isfinite(b) and a < b):
        raise ConfigurationError("SCALE-8.3", f"feature_range={feature_range!r}: need finite a < b.")
    return a, b


def check_features(x, fitted_features: int, op: str) -> np.ndarray:
    """SCALE-8.1: data to transform has the fitted number of features; SCALE-1: a float32/float64 2-D array."""
    array = np.asarray(x)
    if array.dtype not in SCALER_DTYPES or array.ndim != 2:
        raise ConfigurationError("SCALE-1", f"{op}: data of dtype {array.dtype} and shape {array.shape}; "
                                            f"transform takes a 2-D float32 or float64 array.")
    if array.shape[1] != fitted_features:
        raise ConfigurationError("SCALE-8.1", f"{op}: data with {array.shape[1]} features; the scaler was fitted "
                                              f"with {fitted_features}.")
    return array
