"""The error model of spec NUM-1: every tolerance in normspec comes from here.

The bound for one output element depends on the unit roundoff of the compute
precision (u), of the output dtype (u_out), the reduction length n, the slice's
conditioning kappa and the exact values x_hat, gamma, beta, y (NUM-1.1). No test
carries a tolerance of its own.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

from normspec.reference import Steps

_FLOAT32_U = 2.0**-24


def unit_roundoff(dtype) -> float:
    """Half the distance from 1 to the next representable number."""
    return float(ml_dtypes.finfo(np.dtype(dtype)).eps) / 2


def compute_roundoff(input_dtype) -> float:
    """NUM-2.1: float16/bfloat16 inputs are computed in (at least) float32."""
    return max(unit_roundoff(np.float64), min(unit_roundoff(input_dtype), _FLOAT32_U))


def smallest_subnormal(dtype) -> float:
    return float(ml_dtypes.finfo(np.dtype(dtype)).smallest_subnormal)


def compute_subnormal(input_dtype) -> float:
    """tau of NUM-1.1: the smallest subnormal of the compute precision (NUM-2.1)."""
    return smallest_subnormal(np.float64 if np.dtype(input_dtype) == np.float64 else np.float32)


def half_rounded_up(value):
    """value / 2 rounded up to the next float64: the bounds' terms (1/2) tau. For float64 data
    (1/2) tau = 2^-1075 is not a float64 number and value / 2 would round it to 0, a bound
    stricter than the exact one. The errors compared with a bound are float64 numbers, so
    rounding the bound up to the next one decides as the exact bound does."""
    return np.nextafter(np.asarray(value, dtype=np.float64) / 2, np.inf)


def statistics_error(n: int, u: float, replicas: int | None = None) -> float:
    """epsilon_stat of NUM-1.1: the relative budget for reduced quantities, for every slice,
    exact-statistics ones too (NUM-1.4); with `replicas` R, the epsilon_DP = (n + 4R + 4) u of
    DP-6 for statistics merged across R replicas."""
    return (n + 4 * (replicas or 0) + 4) * u


def normalized_error(steps: Steps, *, input_dtype, replicas: int | None = None) -> np.ndarray:
    """e_x_hat of NUM-1.1: how far a computed normalized value may be from the exact one (with
    `replicas`, DP-6's budget for statistics merged across replicas)."""
    u = compute_roundoff(input_dtype)
    eps_stat = statistics_error(steps.reduction_length, u, replicas)
    kappa = steps.conditioning
    return eps_stat * kappa + np.abs(steps.normalized) * (0.5 * eps_stat * (1 + kappa) + 3 * u)


def output_bound(steps: Steps, output: np.ndarray, weight, bias, *, input_dtype,
                 replicas: int | None = None) -> np.ndarray:
    """NUM-1.1: the largest error allowed for each output element.

    `steps` and `output` are the reference's float64 values (exact=True) in the
    input's layout; `weight` and `bias` broadcast against them (None: absent). With
    `replicas` R, the steps are those of the global batch of R replicas (DP-3, DP-6).
    """
    u = compute_roundoff(input_dtype)
    u_out = unit_roundoff(input_dtype)
    tiny, tiny_out = compute_subnormal(input_dtype), smallest_subnormal(input_dtype)
    error_x_hat = normalized_error(steps, input_dtype=input_dtype, replicas=replicas)
    x_hat = np.abs(steps.normalized)
    gamma = 1.0 if weight is None else np.abs(weight)
    beta = 0.0 if bias is None else np.abs(bias)
    with np.errstate(invalid="ignore", over="ignore"):
        underflow = half_rounded_up(tiny * (gamma * (np.abs(steps.inverse_std) + 1) + 1))  # products in the subnormal range
        return (gamma * error_x_hat + 2 * u * (gamma * x_hat + beta) + u_out * np.abs(output) + underflow
                + half_rounded_up(tiny_out))


def running_bound(*, alpha: float, old, batch_statistic, new, batch_error, input_dtype,
                  statistic_dtype=None) -> np.ndarray:
    """NUM-1.5: the error allowed in a running statistic after one training step, in any form
    BN-4.1 admits.

    `batch_error` is the allowed error of the batch statistic (delta_s). The increment form
    s_old + alpha (s_batch - s_old) adds 3u alpha |s_batch - s_old| (spec/rationale.md, NUM-1.5),
    taken as 3u |s_new - s_old| from the reference's `new`: it needs neither the batch statistic's
    sign nor the estimator. `statistic_dtype` is the running statistic's own (NUM-2.3), by default
    the input's.
    """
    u = compute_roundoff(input_dtype)
    statistic_dtype = input_dtype if statistic_dtype is None else statistic_dtype
    u_out = unit_roundoff(statistic_dtype)
    old64, new64 = np.asarray(old, dtype=np.float64), np.asarray(new, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # non-finite statistics (NUM-4.3) are compared exactly, not by this bound
        return (alpha * batch_error
                + 3 * u * (np.abs((1 - alpha) * old64) + np.abs(alpha * batch_statistic) + np.abs(new64 - old64))
                + u_out * np.abs(new64) + compute_subnormal(input_dtype)
                + half_rounded_up(smallest_subnormal(statistic_dtype)))


def batch_statistic_errors(steps: Steps, *, input_dtype, replicas: int | None = None):
    """delta_mu and delta_sigma^2 of NUM-1.5 (before the estimator factor f and the f delta_mu^2
    term) for per-slice Steps (rows = slices): eps_stat kappa sqrt(sigma^2 + eps), and
    (eps_stat + 2u) sigma^2 + eps_stat mean|x| sigma, the spread sigma without eps. With
    `replicas`, DP-6: epsilon_DP, and the first-order term doubled for the merge's correction."""
    u = compute_roundoff(input_dtype)
    eps_stat = statistics_error(steps.reduction_length, u, replicas)
    first_order = 1 if replicas is None else 2
    mean_abs = steps.conditioning / steps.inverse_std  # mean|x| = kappa sqrt(sigma^2 + eps)
    variance = steps.variance
    with np.errstate(invalid="ignore"):
        return eps_stat * mean_abs, ((eps_stat + 2 * u) * variance
                                     + first_order * eps_stat * mean_abs * np.sqrt(np.maximum(variance, 0)))


def batch_statistic_terms(steps: Steps, *, shape: tuple, channel_axis: int, samples: int, input_dtype,
                          replicas: int | None = None) -> dict:
    """NUM-1.5's per-channel batch statistics |s| and their allowed errors delta_s, for the
    running mean and the running variance: {"running mean": (|s|, delta_s), "running
    variance": (...)}. `steps` are per-slice (one slice per channel for BatchNorm, N for
    InstanceNorm, whose `samples` = N instance statistics are averaged: IN-3)."""
    u = compute_roundoff(input_dtype)
    others = tuple(i for i in range(len(shape)) if i != channel_axis)
    n = steps.reduction_length
    estimator = n / (n - 1) if n > 1 else 1.0  # the larger of the two estimators (BN-4.4)
    mean_error, var_error = batch_statistic_errors(steps, input_dtype=input_dtype, replicas=replicas)

    def per_channel(values):  # mean over the slices of a channel
        return np.mean(np.broadcast_to(values, shape), axis=others)

    batch_mean = per_channel(np.abs(steps.mean))
    batch_var = per_channel(steps.variance) * estimator
    # The variance's error has a second-order term delta_mu^2 (alone for a constant slice,
    # whose computed mean need not equal its value, NUM-3.2).
    terms = {"running mean": (batch_mean, per_channel(mean_error)),
             "running variance": (batch_var, per_channel(var_error) * estimator
                                  + per_channel(mean_error**2) * estimator)}
    if samples:
        terms = {name: (batch, error + (samples + 1) * u * batch) for name, (batch, error) in terms.items()}
    return terms


# The reference itself (reference/_steps.py) forms centred values from a two-part mean,
# so each normalized value is within a few roundings of exact whatever the conditioning:
# measured at most 3 ulps of max(|x_hat|, 1) on offsets up to 1e12 times the spread.
# 8 ulps (16 u) leaves room for the affine step's two roundings.
REFERENCE_ULPS = 8


def reference_bound(normalized, weight, bias) -> np.ndarray:
    """How far the float64 reference may be from the exact value (tests/test_reference.py)."""
    u = unit_roundoff(np.float64)
    gamma = 1.0 if weight is None else np.abs(weight)
    beta = 0.0 if bias is None else np.abs(bias)
    return 2 * REFERENCE_ULPS * u * (gamma * (1 + np.abs(normalized)) + beta)


def reference_running_bound(exact, spread) -> np.ndarray:
    """How far the float64 reference's updated running statistic may be from the exact value
    (tests/test_reference_sync.py): REFERENCE_ULPS ulps of |exact| + spread, where `spread` is what a
    mean near 0 cancels down from (alpha sigma for the running mean; 0 for the running variance,
    a sum of nonnegative terms)."""
    return 2 * REFERENCE_ULPS * unit_roundoff(np.float64) * (np.abs(exact) + spread)


# ---------------------------------------------------------------------------------------
# The backward pass (spec/gradients.md): the error model of GRAD-6, and the bound the
# float64 reference VJPs are verified against (tests/test_reference_vjp.py).
# ---------------------------------------------------------------------------------------

def _slice_means(values: np.ndarray, slice_ids: np.ndarray) -> np.ndarray:
    """The mean of `values` over each element's slice (ids as normspec.strategies.slice_ids),
    spread back over the slice."""
    _, inverse, counts = np.unique(slice_ids.ravel(), return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=np.ravel(values))
    return (sums / counts)[inverse].reshape(np.shape(values))


def _parameter_sums(values: np.ndarray, parameter_axes: tuple) -> np.ndarray:
    """Sums over every axis but the parameter's (GRAD-2), in the parameter's shape."""
    values = np.asarray(values)
    return values.sum(axis=tuple(a for a in range(values.ndim) if a not in parameter_axes))


def _weighted_cotangent(dy, weight) -> np.ndarray:
    """g = gamma dy of GRAD-3 (dy alone without a weight), in float64."""
    dy = np.asarray(dy, dtype=np.float64)
    return dy if weight is None else dy * np.asarray(weight, dtype=np.float64)


def vjp_bounds(steps: Steps, dy, weight, gradient: dict, *, slice_ids, parameter_axes: tuple, input_dtype,
               weight_dtype=None, bias_dtype=None, frozen: bool = False, replicas: int | None = None) -> dict:
    """GRAD-6: the largest error allowed for each element of dx, dgamma and dbeta.

    `steps` are the reference's float64 Steps in the input layout (return_steps=True,
    exact=True), `gradient` its exact VJP ({"x", "weight", "bias"}, exact=True), `dy`
    the cotangent, `weight` gamma broadcast against x (None: gamma = 1). `slice_ids`
    numbers each element's forward slice; the parameters span `parameter_axes` of x.
    `frozen` selects GRAD-6.2 (evaluation with running statistics). Returns the bounds
    as {"x": shape of x, "weight", "bias": parameter shape}; the parameter dtypes
    default to the input's. With `replicas` R, the steps are those of the global batch of R
    replicas and epsilon_stat is DP-6's (DP-7).
    """
    u = compute_roundoff(input_dtype)
    n = steps.reduction_length
    eps_n = statistics_error(n, u, replicas)
    r, kappa, x_hat = steps.inverse_std, steps.conditioning, np.abs(steps.normalized)
    error_x_hat = normalized_error(steps, input_dtype=input_dtype, replicas=replicas)  # NUM-1.1
    g = np.abs(_weighted_cotangent(dy, weight))
    with np.errstate(invalid="ignore", over="ignore"):
        if frozen:  # GRAD-6.2
            dx_bound = 5 * u * r * g
        else:  # GRAD-6.1; RMSNorm (no mean in Steps) has no mean path: G1 = 0
            g1 = _slice_means(g, slice_ids) if steps.mean is not None else 0.0
            g2 = _slice_means(g * x_hat, slice_ids)
            e = _slice_means(g * error_x_hat, slice_ids)
            error_r = 0.5 * eps_n * (1 + kappa) + 2 * u
            magnitude = g + g1 + x_hat * g2
            dx_bound = r * (eps_n * g1 + x_hat * (e + eps_n * g2) + g2 * error_x_hat + (error_r + 6 * u) * magnitude)
        bounds = {"x": dx_bound + _rounding(gradient["x"], input_dtype)}
        # GRAD-6.3: reductions of m terms each over the elements sharing a parameter element.
        dy = np.abs(np.asarray(dy, dtype=np.float64))
        m = dy.size // int(np.prod([dy.shape[a] for a in parameter_axes]))
        bounds["weight"] = (_parameter_sums(dy * error_x_hat, parameter_axes)
                            + (m + 2) * u * _parameter_sums(dy * x_hat, parameter_axes)
                            + _rounding(gradient.get("weight"), weight_dtype or input_dtype))
        bounds["bias"] = ((m + 2) * u * _parameter_sums(dy, parameter_axes)
                          + _rounding(gradient.get("bias"), bias_dtype or input_dtype))
    return bounds


def replica_sum_rounding(per_replica: list, dtype) -> np.ndarray:
    """DP-7: the rounding of each of R per-replica parameter gradients to `dtype` before their sum,
    sum_r (u_out |g_r| + tau_out / 2), added to GRAD-6.3's bound of the sum."""
    return sum(unit_roundoff(dtype) * np.abs(np.asarray(g, dtype=np.float64)) + half_rounded_up(smallest_subnormal(dtype))
               for g in per_replica)


def _rounding(exact, dtype):
    """u_out |value| + tau_out / 2: one rounding to the gradient's dtype (0 for an absent gradient)."""
    if exact is None:
        return 0.0
    return unit_roundoff(dtype) * np.abs(exact) + half_rounded_up(smallest_subnormal(dtype))


# The reference VJP (reference/_vjp.py) takes x_hat and r from the forward reference (each
# within REFERENCE_ULPS of exact), centres g = gamma * dy with a two-part mean, and sums
# along contiguous rows (pairwise). Its errors are then the rounding of gamma * dy (taken
# exactly, below) and a few float64 roundings of the magnitudes below, whatever the
# conditioning of x or dy: measured at most 1.6 ulps of them, on offsets of x up to 1e12
# and of dy up to 1e6 times the spread, reduction lengths up to 160. 8 ulps as in the
# forward (REFERENCE_ULPS) leaves room for longer pairwise sums.
REFERENCE_VJP_ULPS = 8


def _product_error(a, b) -> np.ndarray:
    """The rounding error of the float64 products a * b (Dekker's TwoProduct with
    Veltkamp's split: exact where nothing overflows); 0 where b is None."""
    if b is None:
        return np.zeros(np.shape(a))
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))

    def split(v):
        c = 134217729.0 * v  # 2**27 + 1
        high = c - (c - v)
        return high, v - high

    with np.errstate(invalid="ignore", over="ignore"):
        product = a * b
        (ah, al), (bh, bl) = split(a), split(b)
        return ((ah * bh - product) + ah * bl + al * bh) + al * bl


def reference_vjp_bounds(steps: Steps, dy, weight, *, slice_ids, parameter_axes: tuple,
                         frozen: bool = False) -> dict:
    """How far the float64 reference VJP may be from the exact one (GRAD-1), per element.

    Arguments as for vjp_bounds. dx: the rounding error of each g = gamma * dy (its
    actual value; 0 without a weight), as it enters g, mean(g) and x_hat mean(g x_hat),
    plus REFERENCE_VJP_ULPS of the centred magnitudes r (|g - mean g| + mean|g - mean g|
    + (1 + |x_hat|) mean(|g - mean g| (1 + |x_hat|))); the (1 + |x_hat|) carry the
    absolute error of x_hat (REFERENCE_ULPS). dgamma, dbeta: REFERENCE_VJP_ULPS of
    sum |dy| (1 + |x_hat|) and sum |dy|.
    """
    u = unit_roundoff(np.float64)
    ulps = 2 * REFERENCE_VJP_ULPS * u
    r, x_hat = steps.inverse_std, np.abs(steps.normalized)
    g = _weighted_cotangent(dy, weight)
    with np.errstate(invalid="ignore", over="ignore"):
        if frozen:
            dx_bound = ulps * r * np.abs(g)
        else:
            centring = steps.mean is not None
            centred = g - _slice_means(g, slice_ids) if centring else g
            spread = _slice_means(np.abs(centred), slice_ids) if centring else 0.0
            products = (1 + x_hat) * _slice_means(np.abs(centred) * (1 + x_hat), slice_ids)
            rounded = np.abs(_product_error(dy, weight))
            rounding = rounded + x_hat * _slice_means(rounded * x_hat, slice_ids)
            if centring:
                rounding = rounding + _slice_means(rounded, slice_ids)
            dx_bound = r * (rounding + ulps * (np.abs(centred) + spread + products))
        dy = np.abs(np.asarray(dy, dtype=np.float64))
        return {"x": dx_bound,
                "weight": ulps * _parameter_sums(dy * (1 + x_hat), parameter_axes),
                "bias": ulps * _parameter_sums(dy, parameter_axes)}


def reference_dot_bound(a, a_error, b, b_error, axis=None) -> np.ndarray:
    """The error of sum(a * b) over `axis`, for float64 factors within a_error and b_error
    of exact, with the products rounded and summed exactly (math.fsum, then one rounding):
    sum(|b| a_error + |a| b_error) + 2u sum|a b|. For the laws of GRAD-2 to GRAD-4."""
    u = unit_roundoff(np.float64)
    a, b = np.abs(a), np.abs(b)
    return np.sum(b * a_error + a * b_error + 2 * u * a * b, axis=axis)


# ---------------------------------------------------------------------------------------
# The fitted scalers (spec/scalers.md): the error model of SCALE-7, from the exact fit of the
# reference (normspec.reference.standard_scaler / minmax_scaler, whose fields it reads).
# ---------------------------------------------------------------------------------------

def fit_error(count, chunks: int, input_dtype) -> np.ndarray:
    """epsilon_fit of SCALE-7: (n + 4k + 4) u, per feature (n its fitted samples, k the chunks)."""
    return (np.asarray(count, dtype=np.float64) + 4 * chunks + 4) * compute_roundoff(input_dtype)


def fitted_statistic_errors(fitted, *, input_dtype) -> tuple:
    """delta_mu and delta_sigma^2 of SCALE-7.1 for a reference FittedStandardScaler: the admitted
    errors of the fitted mean and of the fitted variance (the declared estimator's), per feature."""
    u = compute_roundoff(input_dtype)
    eps_fit = fit_error(fitted.count, fitted.chunks, input_dtype)
    spread_bound = eps_fit * fitted.max_abs
    population = fitted.population_variance
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = fitted.count / (fitted.count - fitted.ddof)
        variance_error = factor * ((eps_fit + 2 * u) * population + 4 * spread_bound * np.sqrt(population)
                                   + 4 * spread_bound**2)
    return spread_bound, variance_error


def statistic_bound(exact, error, statistic_dtype) -> np.ndarray:
    """SCALE-7.1: error + u_s |exact| + tau_s, the error plus the rounding to the statistic's dtype."""
    return (np.asarray(error, dtype=np.float64) + unit_roundoff(statistic_dtype) * np.abs(exact)
            + smallest_subnormal(statistic_dtype))


def numerically_constant(fitted, *, input_dtype) -> np.ndarray:
    """SCALE-3.2: features whose exact variance is within delta_sigma^2 of 0, not exactly constant:
    either divisor is admitted and only finiteness is required."""
    _, variance_error = fitted_statistic_errors(fitted, input_dtype=input_dtype)
    return ~fitted.constant & (fitted.variance <= variance_error)


def _result_rounding(value, dtype) -> np.ndarray:
    """u_out |value| + tau_out / 2 + tau of SCALE-7.2 and SCALE-7.3."""
    return (unit_roundoff(dtype) * np.abs(value) + half_rounded_up(smallest_subnormal(dtype))
            + compute_subnormal(dtype))


def standard_scaler_bounds(fitted, x, *, input_dtype) -> tuple:
    """SCALE-7.2 and SCALE-7.3 with STD-5: the bound of each transform output of x (float64, (n, F))
    and of each element of the round trip, for the exact fit `fitted` (its subtrahend and divisor
    say whether the mean and the standard deviation are applied). Numerically constant features
    (SCALE-3.2) get an infinite bound; the caller checks them for finiteness."""
    u = compute_roundoff(input_dtype)
    x = np.asarray(x, dtype=np.float64)
    mean_error, variance_error = fitted_statistic_errors(fitted, input_dtype=input_dtype)
    m, s = fitted.subtrahend, fitted.scale
    subtrahend_error = mean_error if fitted.with_mean else 0.0
    divided = fitted.with_std & ~fitted.constant  # a divisor of 1 (STD-3) carries no error
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(divided, variance_error / fitted.variance, 0.0)
        rho = np.where(divided, np.where(t < 1, t / (1 - t), np.inf) + 2 * u, 0.0)
        y = (x - m) / s
        e_y = (subtrahend_error + 2 * u * (np.abs(x) + np.abs(m))) / s + np.abs(y) * (rho + 2 * u)
        output = e_y + _result_rounding(y, input_dtype)
        round_trip = (s * output + np.abs(x - m) * (rho + 2 * u) + subtrahend_error
                      + 2 * u * (np.abs(x) + np.abs(m)) + _result_rounding(x, input_dtype))
    return output, round_trip


def minmax_scaler_bounds(fitted, x, *, input_dtype) -> tuple:
    """SCALE-7.2 and SCALE-7.3 with MINMAX-5: the bound of each transform output of x (float64,
    (n, F)) and of each element of the round trip, for the exact fit `fitted`."""
    u = compute_roundoff(input_dtype)
    x = np.asarray(x, dtype=np.float64)
    a, _ = fitted.feature_range
    s, low = np.abs(fitted.scale), np.abs(fitted.data_min)
    with np.errstate(invalid="ignore", over="ignore"):
        unclipped = np.abs(a + (x - fitted.data_min) * fitted.scale)
        y = np.maximum(unclipped, np.abs(fitted.transform(x, exact=True)))  # a clipped output rounds |a| or |b|
        e_y = 6 * u * (np.abs(x) + low) * s + u * abs(a) + u * y
        output = e_y + _result_rounding(y, input_dtype)
        round_trip = (output / s + 6 * u * (np.abs(x) + low + (unclipped + abs(a)) / s)
                      + _result_rounding(x, input_dtype))
    return output, round_trip


def given_statistics_bound(x, mean, std, *, input_dtype) -> np.ndarray:
    """SCALE-9: the bound of each output of a standardization with the given mean and standard
    deviation (float64 values of the given numbers), for x (float64, (n, F))."""
    u = compute_roundoff(input_dtype)
    x = np.asarray(x, dtype=np.float64)
    y = (x - mean) / std
    return 2 * u * (np.abs(x) + np.abs(mean)) / std + 2 * u * np.abs(y) + _result_rounding(y, input_dtype)
